"""Recipe: the shipped DDSP timbre models (sax, violin, flute), from corpus to exported bundles.

Stages (all resumable; run them all or name some with ``--stages``):

``corpus``    render ``minutes`` per instrument with FluidR3_GM + ``heldout_minutes`` with TimGM6mb (other melodies)
``cache``     slice into examples, score f0 + loudness, statistics (``data/ddsp/cache/<instrument>-<split>``)
``train``     train one model per instrument (resumes from ``last.ckpt``), write ``ddsp-<name>`` bundles
``evaluate``  held-out resynthesis (loudness L1, spectral distance), transfer RPA, f0 tracker accuracy
``export``    ONNX decoder in fp32 / fp16 / int8, parity and quality loss, ``controls.json``, into the bundle

Usage::

    python recipes/ddsp/run.py                       # recipes/ddsp/config.json, every stage
    python recipes/ddsp/run.py --config recipes/ddsp/smoke.json
    python recipes/ddsp/run.py --stages evaluate,export --only sax
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

STAGES = ("corpus", "cache", "train", "evaluate", "export")


def _path(cfg_file: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else (cfg_file.parent / p).resolve()


def stage_corpus(cfg: dict[str, Any], cfg_file: Path) -> None:
    """Render (or resume) the instrument corpus."""
    from audioforge.corpora.instruments import generate_instrument_corpus

    c = cfg["corpus"]
    t = time.time()
    man = generate_instrument_corpus(_path(cfg_file, c["out"]), programs=list(cfg["instruments"].values()),
                                     minutes=c["minutes"], heldout_minutes=c["heldout_minutes"], seed=c["seed"],
                                     workers=c.get("workers"), progress=False)
    print(f"corpus: {len(man)} clips, {man.total_duration / 60:.1f} min in {time.time() - t:.1f} s", flush=True)


def stage_cache(cfg: dict[str, Any], cfg_file: Path, names: list[str]) -> None:
    """Feature caches per instrument and split."""
    from audioforge.ddsp.data import build_cache

    manifest = _path(cfg_file, cfg["corpus"]["out"]) / "manifest.jsonl"
    for name in names:
        inst = cfg["instruments"][name]
        for split in ("train", "test"):
            t = time.time()
            out = build_cache(manifest, _path(cfg_file, cfg["cache_dir"]) / f"{inst}-{split}", split=split,
                              instrument=inst, example_frames=int(cfg["example_frames"]))
            meta = json.loads((out / "cache.json").read_text(encoding="utf-8"))
            print(f"cache {name}/{split}: {meta['n_examples']} examples ({meta['seconds'] / 60:.1f} min) "
                  f"in {time.time() - t:.1f} s", flush=True)


def _bundle_dir(cfg: dict[str, Any], cfg_file: Path, name: str) -> Path:
    return _path(cfg_file, cfg["bundles_dir"]) / f"ddsp-{name}"


def stage_train(cfg: dict[str, Any], cfg_file: Path, names: list[str]) -> None:
    """Train (or resume) each instrument; skip those whose bundle already reached ``max_steps``."""
    from audioforge.bundle import Bundle
    from audioforge.ddsp.train import train_ddsp

    for name in names:
        inst = cfg["instruments"][name]
        target = _bundle_dir(cfg, cfg_file, name)
        if (target / "config.json").is_file():
            done = Bundle.load(target).metrics.get("steps", 0)
            if done >= int(cfg["train"]["max_steps"]):
                print(f"train {name}: bundle at {target} has {done} steps; skipped", flush=True)
                continue
        cache = _path(cfg_file, cfg["cache_dir"])
        config = {**cfg["train"], "name": f"ddsp-{name}", "instrument": name,
                  "train_cache": str(cache / f"{inst}-train"), "val_cache": str(cache / f"{inst}-test"),
                  "work_dir": str(_path(cfg_file, cfg["work_dir"]) / name), "bundle_dir": str(target)}
        t = time.time()
        bundle = train_ddsp(config)
        print(f"train {name}: {time.time() - t:.0f} s, metrics {bundle.metrics}", flush=True)


def stage_evaluate(cfg: dict[str, Any], cfg_file: Path, names: list[str]) -> None:
    """Held-out transfer RPA (same instrument and cross-instrument) and f0 tracker accuracy into each bundle."""
    from audioforge.bundle import Bundle
    from audioforge.corpora.manifest import Manifest
    from audioforge.ddsp.transfer import evaluate_tracker, evaluate_transfer

    ev = cfg.get("evaluate", {})
    test = Manifest.load(_path(cfg_file, cfg["corpus"]["out"]) / "test.jsonl")
    insts = list(cfg["instruments"].values())
    for name in names:
        target = _bundle_dir(cfg, cfg_file, name)
        bundle = Bundle.load(target)
        inst = cfg["instruments"][name]
        other = next((i for i in insts if i != inst), inst)
        n = int(ev.get("transfer_clips", 6))
        method = ev.get("f0_method", "crepe")
        same = evaluate_transfer(bundle, test.filter(where=lambda e, i=inst: e["instrument"] == i), clips=n,
                                 f0_method=method)
        cross = evaluate_transfer(bundle, test.filter(where=lambda e, i=other: e["instrument"] == i), clips=n,
                                  f0_method=method)
        tracker = evaluate_tracker(test.filter(where=lambda e, i=inst: e["instrument"] == i),
                                   clips=int(ev.get("tracker_clips", 6)))
        bundle.metrics.update({f"transfer_{k}": v for k, v in same.items()})
        bundle.metrics.update({f"transfer_from_{other}_{k}": v for k, v in cross.items()})
        bundle.metrics.update({f"tracker_{k}": v for k, v in tracker.items()})
        bundle.save(target, overwrite=True)
        print(f"evaluate {name}: same {same}, from {other} {cross}, tracker {tracker}", flush=True)


def stage_export(cfg: dict[str, Any], cfg_file: Path, names: list[str]) -> None:
    """ONNX forms, parity, quality loss and controls.json into each bundle folder."""
    from audioforge.bundle import Bundle
    from audioforge.ddsp.export import export_bundle

    cache = _path(cfg_file, cfg["cache_dir"])
    for name in names:
        target = _bundle_dir(cfg, cfg_file, name)
        inst = cfg["instruments"][name]
        report = export_bundle(target, target, eval_cache=cache / f"{inst}-test")
        bundle = Bundle.load(target)
        bundle.metrics["export"] = report
        bundle.save(target, overwrite=True)
        print(f"export {name}: {json.dumps(report)}", flush=True)


def main() -> None:
    """Parse arguments and run the stages."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(Path(__file__).with_name("config.json")))
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--only", default=None, help="comma-separated instrument names of the config")
    args = parser.parse_args()
    cfg_file = Path(args.config).resolve()
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise SystemExit(f"unknown stages {bad}; use {STAGES}")
    if cfg.get("train", {}).get("threads"):
        import torch

        torch.set_num_threads(int(cfg["train"]["threads"]))
    names = list(cfg["instruments"]) if not args.only else [n.strip() for n in args.only.split(",")]
    if "corpus" in stages:
        stage_corpus(cfg, cfg_file)
    if "cache" in stages:
        stage_cache(cfg, cfg_file, names)
    if "train" in stages:
        stage_train(cfg, cfg_file, names)
    if "evaluate" in stages:
        stage_evaluate(cfg, cfg_file, names)
    if "export" in stages:
        stage_export(cfg, cfg_file, names)


if __name__ == "__main__":
    main()
