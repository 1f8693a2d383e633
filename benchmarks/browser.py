"""Browser real-time factor of the DDSP page (issue #6): python benchmarks/browser.py [--seconds 10] [--runs 3].

Serves web/ and the shipped DDSP bundles on 127.0.0.1, drives the page in headless Chromium with
tests/web/e2e.mjs (record from a fake microphone playing a generated melody, transfer it with the first instrument
of web/models/manifest.json, then time the page's own af.benchmark over N seconds of audio) and prints the
real-time factor with its breakdown. Needs the set-up's chromium and web/node_modules.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
BUNDLES = ROOT / "src" / "audioforge" / "assets" / "bundles"


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".js": "text/javascript",
        ".wasm": "application/wasm", ".onnx": "application/octet-stream"}

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0]
        if clean.startswith("/bundles/"):
            return str(BUNDLES / clean[len("/bundles/"):])
        return super().translate_path(path)

    def log_message(self, *args: object) -> None:
        pass


def _melody(path: Path, sr: int = 48000, seconds: float = 4.0) -> None:
    t = np.arange(int(sr * seconds)) / sr
    notes = 440.0 * 2 ** (np.array([-9, -7, -5, -4, -2, 0, -2, -5]) / 12)
    f0 = notes[(t / (seconds / len(notes))).astype(int).clip(0, len(notes) - 1)]
    f0 = f0 * 2 ** (0.25 * np.sin(2 * np.pi * 5.0 * t) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(0.25 / k * np.sin(k * phase) for k in range(1, 6))
    sf.write(path, y.astype(np.float32), sr, subtype="PCM_16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0, help="audio length af.benchmark processes")
    ap.add_argument("--runs", type=int, default=3, help="browser sessions (each a fresh Chromium)")
    args = ap.parse_args()
    node = shutil.which("node")
    if node is None or not Path("/usr/bin/chromium").exists() or not (WEB / "node_modules").is_dir():
        raise SystemExit("needs node, /usr/bin/chromium and web/node_modules: run bash scripts/setup.sh")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(WEB)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rtfs, rows = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            mic = Path(tmp) / "melody.wav"
            _melody(mic)
            url = f"http://127.0.0.1:{server.server_port}/index.html"
            for i in range(args.runs):
                out = Path(tmp) / f"run{i}.json"
                cmd = [node, str(ROOT / "tests" / "web" / "e2e.mjs"), url, str(mic), str(out), "2", str(args.seconds)]
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                if proc.returncode != 0:
                    raise SystemExit(f"browser run failed:\n{proc.stderr[-2000:]}")
                bench = json.loads(out.read_text())["bench"]
                rtfs.append(bench["rtf"])
                rows.append(bench["timings"])
    finally:
        server.shutdown()
        server.server_close()
    manifest = json.loads((WEB / "models" / "manifest.json").read_text())
    print(f"DDSP page in headless Chromium, model {manifest[0]['decoder']}, {args.seconds:g} s of audio per run")
    for i, (rtf, t) in enumerate(zip(rtfs, rows, strict=True)):
        print(f"  run {i}: RTF {rtf:.3f}  (analysis {t['analysis_ms']:.0f} ms, decoder {t['decode_ms']:.0f} ms, "
              f"synthesis {t['synth_ms']:.0f} ms)")
    print(f"median RTF {statistics.median(rtfs):.3f} (floor 0.5)")


if __name__ == "__main__":
    main()
