"""End-to-end: the page in headless Chromium records a melody from a fake microphone, transfers it with a random
test instrument, and the result must follow the melody's pitch; plus the browser's real-time factor."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf

from audioforge.ddsp.data import compute_statistics
from audioforge.ddsp.loudness import compute_loudness
from audioforge.ddsp.pitch import yin_f0
from audioforge.ddsp.transfer import _stable_voiced, raw_pitch_accuracy

from .helpers import CHROMIUM, WEB, export_test_instrument, node_path, web_deps_ready

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(node_path() is None or not CHROMIUM.is_file() or not web_deps_ready(),
                       reason="needs node, /usr/bin/chromium and web/node_modules: run scripts/web_setup.sh"),
]

SR = 16000
NOTES = [57, 60, 64, 62, 65, 64, 60, 59]  # MIDI
NOTE_S = 0.5


def _melody(sr: int) -> tuple[np.ndarray, np.ndarray]:
    """A looping melody with vibrato (harmonic tone, short dips between notes); returns audio and its f0 curve."""
    n_note = int(NOTE_S * sr)
    f0 = np.concatenate([np.full(n_note, 440.0 * 2 ** ((m - 69) / 12)) for m in NOTES])
    t = np.arange(f0.size) / sr
    f0 = f0 * 2 ** (0.25 * np.sin(2 * np.pi * 5.0 * t) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    env = np.ones(f0.size)
    ramp = int(0.02 * sr)
    for i in range(len(NOTES)):
        env[i * n_note: i * n_note + ramp] = np.linspace(0.2, 1.0, ramp)
    y = env * sum(0.25 / k * np.sin(k * phase) for k in range(1, 6))
    return y.astype(np.float32), f0


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".js": "text/javascript",
        ".wasm": "application/wasm", ".onnx": "application/octet-stream"}
    models: Path

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0]
        if clean.startswith("/test-models/"):
            return str(self.models / clean[len("/test-models/"):])
        return super().translate_path(path)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def browser_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web_e2e")
    y16, f0 = _melody(SR)
    y48, _ = _melody(48000)
    mic = tmp / "melody.wav"
    sf.write(mic, y48, 48000, subtype="PCM_16")
    ld = compute_loudness(y16, SR)
    f0_frames = f0[:: 64][: ld.size]
    stats = compute_statistics(f0_frames, ld[: f0_frames.size], np.ones(f0_frames.size, dtype=bool))
    models = tmp / "models"
    export_test_instrument(models / "test", statistics=stats)
    (models / "manifest.json").write_text(json.dumps([{"id": "test", "name": "Test (random tiny)",
                                                       "decoder": "test/decoder.fp32.onnx",
                                                       "controls": "test/controls.json"}]))
    handler = type("Handler", (_Handler,), {"models": models})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(WEB)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/index.html?models=/test-models/manifest.json"
        out = tmp / "e2e.json"
        cmd = [node_path(), str(Path(__file__).with_name("e2e.mjs")), url, str(mic), str(out), "4", "10"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
        assert proc.returncode == 0, proc.stderr
        data = json.loads(out.read_text())
    finally:
        server.shutdown()
        server.server_close()
    assert "error" not in data or not data["error"], f"{data.get('error')}\n" + "\n".join(data.get("logs", []))
    return data


def _wav(b64: str) -> tuple[np.ndarray, int]:
    y, sr = sf.read(io.BytesIO(base64.b64decode(b64)), dtype="float32")
    return y, sr


def test_page_transfers_the_recorded_melody(browser_run):
    inp, sr_in = _wav(browser_run["input"])
    out, sr_out = _wav(browser_run["result"])
    assert sr_in == sr_out == SR
    assert browser_run["download"]
    assert inp.size > 3 * SR and out.size == inp.size
    assert np.isfinite(out).all() and np.sqrt(np.mean(out**2)) > 1e-3
    # the evaluation tracker searches 150 Hz..2 kHz (the melody spans 220-350 Hz): with a random decoder's uneven
    # harmonics and noise, YIN's default 40 Hz floor lets it pick twice the period (an octave below) now and then
    f0_in, conf_in = yin_f0(inp, SR, fmin=150.0)
    f0_out, _ = yin_f0(out, SR, fmin=150.0)
    # the fake microphone delivered the melody: its confident pitches are the melody's notes (vibrato +-25 cents)
    ref = np.where(conf_in >= 0.8, f0_in, 0.0)
    stable = _stable_voiced(ref)
    assert stable.sum() > 300
    midi = 69 + 12 * np.log2(ref[stable] / 440.0)
    dist = np.min(np.abs(midi[:, None] - np.array(NOTES)[None, :]), axis=1)
    assert np.mean(dist < 0.5) > 0.95
    # and the output follows it
    rpa = raw_pitch_accuracy(ref, f0_out, voiced=stable)
    assert rpa >= 0.9, rpa


def test_browser_benchmark_hook_runs(browser_run):
    # the page's benchmark entry point works; its speed is measured by benchmarks/browser.py, not asserted here
    bench = browser_run["bench"]
    t = bench["timings"]
    assert t["seconds"] == pytest.approx(10.0)
    assert np.isfinite(bench["rtf"]) and bench["rtf"] > 0
