"""Tagging benchmarks, one run: Patchout's effect on PaSST-S training, and CPU inference of torch vs onnxruntime.

1. **Patchout** (``passt_s``, stride 10, one 10 s clip = 128 x 1000 log-mels, AdamW step, random weights): training
   step time and peak memory with no Patchout, structured Patchout ``s_t=40 / s_f=4`` and unstructured ``u=400``.
   Each variant runs in its own subprocess (so memory does not carry over) with the same thread count; peak memory
   is the process's **maximum resident set size** (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) minus the RSS
   measured just before the first step, i.e. what the training steps added on top of the model and the optimizer
   state. The floors of issue #4: ``s_t=40/s_f=4`` at least 2x faster per step and at least 40% less peak memory.
2. **Inference** of a tagging bundle (the shipped ``tagger`` by default) on 10 s clips: clips per second for torch
   fp32 (front end + model), onnxruntime fp32 and int8 (dynamic; static too with ``--manifest``), one clip per call,
   the same thread count everywhere. Floor: int8 at least 1.5x faster than torch fp32. ``--preset passt_s``
   measures a randomly initialised PaSST-S instead (throughput does not depend on the weights).

Usage::

    python benchmarks/tagging.py                       # both parts, 2 threads
    python benchmarks/tagging.py --part patchout --steps 3 --batch 1
    python benchmarks/tagging.py --part inference --bundle tagger --manifest data/events/manifest.jsonl
    python benchmarks/tagging.py --part inference --preset passt_s --clips 2 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS = {
    "none": {},
    "s_t=40/s_f=4": {"s_patchout_t": 40, "s_patchout_f": 4},
    "u=400": {"u_patchout": 400},
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def patchout_worker(variant: str, steps: int, batch: int, threads: int) -> dict[str, Any]:
    """Run in a fresh process: time ``steps`` training steps of passt_s with one Patchout variant."""
    import torch

    from audioforge.tagging import build_passt

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_passt("passt_s", **VARIANTS[variant]).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    mel = torch.randn(batch, 1, 128, 1000)
    target = torch.rand(batch, model.num_classes)
    # allocate the optimizer state before the baseline so that only the step's activations are measured
    for p in model.parameters():
        opt.state[p]["exp_avg"] = torch.zeros_like(p)
        opt.state[p]["exp_avg_sq"] = torch.zeros_like(p)
        opt.state[p]["step"] = torch.tensor(0.0)
        p.grad = torch.zeros_like(p)
    base = _rss_bytes()
    times = []
    for _ in range(steps + 1):  # the first step is a warm-up
        t0 = time.perf_counter()
        logits, _ = model(mel)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return {"variant": variant, "step_s": float(np.median(times[1:])), "peak_rss": peak, "base_rss": base,
            "step_peak": peak - base, "tokens": None}


def run_patchout(args: argparse.Namespace) -> dict[str, Any]:
    rows = {}
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--_worker", variant, "--steps", str(args.steps), "--batch", str(args.batch),
               "--threads", str(args.threads)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"variant {variant} failed:\n{proc.stderr[-2000:]}")
        rows[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    ref = rows["none"]
    print(f"\nPatchout on passt_s, 10 s input (128 x 1000), batch {args.batch}, {args.threads} thread(s), "
          f"median of {args.steps} steps; memory = max RSS of the step process minus RSS before the first step")
    print(f"{'variant':<14} {'step s':>8} {'speed-up':>9} {'step peak MiB':>14} {'memory saved':>13}")
    for name, r in rows.items():
        speed = ref["step_s"] / r["step_s"]
        saved = 1 - r["step_peak"] / ref["step_peak"]
        r["speedup"], r["memory_saved"] = speed, saved
        print(f"{name:<14} {r['step_s']:>8.2f} {speed:>8.2f}x {r['step_peak'] / 2**20:>14.0f} {100 * saved:>12.0f}%")
    s = rows["s_t=40/s_f=4"]
    ok = s["speedup"] >= 2.0 and s["memory_saved"] >= 0.40
    print(f"floor (s_t=40/s_f=4 >= 2x faster and >= 40% less memory): {'met' if ok else 'NOT met'}")
    return {"rows": rows, "floor_met": ok}


def _throughput(fn: Any, clips: list[np.ndarray], repeat: int) -> float:
    fn(clips[0])  # warm-up
    t0 = time.perf_counter()
    n = 0
    for _ in range(repeat):
        for c in clips:
            fn(c)
            n += 1
    return n / (time.perf_counter() - t0)


def run_inference(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from audioforge.bundle import Bundle
    from audioforge.deploy import OrtSession, model_size_bytes
    from audioforge.tagging import build_tagging_modules
    from audioforge.tagging.export import export_tagger_onnx, quantize_tagger

    torch.set_num_threads(args.threads)
    if args.preset:  # a randomly initialised preset: throughput does not depend on the weights
        from audioforge.tagging import PasstFrontend, build_passt

        torch.manual_seed(0)
        net = build_passt(args.preset, num_classes=24)
        bundle = Bundle(task="tagging", architecture=args.preset, hyperparameters=net.config(),
                        state_dict=net.state_dict(), frontend=PasstFrontend().config(),
                        labels=[f"c{i}" for i in range(24)], options={"multi_label": True})
        args.bundle = f"random {args.preset}"
    else:
        bundle = Bundle.load(args.bundle)
    model, frontend = build_tagging_modules(bundle)
    out = Path(args.out or tempfile.mkdtemp(prefix="tagging-bench-"))
    fp32 = export_tagger_onnx(bundle, out / "tagger.onnx")
    paths = {"onnxruntime fp32": fp32, "onnxruntime int8 dynamic": quantize_tagger(fp32, out / "dyn.onnx")}
    if args.manifest:
        paths["onnxruntime int8 static"] = quantize_tagger(fp32, out / "static.onnx", mode="static",
                                                           calibration_manifest=args.manifest)
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal((1, 320000))).astype(np.float32) for _ in range(args.clips)]

    def torch_fn(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return model(frontend(torch.from_numpy(x)))[0]

    results = {"torch fp32": _throughput(torch_fn, clips, args.repeat)}
    sizes = {"torch fp32": sum(v.numel() * v.element_size() for v in bundle.state_dict.values())}
    for name, p in paths.items():
        sess = OrtSession(p, intra_op_num_threads=args.threads)
        results[name] = _throughput(lambda x, s=sess: s.run({"waveform": x}, output_names=["logits"]), clips,
                                    args.repeat)
        sizes[name] = model_size_bytes(p)
    ref = results["torch fp32"]
    print(f"\nInference of {args.bundle} ({bundle.architecture}) on 10 s clips, {args.threads} thread(s), "
          f"{args.clips * args.repeat} clips per engine")
    print(f"{'engine':<26} {'clips/s':>9} {'vs torch':>9} {'size MiB':>9}")
    for name, v in results.items():
        print(f"{name:<26} {v:>9.2f} {v / ref:>8.2f}x {sizes[name] / 2**20:>9.2f}")
    ok = results["onnxruntime int8 dynamic"] / ref >= 1.5
    print(f"floor (int8 >= 1.5x torch fp32): {'met' if ok else 'NOT met'}")
    return {"clips_per_s": results, "sizes": sizes, "floor_met": ok}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["all", "patchout", "inference"], default="all")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed training steps per Patchout variant")
    p.add_argument("--batch", type=int, default=2, help="clips per training step")
    p.add_argument("--bundle", default="tagger")
    p.add_argument("--preset", default=None, help="benchmark a randomly initialised preset instead of --bundle")
    p.add_argument("--manifest", default=None, help="corpus manifest: calibrates static int8 on its train clips")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default=None)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._worker:
        print(json.dumps(patchout_worker(args._worker, args.steps, args.batch, args.threads)))
        return
    report: dict[str, Any] = {"threads": args.threads}
    if args.part in ("all", "patchout"):
        report["patchout"] = run_patchout(args)
    if args.part in ("all", "inference"):
        report["inference"] = run_inference(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
