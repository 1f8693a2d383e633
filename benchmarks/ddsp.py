"""DDSP benchmark (issue #6), one run: python benchmarks/ddsp.py [--bundle ddsp-sax] [--seconds 10] [--json out.json].

Pins every thread pool to one thread before numpy/torch load, then measures

* streaming: the block engine (YIN + loudness per frame, decoder step, synthesis with carried state) on one CPU
  thread at 20 ms blocks: real-time factor, median / p99 / worst-case block time, latency (floor: RTF <= 0.1);
* sizes: the bundle's weights and each ONNX form of the decoder (exported to a temporary folder when the bundle
  has none);
* phase: a 6 kHz tone synthesized for 60 s in float32 in 20 ms blocks against a float64 reference (floor: >= 80 dB
  SNR), with the default float64 phase accumulator and with ``precise_phase=False``.
"""

from __future__ import annotations

import argparse
import os

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = "1"

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

SR = 16000


def _melody(seconds: float) -> np.ndarray:
    """A sax-range melody with vibrato, rests and swells (deterministic)."""
    rng = np.random.default_rng(0)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    notes = 48 + rng.integers(0, 24, size=int(seconds * 3) + 1)
    idx = np.minimum((t * 3).astype(int), notes.size - 1)
    f = 440.0 * 2.0 ** ((notes[idx] - 69) / 12) * (1 + 0.006 * np.sin(2 * np.pi * 5.5 * t))
    env = np.sin(np.pi * ((t * 3) % 1.0)) ** 0.5 * (rng.random(notes.size)[idx] > 0.15)
    phase = 2 * np.pi * np.cumsum(f) / SR
    y = sum(0.25 / k * np.sin(k * phase) for k in range(1, 8)) * env
    return y.astype(np.float32)


def streaming(model: Any, seconds: float, block: int = 320) -> dict[str, float]:
    """RTF and block times of the engine on one thread."""
    from audioforge.ddsp.engine import DDSPEngine

    engine = DDSPEngine(model, block_size=block)
    engine.warmup(50)
    y = _melody(seconds)
    n_blocks = y.size // block
    first, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n_blocks):
        engine.process_block(y[i * block: (i + 1) * block])
    wall = time.perf_counter() - first
    cpu = time.process_time() - cpu0  # CPU time of this process: excludes waiting for a core on a busy machine
    bt = np.asarray(engine.block_times) * 1000.0
    return {"block_ms": 1000.0 * block / SR, "seconds": n_blocks * block / SR, "rtf": wall / (n_blocks * block / SR),
            "rtf_cpu_time": cpu / (n_blocks * block / SR), "load_average_1min": os.getloadavg()[0],
            "block_median_ms": float(np.median(bt)), "block_p99_ms": float(np.percentile(bt, 99)),
            "block_worst_ms": float(bt.max()), "latency_ms": engine.latency_ms,
            "worst_block_rtf": float(bt.max() / (1000.0 * block / SR))}


def sizes(bundle_dir: Path | None, model: Any) -> dict[str, int]:
    """Bytes of the weights and of each ONNX form."""
    from audioforge.ddsp.export import convert_fp16, export_decoder
    from audioforge.deploy import model_size_bytes

    out: dict[str, int] = {"torch_fp32_params": sum(p.numel() for p in model.parameters()) * 4}
    if bundle_dir is not None:
        out["bundle_safetensors"] = (bundle_dir / "model.safetensors").stat().st_size
    folder = bundle_dir if bundle_dir is not None and (bundle_dir / "decoder.fp32.onnx").is_file() else None
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="ddsp-bench-"))
        export_decoder(model, folder / "decoder.fp32.onnx")
        convert_fp16(folder / "decoder.fp32.onnx", folder / "decoder.fp16.onnx")
        try:
            from audioforge.deploy import quantize_dynamic_int8

            quantize_dynamic_int8(folder / "decoder.fp32.onnx", folder / "decoder.int8.onnx")
        except Exception:
            pass
    for form in ("fp32", "fp16", "int8"):
        p = folder / f"decoder.{form}.onnx"
        if p.is_file():
            out[f"onnx_{form}"] = model_size_bytes(p)
    return out


def phase_accuracy(seconds: float = 60.0, freq: float = 6000.0, block_frames: int = 5) -> dict[str, float]:
    """SNR (dB) of a float32 streamed 6 kHz tone against float64, default and ``precise_phase=False``."""
    from audioforge.ddsp.synths import HarmonicSynth

    n_frames = int(seconds * SR) // 64
    n = n_frames * 64
    ref = 0.5 * np.sin(2 * np.pi * freq * (np.arange(n, dtype=np.float64) + 1) / SR)
    out: dict[str, float] = {"seconds": seconds, "freq_hz": freq}
    for name, precise in (("snr_db_float64_accumulator", True), ("snr_db_float32_only", False)):
        synth = HarmonicSynth(n_harmonics=1, precise_phase=precise)
        state = None
        pieces = []
        amp = torch.full((1, block_frames), 0.5)
        dist = torch.ones(1, block_frames, 1)
        f0 = torch.full((1, block_frames), freq)
        with torch.no_grad():
            for _ in range(n_frames // block_frames):
                y, state = synth(amp, dist, f0, state=state)
                pieces.append(y[0].numpy())
        got = np.concatenate(pieces).astype(np.float64)
        r = ref[: got.size]
        out[name] = float(10 * np.log10(np.sum(r**2) / np.sum((got - r) ** 2)))
    return out


def main() -> None:
    """Run every section and print (and optionally write) the results."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bundle", default="ddsp-sax", help="shipped bundle name or folder (untrained tiny if missing)")
    ap.add_argument("--seconds", type=float, default=10.0, help="streaming test length")
    ap.add_argument("--phase-seconds", type=float, default=60.0, help="phase test length")
    ap.add_argument("--json", default=None, help="also write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from audioforge.ddsp import DDSPAutoencoder
    from audioforge.ddsp.train import load_model
    from audioforge.errors import CheckpointError

    try:
        model, bundle = load_model(args.bundle)
        bundle_dir, name = bundle.path, args.bundle
    except CheckpointError:
        torch.manual_seed(0)
        model, bundle_dir, name = DDSPAutoencoder.from_preset("tiny").eval(), None, "untrained tiny"
    results = {"model": name, "threads": torch.get_num_threads(), "streaming": streaming(model, args.seconds),
               "sizes": sizes(Path(bundle_dir) if bundle_dir else None, model),
               "phase": phase_accuracy(args.phase_seconds)}
    s = results["streaming"]
    print(f"model {name}, 1 thread")
    print(f"streaming {s['block_ms']:.0f} ms blocks over {s['seconds']:.1f} s: RTF {s['rtf']:.4f} (floor 0.1), "
          f"block median {s['block_median_ms']:.2f} ms, p99 {s['block_p99_ms']:.2f} ms, worst {s['block_worst_ms']:.2f}"
          f" ms, latency {s['latency_ms']:.1f} ms; RTF in CPU time {s['rtf_cpu_time']:.4f} "
          f"(load average {s['load_average_1min']:.1f} on {os.cpu_count()} cores)")
    print("sizes (bytes): " + ", ".join(f"{k} {v}" for k, v in results["sizes"].items()))
    p = results["phase"]
    print(f"phase, {p['seconds']:.0f} s of {p['freq_hz']:.0f} Hz in float32: SNR "
          f"{p['snr_db_float64_accumulator']:.1f} dB (float64 phase accumulator, default; floor 80), "
          f"{p['snr_db_float32_only']:.1f} dB (precise_phase=False)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
