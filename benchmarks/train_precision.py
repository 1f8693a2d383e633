"""Training-step time in float32 vs bfloat16 autocast (Lightning's ``bf16-mixed``) on the CPU, one thread.

Models: the default ASR conformer of ``recipes/asr/config.json`` (31 output symbols) on a 160 s batch (16 x 10 s of
fbank frames, the recipe's ``max_batch_seconds``), and the shipped tagger's ``passt_mini`` with its Patchout on 16
cached 10 s log-mels. Each step is forward, backward and an AdamW update, with random inputs of the real shapes.

Usage::

    python benchmarks/train_precision.py [--steps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = "1"

import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _asr_step() -> Any:
    from audioforge.asr.model import build_u2_model
    from audioforge.asr.train import DEFAULT_TRAIN_CONFIG, _merge

    recipe = json.loads((REPO / "recipes" / "asr" / "config.json").read_text())
    cfg = _merge(DEFAULT_TRAIN_CONFIG["model"], recipe["train"]["model"])
    model = build_u2_model({**cfg, "input_dim": 80, "vocab_size": 31}).train()
    feats, lens = torch.randn(16, 1000, 80), torch.full((16,), 1000)
    tokens, tlens = torch.randint(1, 28, (16, 60)), torch.full((16,), 60)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(feats, lens, tokens, tlens)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def _tagging_step() -> Any:
    from audioforge.tagging import build_passt

    recipe = json.loads((REPO / "recipes" / "tagging" / "config.json").read_text())
    model = build_passt(recipe["preset"], num_classes=24, **recipe["model"]).train()
    x, y = torch.randn(16, 1, 128, 1000), torch.rand(16, 24)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def run(steps: int) -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out: dict[str, dict[str, float]] = {}
    for name, make in (("asr conformer, 160 s batch", _asr_step), ("tagging passt_mini, 16 x 10 s", _tagging_step)):
        step = make()
        times: dict[bool, list[float]] = {False: [], True: []}
        for bf16 in (False, True):
            step(bf16)  # warm-up (oneDNN primitive creation)
        for _ in range(steps):  # interleaved, so a change in machine load hits both alike
            for bf16 in (False, True):
                t0 = time.perf_counter()
                step(bf16)
                times[bf16].append(time.perf_counter() - t0)
        fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
        out[name] = {"fp32_s": round(fp32, 3), "bf16_mixed_s": round(bf16, 3), "speedup": round(fp32 / bf16, 2)}
        print(f"{name:<32} fp32 {fp32:7.3f} s   bf16-mixed {bf16:7.3f} s   {fp32 / bf16:5.2f}x", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per precision and model")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    result = run(args.steps)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
