"""Reproduce the shipped tagger: generate the sound-event corpus, train passt_mini, evaluate, export, ship.

Stages (``--stages``, comma-separated, in this order; each is resumable):

``corpus``    :func:`audioforge.corpora.events.generate_event_corpus` into the manifest's folder (resumes clip by clip)
``train``     :func:`audioforge.tagging.train.train_tagger` (resumes from ``<out_dir>/checkpoints/last.ckpt``)
``evaluate``  macro mAP / d-prime of the trained bundle on the held-out ``test`` split (other soundfont and voices),
              and the segment mAP of its timeline against the strong labels
``export``    ONNX fp32 (verified against torch), int8 dynamic and int8 static (calibrated on training clips), each
              scored on the same held-out clips
``ship``      the bundle, with every figure above in its ``metrics``, into ``src/audioforge/assets/bundles/tagger``

The shipped tagger takes two runs: ``config.json`` trains from scratch on 12000 clips, then ``finetune24k.json``
continues from that bundle (``init_from``) on 24000 clips. ``--also-test NAME=MANIFEST`` scores the models on the
test split of further manifests too (the fine-tune is compared with its start on the 12000-clip corpus's test clips).

Usage::

    python recipes/tagging/run.py                                   # everything, config.json, 12000 clips
    python recipes/tagging/run.py --config recipes/tagging/finetune24k.json --clips 24000 \
        --also-test events12k=data/events12k/manifest.jsonl --also-test events=data/events/manifest.jsonl
    python recipes/tagging/run.py --config recipes/tagging/smoke.json --clips 60 --stages corpus,train,evaluate,export

A report (``report.json``) is written to the training folder after every stage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STAGES = ("corpus", "train", "evaluate", "export", "ship")
MAX_BUNDLE_BYTES = 20 * 2**20


def _say(msg: str) -> None:
    print(f"[tagging recipe {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Train and ship the audioforge sound-event tagger.")
    p.add_argument("--config", default=str(HERE / "config.json"))
    p.add_argument("--clips", type=int, default=12000, help="corpus size (20%% held out as the test split)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed")
    p.add_argument("--workers", type=int, default=2, help="corpus generator processes")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--ship-to", default=str(REPO / "src" / "audioforge" / "assets" / "bundles" / "tagger"))
    p.add_argument("--calibration-clips", type=int, default=32)
    p.add_argument("--also-test", action="append", default=[], metavar="NAME=MANIFEST",
                   help="also score on the test split of this manifest (repeatable); figures go to test_NAME")
    args = p.parse_args(argv)

    from audioforge.audio import atomic_path
    from audioforge.bundle import Bundle
    from audioforge.tagging.train import load_config

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        p.error(f"unknown stages {unknown}; choose from {list(STAGES)}")
    extra: dict[str, Path] = {}
    for item in args.also_test:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            p.error(f"--also-test takes NAME=MANIFEST, got {item!r}")
        if not Path(path).is_file():
            p.error(f"--also-test {name}: no manifest at {path}")
        extra[name] = Path(path)
    cfg = load_config(args.config)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Path(cfg.manifest)
    report_path = out / "report.json"
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.is_file() else {}

    def save_report() -> None:
        with atomic_path(report_path) as tmp:  # an interrupted stage leaves the previous report whole
            tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")

    if "corpus" in stages:
        from audioforge.corpora.events import generate_event_corpus, summarize_event_corpus

        _say(f"corpus: {args.clips} clips -> {manifest.parent}")
        t0 = time.perf_counter()
        m = generate_event_corpus(manifest.parent, clips=args.clips, seed=args.seed, workers=args.workers)
        summary = summarize_event_corpus(m)
        report["corpus"] = {"clips": summary["clips"], "hours": summary["hours"],
                            "seconds_this_run": round(time.perf_counter() - t0, 1)}
        save_report()
        _say(f"corpus: {summary['clips']} in {report['corpus']['seconds_this_run']} s")

    bundle_dir = out / "bundle"
    if "train" in stages:
        from audioforge.tagging.train import train_tagger

        _say(f"train: {cfg.preset}, {cfg.max_epochs} epochs, features={cfg.features}, strategy={cfg.strategy} "
             f"x{cfg.devices} -> {out}")
        t0 = time.perf_counter()
        bundle = train_tagger(cfg)
        if bundle.path is None:  # a DDP rank other than 0: rank 0 finishes the recipe
            return 0
        report["train"] = {**bundle.metrics, "seconds_this_run": round(time.perf_counter() - t0, 1)}
        save_report()
        _say(f"train: done, {json.dumps(bundle.metrics)}")

    if not bundle_dir.is_dir():
        _say(f"no trained bundle at {bundle_dir}; run the train stage first")
        return 1
    bundle = Bundle.load(bundle_dir)
    scores: dict[str, Any] = report.setdefault("test", {})
    test_sets = {"test": (manifest, scores)}
    test_sets.update({f"test_{name}": (m, report.setdefault(f"test_{name}", {})) for name, m in extra.items()})

    if "evaluate" in stages:
        from audioforge.tagging.export import evaluate_tagger

        for key, (m, sc) in test_sets.items():
            _say(f"evaluate: torch fp32 on the held-out test split of {m}")
            sc["torch_fp32"] = evaluate_tagger(bundle, m, split="test", per_class=True, progress=True)
            save_report()
            _say(f"evaluate: {key} mAP {sc['torch_fp32']['mAP']}, d' {sc['torch_fp32']['d_prime']}")
        from audioforge.tagging.timeline_eval import evaluate_timeline

        report["timeline"] = evaluate_timeline(bundle, manifest, split="test", per_class=True)
        save_report()
        _say(f"evaluate: timeline segment mAP {report['timeline']['segment_mAP']} "
             f"({report['timeline']['segment_step_s']} s segments)")

    if "export" in stages:
        from audioforge.deploy import model_size_bytes
        from audioforge.tagging.export import evaluate_tagger, export_all

        _say("export: ONNX fp32 (verified), int8 dynamic, int8 static")
        paths = export_all(bundle, out / "export", int8=("dynamic", "static"), calibration_manifest=manifest,
                           calibration_clips=args.calibration_clips)
        report["export"] = {k: {"path": str(v), "bytes": model_size_bytes(v)} for k, v in paths.items()}
        for key, (m, sc) in test_sets.items():
            for name, path in paths.items():
                _say(f"evaluate: {name} on {key}")
                sc[name] = evaluate_tagger(path, m, split="test", progress=True)
            save_report()
            for name in sc:
                _say(f"  {key:<16} {name:<20} mAP {sc[name]['mAP']}")

    if "ship" in stages:
        size = (bundle_dir / "model.safetensors").stat().st_size
        if size > MAX_BUNDLE_BYTES:
            _say(f"ship: the weights are {size / 2**20:.1f} MiB, over the 20 MiB limit; not shipped")
            return 1
        metrics = dict(bundle.metrics)
        for name, s in scores.items():
            metrics[f"heldout_mAP_{name}"] = s.get("mAP")
            metrics[f"heldout_d_prime_{name}"] = s.get("d_prime")
        for key in extra:
            for name, s in report.get(f"test_{key}", {}).items():
                metrics[f"heldout_{key}_mAP_{name}"] = s.get("mAP")
        if "corpus" in report:
            metrics["corpus"] = report["corpus"]["clips"]
        if "timeline" in report:
            metrics["heldout_segment_mAP"] = report["timeline"]["segment_mAP"]
        bundle.metrics = metrics
        bundle.options = {**bundle.options, "source": "recipes/tagging/run.py (generated sound-event corpus)"}
        Bundle(task=bundle.task, architecture=bundle.architecture, hyperparameters=bundle.hyperparameters,
               state_dict=bundle.state_dict, frontend=bundle.frontend, labels=bundle.labels, metrics=metrics,
               options=bundle.options).save(args.ship_to, overwrite=True)
        _say(f"ship: {args.ship_to} ({size / 2**20:.2f} MiB weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
