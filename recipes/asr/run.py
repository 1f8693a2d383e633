"""Recipe: the shipped default speech recogniser, from synthetic corpus to a checked, exported bundle.

Stages (all resumable; run them all or name some with ``--stages``):

``corpus``    generate (or resume) the synthetic English speech corpus (``corpus.hours`` hours, held-out test voices
              and sentences) into ``WORK/corpus``, and, when ``corpus_extra`` is set, training supplements spoken
              by further voices (neural: Piper, Kokoro) into ``WORK/corpus_extra`` (or a list of them, each in its
              own ``"dir"``; training sentences and new speakers only)
``train``     CMVN and tokenizer from the training split, then train (resumes from ``WORK/train/checkpoints/last.ckpt``)
              and average the best checkpoints into ``WORK/train/bundle``
``lm``        a character n-gram language model (Kneser-Ney, ``WORK/lm.arpa.gz``) on the training half of the corpus's
              sentence pool (sentences of the test split and of the validation utterances left out), its fusion
              weight and bonus tuned on the validation utterances (``WORK/lm_tuning.json`` and ``.png``), both put
              into ``WORK/train/bundle``
``evaluate``  CER/WER on the held-out test split: full context, streaming chunk 16, pocketsphinx (``WORK/eval.md``)
``export``    ONNX fp32 + int8 (static, calibrated on training audio), per-layer report, CER fp32 vs int8
``ship``      copy the bundle to ``src/audioforge/assets/bundles/asr`` only when every floor is met (or, with
              ``--allow-below-floors``, as an interim default whose metrics say which floors fail)

``snapshot`` (only when named) averages the best checkpoints written so far into ``WORK/train/bundle`` without
training, so a run in progress can be evaluated (``--stages snapshot,evaluate --max-utterances 200
--no-pocketsphinx``) while another process keeps training.

``--status`` prints where the recipe stands (corpus hours, training step, dev loss and token error rate) and draws
the training curves to ``<work-dir>/training.png``.

Usage::

    nohup nice -n 19 python recipes/asr/run.py > ~/.cache/audioforge/recipes/asr/run.log 2>&1 &
    python recipes/asr/run.py --status
    python recipes/asr/run.py --stages snapshot,evaluate --max-utterances 200 --no-pocketsphinx
    python recipes/asr/run.py --config recipes/asr/smoke.json --work-dir /tmp/asr-smoke
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

STAGES = ("corpus", "train", "lm", "evaluate", "export", "ship")
EXTRA_STAGES = ("snapshot",)  # run only when named, before evaluate
DEFAULT_WORK = Path("~/.cache/audioforge/recipes/asr").expanduser()
REPO = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stage_corpus(cfg: dict[str, Any], work: Path) -> None:
    """Generate (or resume) the corpus with the settings of ``audioforge corpus speech`` (defaults)."""
    from audioforge.corpora.speech import DEFAULT_SOURCES, generate_speech_corpus, summarize

    c = cfg["corpus"]
    sources = list(DEFAULT_SOURCES)  # the supplement must plan from the same sentence pool and split
    t = time.time()
    man = generate_speech_corpus(work / "corpus", hours=float(c["hours"]), seed=int(c["seed"]),
                                 workers=c.get("workers"), engines=["espeak-ng", "flite", "festival"],
                                 sources=sources, progress=False)
    s = summarize(man)
    log(f"corpus: {s['total']['utterances']} utterances, {s['total']['hours']:.2f} h "
        f"({ {k: round(v['hours'], 2) for k, v in s['by_split'].items()} }) in {time.time() - t:.0f} s")
    for name, x in supplements(cfg):
        t = time.time()
        man = generate_speech_corpus(work / name, hours=float(x["hours"]), seed=int(c["seed"]),
                                     workers=x.get("workers", c.get("workers")), engines=x["engines"],
                                     engine_weights=x.get("engine_weights"), only_train=True,
                                     sources=sources, progress=False)
        s = summarize(man)
        log(f"{name}: {s['total']['utterances']} utterances, {s['total']['hours']:.2f} h, "
            f"{s['total']['speakers']} speakers, in {time.time() - t:.0f} s")


def supplements(cfg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The training supplements, ``[(folder name in the work dir, settings), ...]``.

    ``corpus_extra`` is one settings object (folder ``corpus_extra``) or a list of them; in a list every supplement
    after the first names its own folder with ``"dir"``, so each one resumes on its own and can be added later.
    """
    x = cfg.get("corpus_extra")
    items = [] if not x else [x] if isinstance(x, dict) else list(x)
    out: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(items):
        name = item.get("dir", "corpus_extra" if i == 0 else None)
        if not name or name in ("corpus", "train", "export") or "/" in name:
            raise SystemExit(f"corpus_extra[{i}]: give this supplement a \"dir\" of its own (a folder name in the work "
                             f"dir other than corpus, train and export), got {name!r}")
        out.append((name, item))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise SystemExit(f"corpus_extra: two supplements share a folder: {names}; give each its own \"dir\"")
    return out


