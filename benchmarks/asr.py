"""ASR deployment benchmark, one run, one thread: RTF of torch fp32, onnxruntime fp32 and int8, first-partial
latency and model sizes.

RTF = compute time / audio time over the utterances (whole-file streaming decode with rescoring, as ``transcribe``).
First-partial latency = audio needed for the first decoding window (``(chunk - 1) * subsampling + right context + 1``
feature frames + the 25 ms frame) + the compute time of that first window (encoder chunk + CTC + beam step), measured
by feeding 10 ms messages to a stream.

Usage::

    python benchmarks/asr.py --bundle asr --manifest ~/.cache/audioforge/recipes/asr/corpus/manifest.jsonl
    python benchmarks/asr.py --bundle /tmp/asr-smoke/train/bundle --manifest /tmp/asr-smoke/corpus/manifest.jsonl \
        --utterances 5 --int8 dynamic
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def first_partial_latency(recognizer: Any, samples: np.ndarray, sr: int = 16000) -> dict[str, float]:
    """Audio seconds and compute milliseconds until the first partial result of a stream fed 10 ms at a time."""
    session = recognizer.stream(sr)
    step = sr // 100
    for start in range(0, samples.shape[0], step):
        t0 = time.perf_counter()
        results = session.accept_waveform(samples[start : start + step])
        dt = time.perf_counter() - t0
        if results:
            audio_s = (start + step) / sr
            return {"audio_s": audio_s, "compute_ms": 1000 * dt, "latency_ms": 1000 * audio_s + 1000 * dt}
    return {"audio_s": float("nan"), "compute_ms": float("nan"), "latency_ms": float("nan")}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from audioforge.asr.data import load_manifest
    from audioforge.asr.infer import Recognizer
    from audioforge.asr.lm import LM_FILE
    from audioforge.asr.onnx_infer import OnnxRecognizer
    from audioforge.asr.quantize import export_asr
    from audioforge.audio import load
    from audioforge.bundle import Bundle

    torch.set_num_threads(1)
    bundle = Bundle.load(args.bundle)
    manifest = load_manifest(args.manifest, split=args.split)
    entries = list(manifest)[: args.utterances]
    audio = [load(manifest.audio_path(e), sr=16000)[0] for e in entries]
    total_s = sum(a.shape[0] for a in audio) / 16000
    out_dir = Path(args.out or tempfile.mkdtemp(prefix="asr-bench-"))
    calib = manifest if args.int8 == "static" else None
    exp = export_asr(bundle, out_dir, int8=args.int8, calibration=calib, max_samples=args.max_samples,
                     method=args.method, verify=False)
    systems = {
        "torch fp32": Recognizer.from_bundle(bundle),
        "onnxruntime fp32": OnnxRecognizer(exp.folder, intra_op_num_threads=1),
        "onnxruntime int8": OnnxRecognizer(exp.int8_folder, intra_op_num_threads=1),
    }
    if systems["onnxruntime int8"].fusion() is not None:  # the language model's share of the decoding time
        systems["onnxruntime int8, no LM"] = OnnxRecognizer(exp.int8_folder, intra_op_num_threads=1, lm_weight=0.0)
    weights = sum(v.numel() * v.element_size() for v in bundle.state_dict.values())
    report: dict[str, Any] = {
        "utterances": len(entries),
        "audio_s": total_s,
        "threads": 1,
        "sizes_bytes": {"torch fp32 weights": weights, "onnx fp32": exp.sizes["fp32"], "onnx int8": exp.sizes["int8"],
                        **({"language model": len(bundle.extra_files[LM_FILE])} if LM_FILE in bundle.extra_files
                           else {})},
        "int8_size_ratio": exp.sizes["int8"] / exp.sizes["fp32"],
        "systems": {},
    }
    for name, rec in systems.items():
        rec.transcribe(audio[0], 16000)  # warm-up (allocations, onnxruntime arenas)
        t0 = time.perf_counter()
        for a in audio:
            rec.transcribe(a, 16000, **({"simulate_streaming": True} if name.startswith("torch") else {}))
        compute = time.perf_counter() - t0
        lat = [first_partial_latency(rec, a) for a in audio[: min(5, len(audio))]]
        report["systems"][name] = {
            "rtf": compute / total_s,
            "first_partial_audio_s": float(np.nanmedian([x["audio_s"] for x in lat])),
            "first_partial_compute_ms": float(np.nanmedian([x["compute_ms"] for x in lat])),
            "first_partial_latency_ms": float(np.nanmedian([x["latency_ms"] for x in lat])),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="asr", help="ASR bundle folder or shipped name")
    ap.add_argument("--manifest", type=Path,
                    default=Path("~/.cache/audioforge/recipes/asr/corpus/manifest.jsonl").expanduser())
    ap.add_argument("--split", default="test")
    ap.add_argument("--utterances", type=int, default=20)
    ap.add_argument("--int8", choices=("dynamic", "static"), default="dynamic")
    ap.add_argument("--method", default="minmax")
    ap.add_argument("--max-samples", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="export folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = ap.parse_args(argv)
    report = run(args)
    print(f"{report['utterances']} utterances, {report['audio_s']:.1f} s of audio, 1 thread")
    print("| system | RTF | first partial: audio s | compute ms | latency ms |")
    print("|---|---:|---:|---:|---:|")
    for name, r in report["systems"].items():
        print(f"| {name} | {r['rtf']:.4f} | {r['first_partial_audio_s']:.3f} | {r['first_partial_compute_ms']:.1f} | "
              f"{r['first_partial_latency_ms']:.0f} |")
    for k, v in report["sizes_bytes"].items():
        print(f"size {k}: {v / 1e6:.2f} MB")
    print(f"int8 / fp32 (onnx): {report['int8_size_ratio']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