def train_dir(cfg: dict[str, Any], work: Path) -> Path:
    """The training folder in the work dir: ``train``, or the config's ``"train_dir"`` (a continuation run that
    starts from a bundle with ``train.init_from`` trains in a folder of its own, beside the corpus it shares)."""
    name = cfg.get("train_dir", "train")
    if not isinstance(name, str) or not name or "/" in name or name in ("corpus", "export") or name.startswith("."):
        raise SystemExit(f"train_dir: give a folder name in the work dir (not corpus or export), got {name!r}")
    if any(name == n for n, _ in supplements(cfg)):
        raise SystemExit(f"train_dir {name!r} is also a supplement's folder; give it a name of its own")
    return work / name


def train_config(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    """The :func:`audioforge.asr.train.train_asr` configuration of the recipe."""
    extra = [str(work / name / "manifest.jsonl") for name, _ in supplements(cfg)]
    return {**cfg["train"], "work_dir": str(train_dir(cfg, work)),
            "train_manifest": str(work / "corpus" / "manifest.jsonl"),
            "train_split": "train", "extra_train_manifests": extra}


def stage_train(cfg: dict[str, Any], work: Path) -> None:
    from audioforge.asr.train import train_asr

    t = time.time()
    bundle = train_asr(train_config(cfg, work))
    log(f"train: {bundle.metrics} in {time.time() - t:.0f} s")


def stage_snapshot(cfg: dict[str, Any], work: Path) -> None:
    """The bundle of the checkpoints written so far (the best ``average_best`` by validation loss), no training."""
    from audioforge.asr.streaming import DecodingConfig
    from audioforge.asr.tokenizer import load_tokenizer
    from audioforge.asr.train import bundle_from_checkpoints

    train = train_dir(cfg, work)
    for name in ("tokenizer.json", "model_config.json"):
        if not (train / name).is_file():
            raise SystemExit(f"snapshot: {train / name} is missing; run the train stage first")
    tokenizer = load_tokenizer((train / "tokenizer.json").read_text(encoding="utf-8"))
    model_config = json.loads((train / "model_config.json").read_text(encoding="utf-8"))
    tr = cfg["train"]
    decoding = DecodingConfig.from_dict(tr.get("decoding", {"chunk_size": 16, "num_left_chunks": -1}))
    bundle = bundle_from_checkpoints(train, int(tr.get("trainer", {}).get("average_best", 5)), tokenizer,
                                     model_config, decoding)
    log(f"snapshot: {bundle.metrics}")


def lm_sentences(cfg: dict[str, Any], work: Path) -> tuple[list[str], Any]:
    """The language model's text and the validation utterances it must not see (they tune the fusion).

    The text is the training half of the sentence pool the corpus was planned from (the transcript-hash split of
    :func:`audioforge.corpora.text.split_sentences`, so no test sentence can enter), minus every transcript of the
    validation utterances; the test transcripts of the manifest are checked to be absent.
    """
    from audioforge.asr.data import AsrDataModule, load_manifest
    from audioforge.corpora.text import sentence_pool, split_sentences

    settings = json.loads((work / "corpus" / "corpus.json").read_text(encoding="utf-8"))
    seed = int(settings["seed"])
    pool = sentence_pool(seed, sources=settings["sources"], max_words=int(settings["max_words"]))
    train_s, _ = split_sentences(pool, float(settings["test_fraction"]), seed=seed)
    manifest = work / "corpus" / "manifest.jsonl"
    tr = cfg["train"]
    _, valid = AsrDataModule.split_valid(load_manifest(manifest, split="train"), float(tr.get("valid_fraction", 0.02)))
    held = {e["txt"] for e in valid}
    test = {e["txt"] for e in load_manifest(manifest, split="test")}
    text = [s.txt for s in train_s if s.txt not in held]
    leaked = set(text) & test
    if leaked:
        raise SystemExit(f"lm: {len(leaked)} test transcripts in the language model text, e.g. {sorted(leaked)[0]!r}")
    limit = cfg.get("lm", {}).get("max_sentences")
    return (text[: int(limit)] if limit else text), valid


def stage_lm(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    """Estimate (or reuse) the language model, tune its fusion on the validation utterances, put both in the bundle."""
    import torch

    from audioforge.asr.infer import Recognizer
    from audioforge.asr.lm import LM_FILE, NgramLM
    from audioforge.asr.lm_fusion import attach_lm, estimate_token_lm, tune_lm_fusion
    from audioforge.audio import atomic_path
    from audioforge.corpora.manifest import Manifest
    from audioforge.plotting import plot_curves

    c = cfg["lm"]
    torch.set_num_threads(1)
    bundle_dir = train_dir(cfg, work) / "bundle"
    rec = Recognizer.from_bundle(bundle_dir, lm_weight=0.0)
    tok = rec.tokenizer
    settings = {"order": int(c["order"]), "min_counts": c.get("min_counts"), "max_sentences": c.get("max_sentences"),
                "tokenizer": tok.to_json()}
    lm_path, meta_path = work / LM_FILE, work / "lm.json"
    text, valid = lm_sentences(cfg, work)
    if lm_path.is_file() and meta_path.is_file() and \
            json.loads(meta_path.read_text(encoding="utf-8")).get("settings") == settings:
        lm = NgramLM.from_arpa(lm_path)
        log(f"lm: reusing {lm_path} ({lm.num_ngrams} n-grams)")
    else:
        t = time.time()
        lm, counts = estimate_token_lm(tok, text, settings["order"], min_counts=settings["min_counts"])
        lm.to_arpa(lm_path)
        meta = {"settings": settings, **counts, "ngrams": lm.num_ngrams, "bytes": lm_path.stat().st_size,
                "validation_perplexity": round(lm.perplexity([tok.tokens(tok.encode(e["txt"])) for e in valid]), 4),
                "seconds": round(time.time() - t, 1)}
        with atomic_path(meta_path) as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        log(f"lm: {({k: v for k, v in meta.items() if k != 'settings'})}")
    rec.lm = lm
    entries = list(valid)[: int(c.get("tune_utterances", 200))]
    t = time.time()
    def progress(i: int, n: int) -> None:
        if i % 25 == 0 or i > len(entries):
            log(f"lm: tuning {i}/{n} (utterances encoded, then grid points)")

    best, points = tune_lm_fusion(rec, Manifest(entries, root=valid.root), weights=c["weights"],
                                  bonuses=c["bonuses"], progress=progress)
    tuning = {"utterances": len(entries), "best": vars(best), "grid": [vars(p) for p in points]}
    with atomic_path(work / "lm_tuning.json") as tmp:
        tmp.write_text(json.dumps(tuning, indent=2) + "\n", encoding="utf-8")

    def curves(metric: str) -> dict[str, tuple[list[float], list[float]]]:
        rows = {b: sorted((p.weight, getattr(p, metric)) for p in points if p.bonus == b or p.weight == 0)
                for b in c["bonuses"]}
        return {f"bonus {b:g}": ([w for w, _ in r], [v for _, v in r]) for b, r in rows.items()}

    plot_curves([("validation CER (%)", curves("cer")), ("validation WER (%)", curves("wer"))],
                work / "lm_tuning.png", xlabel="language model weight",
                title=f"LM fusion on {len(entries)} validation utterances (streaming)")
    plain = next((vars(p) for p in points if p.weight == 0), "not scored")
    log(f"lm: tuned in {time.time() - t:.0f} s: best {vars(best)}; without the LM {plain}")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["settings"].pop("tokenizer", None)
    attach_lm(bundle_dir, lm, weight=best.weight, bonus=best.bonus,
              info={**meta, "tuning": {"utterances": len(entries), "best": vars(best), "without_lm": plain}})
    return tuning


def stage_evaluate(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    import torch

    from audioforge.asr.data import load_manifest
    from audioforge.asr.evaluate import error_rates_by, evaluate_bundle, format_breakdown, format_table
    from audioforge.audio import atomic_path

    e = cfg["evaluate"]
    # one thread, as the RTF floors are stated; more threads than free cores made a 15 s evaluation take over
    # 10 min while two trainings ran (spin-waiting intra-op threads)
    torch.set_num_threads(int(e.get("threads", 1)))
    t = time.time()
    test = load_manifest(work / "corpus" / "manifest.jsonl", split="test")  # read once for scoring and grouping
    results = evaluate_bundle(train_dir(cfg, work) / "bundle", test, split=None,
                              chunk_size=int(e["chunk_size"]), pocketsphinx=bool(e["pocketsphinx"]),
                              max_utterances=e.get("max_utterances"))
    table = format_table(results)
    # per voice: the test split mixes held-out voices of different engines, and their error rates differ widely
    by_voice = {r.system: error_rates_by(r, test, "voice") for r in results}
    with atomic_path(work / "eval.md") as tmp:
        tmp.write_text("# Held-out test split\n\n" + table + "\n## Per voice\n\n"
                       + format_breakdown(by_voice, "voice"), encoding="utf-8")
    doc = {r.system: {**r.to_dict(), "by_voice": by_voice[r.system]} for r in results}
    with atomic_path(work / "eval.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    log(f"evaluate ({time.time() - t:.0f} s):\n{table}")
    return doc


def stage_export(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    from audioforge.asr.quantize import export_asr
    from audioforge.corpora.manifest import Manifest

    x = cfg["export"]
    t = time.time()
    manifest = Manifest.load(work / "corpus" / "manifest.jsonl")
    res = export_asr(train_dir(cfg, work) / "bundle", work / "export", int8=x["int8"], calibration=manifest,
                     calibration_split="train", max_samples=int(x["max_samples"]), method=x["method"],
                     keep_float=x.get("keep_float", []), test_manifest=manifest, test_split="test",
                     max_test_utterances=x.get("max_test_utterances"))
    log(f"export ({time.time() - t:.0f} s): sizes {res.sizes}, {res.metrics}, report {res.report}")
    return res.to_dict()


def stage_ship(cfg: dict[str, Any], work: Path) -> None:
    """Copy the bundle into the package when the floors are met; otherwise say which are not."""
    s = cfg["ship"]
    if not s.get("bundle_dir"):
        log("ship: no bundle_dir in this configuration (smoke run): nothing shipped")
        return
    ev = json.loads((work / "eval.json").read_text(encoding="utf-8"))
    ex = json.loads((work / "export" / "export_summary.json").read_text(encoding="utf-8"))
    full = next(v for k, v in ev.items() if k.startswith("u2 full"))
    stream = next(v for k, v in ev.items() if k.startswith("u2 streaming"))
    peer = next((v for k, v in ev.items() if k.startswith("pocketsphinx")), None)
    f = s["floors"]
    checks = {
        f"streaming CER {stream['cer']:.2f} <= {f['stream_cer']}": stream["cer"] <= f["stream_cer"],
        f"streaming CER within {f['stream_vs_full_relative']:.0%} of full ({full['cer']:.2f})":
            stream["cer"] <= full["cer"] * (1 + f["stream_vs_full_relative"]),
        "WER better than pocketsphinx": peer is None or (stream["wer"] < peer["wer"] and full["wer"] < peer["wer"]),
        "int8 size ratio": ex["sizes"]["int8"] / ex["sizes"]["fp32"] <= f["int8_size_ratio"],
        "int8 CER within +0.5": ex["metrics"]["CER int8"] - ex["metrics"]["CER fp32"] <= f["int8_cer_delta"],
    }
    bundle = train_dir(cfg, work) / "bundle"
    size_mb = sum(p.stat().st_size for p in bundle.iterdir()) / 1e6
    checks[f"bundle {size_mb:.1f} MB <= {s['max_mb']} MB"] = size_mb <= float(s["max_mb"])
    for name, ok in checks.items():
        log(f"ship check: {'ok  ' if ok else 'FAIL'} {name}")
    size_ok = checks[f"bundle {size_mb:.1f} MB <= {s['max_mb']} MB"]
    if not all(checks.values()):
        if not (s.get("allow_below_floors") and size_ok):
            log("ship: floors not met; the default model is NOT replaced (train longer and re-run)")
            return
        log("ship: floors not met, shipping it as an INTERIM default (--allow-below-floors); training goes on")
    from audioforge.bundle import Bundle

    target = REPO / s["bundle_dir"]
    b = Bundle.load(bundle)
    b.metrics.update({"test": ev, "export": ex["metrics"], "floors": checks, "interim": not all(checks.values())})
    if target.exists():
        shutil.rmtree(target)
    b.save(target)
    log(f"ship: bundle written to {target}")


def status(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    """Corpus hours done, training step, latest validation numbers."""
    out: dict[str, Any] = {"work_dir": str(work)}
    prog = work / "corpus" / ".progress.jsonl"
    if prog.is_file():
        rows = [json.loads(line) for line in prog.read_text(encoding="utf-8").splitlines() if line.strip()]
        out["corpus_utterances"] = len(rows)
        out["corpus_hours"] = round(sum(r.get("duration", 0.0) for r in rows) / 3600, 3)
        out["corpus_target_hours"] = cfg["corpus"]["hours"]
    train = train_dir(cfg, work)
    if (train / "logs").is_dir():
        from audioforge.asr.train import read_metrics

        rows = read_metrics(train)
        if rows:
            from audioforge.asr.train import plot_training

            out["training_plot"] = str(plot_training(train, work / "training.png"))
        out["train_step_logged"] = int(max((r.get("step", 0) for r in rows), default=0))
        val = [r for r in rows if "val_loss" in r]
        if val:
            out["dev_loss"] = val[-1]["val_loss"]
            out["dev_token_error_rate_pct"] = round(100 * val[-1]["val_token_error_rate"], 2)
            out["dev_at_step"] = int(val[-1]["step"])
        last = train / "checkpoints" / "last.ckpt"
        if last.is_file():
            import torch

            out["last_ckpt_step"] = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])
    for name in ("eval.json",):
        if (work / name).is_file():
            out[name] = json.loads((work / name).read_text(encoding="utf-8"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=Path(__file__).with_name("config.json"))
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    ap.add_argument("--status", action="store_true", help="print where the recipe stands and exit")
    ap.add_argument("--max-utterances", type=int, default=None, help="evaluate: score only this many test utterances")
    ap.add_argument("--no-pocketsphinx", action="store_true", help="evaluate: skip the pocketsphinx peer")
    ap.add_argument("--allow-below-floors", action="store_true",
                    help="ship: replace the default model even when a quality floor is not met (an interim model)")
    ap.add_argument("--threads", type=int, default=None,
                    help="train: torch threads (default: the config's; 2 when nothing else runs on the 2 cores)")
    args = ap.parse_args(argv)
    cfg = json.loads(args.config.read_text(encoding="utf-8"))
    if args.allow_below_floors:
        cfg["ship"]["allow_below_floors"] = True
    if args.threads is not None:
        if args.threads < 1:
            ap.error(f"--threads must be >= 1, got {args.threads}")
        cfg["train"].setdefault("trainer", {})["num_threads"] = args.threads
    if args.max_utterances is not None:
        cfg["evaluate"]["max_utterances"] = args.max_utterances
    if args.no_pocketsphinx:
        cfg["evaluate"]["pocketsphinx"] = False
    supplements(cfg)  # a malformed corpus_extra fails here, not after hours of corpus generation
    train_dir(cfg, Path("."))  # so does a bad train_dir
    work = args.work_dir.expanduser()
    work.mkdir(parents=True, exist_ok=True)
    if args.status:
        print(json.dumps(status(cfg, work), indent=2))
        return 0
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    order = ("corpus", "train", *EXTRA_STAGES, "lm", "evaluate", "export", "ship")
    unknown = sorted(set(stages) - set(order))
    if unknown:
        ap.error(f"unknown stages {unknown}; use {order}")
    funcs = {"corpus": stage_corpus, "train": stage_train, "snapshot": stage_snapshot, "lm": stage_lm,
             "evaluate": stage_evaluate, "export": stage_export, "ship": stage_ship}
    for stage in order:
        if stage in stages:
            log(f"stage {stage}")
            funcs[stage](cfg, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
