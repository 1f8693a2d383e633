"""Speech recognition: ``audioforge transcribe``, ``audioforge export asr``, ``audioforge asr train|evaluate``."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import typer

from . import app

asr_app = typer.Typer(help="Speech recognition: train and evaluate U2 models.", no_args_is_help=True)
app.add_typer(asr_app, name="asr")


def _export_group() -> typer.Typer:
    """The ``export`` command group (shared with other tasks' export commands)."""
    for group in app.registered_groups:
        if group.name == "export" and group.typer_instance is not None:
            return group.typer_instance
    group = typer.Typer(help="Export models for deployment (ONNX, int8).", no_args_is_help=True)
    app.add_typer(group, name="export")
    return group


export_app = _export_group()

BACKENDS = ("torch", "onnx")


def _onnx_folder(bundle: str) -> Path:
    """An ONNX export of ``bundle``: the folder itself when it is one, else a cached export of the bundle."""
    from ..asr.quantize import export_asr
    from ..bundle import Bundle

    path = Path(bundle)
    if (path / "asr_config.json").is_file():
        return path
    b = Bundle.load(bundle)
    assert b.path is not None
    h = hashlib.sha256()
    for f in sorted(p for p in b.path.iterdir() if p.is_file()):  # weights, decoding settings, language model
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    digest = h.hexdigest()[:16]
    folder = Path.home() / ".cache" / "audioforge" / "onnx" / f"asr-{digest}"
    if not (folder / "asr_config.json").is_file():
        export_asr(b, folder, int8=None, verify=False)
    return folder


def _recognizer(bundle: str, backend: str) -> Any:
    from ..errors import InvalidParameterError

    if backend not in BACKENDS:
        raise InvalidParameterError(f"--backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "onnx":
        from ..asr.onnx_infer import OnnxRecognizer

        return OnnxRecognizer(_onnx_folder(bundle))
    from ..asr.infer import Recognizer

    return Recognizer.from_bundle(bundle)


def _result_dict(res: Any) -> dict[str, Any]:
    return {
        "text": res.text,
        "nbest": [{"text": t, "score": s} for t, s in res.nbest],
        "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in res.words],
        "start": res.start,
        "end": res.end,
        "final": res.final,
        "timings": res.timings,
    }


@app.command("transcribe")
def transcribe(
    file: Path = typer.Argument(..., help="Audio file (any rate; resampled to 16 kHz)."),
    bundle: str = typer.Option("asr", "--bundle", "-b", help="Bundle folder or shipped name (or an ONNX export)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: n-best, word timestamps, timings."),
    stream: bool = typer.Option(False, "--stream", help="Stream the file and print partials as they would arrive."),
    backend: str = typer.Option("torch", "--backend", help="torch or onnx (onnxruntime only)."),
    chunk_s: float = typer.Option(0.1, "--chunk-seconds", help="Streaming: seconds of audio per message."),
    realtime: bool = typer.Option(False, "--realtime", help="Streaming: wait as a live source would."),
) -> None:
    """Recognise speech in FILE; the transcript is on the last line."""
    from ..audio import load
    from ..errors import InvalidParameterError

    if chunk_s <= 0:
        raise InvalidParameterError(f"--chunk-seconds must be > 0, got {chunk_s}")
    rec = _recognizer(bundle, backend)
    if not stream:
        samples, sr = load(file)
        res = rec.transcribe(samples, sr)
        if as_json:
            typer.echo(json.dumps(_result_dict(res), indent=2))
        typer.echo(res.text)
        return
    samples, _ = load(file, sr=16000)
    session = rec.stream(16000)
    step = max(1, round(chunk_s * 16000))
    t0 = time.perf_counter()
    events: list[dict[str, Any]] = []
    for start in range(0, samples.shape[0], step):
        if realtime:
            time.sleep(max(0.0, start / 16000 - (time.perf_counter() - t0)))
        audio_t = min(start + step, samples.shape[0]) / 16000
        for r in session.accept_waveform(samples[start : start + step]):
            kind = "final" if r.final else "partial"
            events.append({"audio_s": round(audio_t, 3), "type": kind, **_result_dict(r)})
            if not as_json:
                typer.echo(f"[{audio_t:6.2f} s] {kind:7s} {r.text}")
    last = session.finalize()
    events.append({"audio_s": round(samples.shape[0] / 16000, 3), "type": "final", **_result_dict(last)})
    if as_json:
        typer.echo(json.dumps(events, indent=2))
    else:
        typer.echo(f"[{samples.shape[0] / 16000:6.2f} s] final   {last.text}")
    typer.echo(session.text)


@export_app.command("asr")
def export_asr_cmd(
    bundle: str = typer.Argument(..., help="ASR bundle folder or shipped name."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    int8: str | None = typer.Option(None, "--int8", help="dynamic or static (default: float only)."),
    calibration: Path | None = typer.Option(None, "--calibration", help="Calibration manifest (static int8)."),
    calibration_split: str | None = typer.Option(None, "--calibration-split", help="Split of the calibration data."),
    max_samples: int = typer.Option(50, "--max-samples", help="Calibration utterances."),
    method: str = typer.Option("minmax", "--method", help="minmax, entropy or percentile."),
    keep_float: list[str] = typer.Option([], "--keep-float", help="Node name or op type kept in float (repeat)."),
    test: Path | None = typer.Option(None, "--test", help="Manifest to score CER/WER of fp32 vs int8."),
    test_split: str | None = typer.Option("test", "--test-split", help="Split of the test manifest."),
    max_test: int | None = typer.Option(None, "--max-test", help="Test utterances (default all)."),
) -> None:
    """Export BUNDLE to encoder.onnx / ctc.onnx / decoder.onnx (+ int8 and a float vs int8 report)."""
    from ..asr.quantize import export_asr

    res = export_asr(bundle, out, int8=int8, calibration=calibration, calibration_split=calibration_split,
                     max_samples=max_samples, method=method, keep_float=keep_float, test_manifest=test,
                     test_split=test_split, max_test_utterances=max_test)
    typer.echo(f"float model: {res.folder} ({res.sizes['fp32'] / 1e6:.2f} MB)")
    if res.int8_folder is not None:
        ratio = res.sizes["int8"] / res.sizes["fp32"]
        typer.echo(f"int8 model: {res.int8_folder} ({res.sizes['int8'] / 1e6:.2f} MB, {100 * ratio:.1f}% of fp32)")
    for k, v in res.metrics.items():
        typer.echo(f"{k}: {v:.2f}%")
    if res.worst_layers:
        typer.echo("worst layers: " + ", ".join(f"{n} ({c:.4f})" for n, c in res.worst_layers[:5]))
    if res.report is not None:
        typer.echo(f"report: {res.report}")


@asr_app.command("train")
def train_cmd(
    config: Path = typer.Argument(..., help="JSON training configuration (see audioforge.asr.train)."),
    progress: bool = typer.Option(False, "--progress", help="Show Lightning's progress bar."),
    init_from: str | None = typer.Option(
        None, "--init-from",
        help="Fine-tune: start from this ASR bundle's weights, tokenizer and CMVN (folder or shipped name, e.g. asr); "
             "overrides the configuration's init_from. Give the configuration a lower optim.lr."),
) -> None:
    """Train (or resume) a U2 model; writes WORK_DIR/bundle."""
    from ..asr.train import train_asr
    from ..errors import InvalidParameterError

    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidParameterError(f"cannot read the training configuration {config}: {exc}") from exc
    if not isinstance(cfg, dict):
        raise InvalidParameterError(f"{config} must hold a JSON object")
    if init_from is not None:
        cfg["init_from"] = init_from
    bundle = train_asr(cfg, progress=progress)
    typer.echo(json.dumps(bundle.metrics))
    typer.echo(f"bundle: {bundle.path}")


@asr_app.command("evaluate")
def evaluate_cmd(
    bundle: str = typer.Argument(..., help="ASR bundle folder or shipped name."),
    manifest: Path = typer.Argument(..., help="Manifest with txt."),
    split: str | None = typer.Option("test", "--split", help="Split to score ('' for all entries)."),
    chunk_size: int = typer.Option(16, "--chunk-size", help="Streaming chunk (encoder frames)."),
    pocketsphinx: bool = typer.Option(True, "--pocketsphinx/--no-pocketsphinx", help="Score the peer too."),
    max_utterances: int | None = typer.Option(None, "--max-utterances", help="First N utterances only."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    by: str | None = typer.Option(None, "--by", help="Also score per value of this manifest field (e.g. voice)."),
) -> None:
    """CER/WER of BUNDLE full context and streaming, and of pocketsphinx, on MANIFEST."""
    from ..asr.data import load_manifest
    from ..asr.evaluate import error_rates_by, evaluate_bundle, format_breakdown, format_table

    entries = load_manifest(manifest, split=split or None)  # read once for scoring and grouping
    results = evaluate_bundle(bundle, entries, split=None, chunk_size=chunk_size,
                              pocketsphinx=pocketsphinx, max_utterances=max_utterances)
    groups = {r.system: error_rates_by(r, entries, by) for r in results} if by else {}
    if as_json:
        typer.echo(json.dumps([{**r.to_dict(), **({f"by_{by}": groups[r.system]} if by else {})} for r in results],
                              indent=2))
    else:
        typer.echo(format_table(results))
        if by:
            typer.echo(format_breakdown(groups, by))


def _read_sentences(paths: list[Path]) -> list[str]:
    """Transcript-normalised sentences of text files (one per line) and manifests (``.jsonl``: their ``txt``)."""
    from ..corpora.text import normalize_text
    from ..errors import InvalidParameterError

    out: list[str] = []
    for path in paths:
        if not path.is_file():
            raise InvalidParameterError(f"no text file at {path}")
        if path.suffix == ".jsonl":
            from ..asr.data import load_manifest

            out += [str(e["txt"]) for e in load_manifest(path, split=None) if e.get("txt")]
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidParameterError(f"cannot read {path} as UTF-8 text: {exc}") from exc
        out += [t for t in (normalize_text(line) for line in lines if line.strip()) if t]
    return out


@asr_app.command("lm")
def lm_cmd(
    bundle: str = typer.Argument(..., help="ASR bundle folder or shipped name."),
    text: list[Path] = typer.Argument(..., help="Text files (one sentence per line) or manifests (.jsonl: txt)."),
    out: Path = typer.Option(..., "--out", help="Folder for the bundle with the language model."),
    order: int = typer.Option(6, "--order", help="n-gram order (in the bundle's units: characters or pieces)."),
    min_counts: str = typer.Option("", "--min-counts", help="Count cut-off per order, e.g. 1,1,1,2,2,3."),
    weight: float = typer.Option(0.5, "--weight", help="Fusion weight (ignored with --tune)."),
    bonus: float = typer.Option(1.0, "--bonus", help="Score bonus per token (ignored with --tune)."),
    tune: Path | None = typer.Option(None, "--tune", help="Manifest of held-out utterances to pick weight and bonus."),
    tune_split: str | None = typer.Option(None, "--tune-split", help="Split of the --tune manifest."),
    tune_utterances: int = typer.Option(200, "--tune-utterances", help="Tune on the first N utterances."),
) -> None:
    """Estimate a Kneser-Ney n-gram language model of TEXT for BUNDLE and write BUNDLE + model to --out.

    Keep the sentences of your test set out of TEXT, and the --tune utterances too.
    """
    from ..asr.infer import Recognizer
    from ..asr.lm_fusion import attach_lm, estimate_token_lm, tune_lm_fusion
    from ..errors import InvalidParameterError

    try:
        cuts = [int(x) for x in min_counts.split(",")] if min_counts.strip() else None
    except ValueError as exc:
        raise InvalidParameterError(f"--min-counts must be comma-separated integers, got {min_counts!r}") from exc
    rec = Recognizer.from_bundle(bundle)
    sentences = _read_sentences(text)
    start = time.perf_counter()
    lm, counts = estimate_token_lm(rec.tokenizer, sentences, order, min_counts=cuts)
    typer.echo(f"language model: order {lm.order}, n-grams {lm.num_ngrams}, {counts['sentences']} sentences "
               f"({counts['skipped']} skipped) in {time.perf_counter() - start:.1f} s")
    info: dict[str, Any] = {"sentences": counts["sentences"], "tokens": counts["tokens"]}
    if tune is not None:
        from ..asr.data import load_manifest
        from ..corpora.manifest import Manifest

        m = load_manifest(tune, split=tune_split)
        m = Manifest(list(m)[:tune_utterances], root=m.root)
        rec.lm = lm
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("tuning the fusion", total=None)
            best, points = tune_lm_fusion(rec, m, progress=lambda i, n: bar.update(task, completed=i, total=n))
        for p in points:
            typer.echo(f"  weight {p.weight:4.2f} bonus {p.bonus:4.2f}: CER {p.cer:6.2f}  WER {p.wer:6.2f}")
        weight, bonus = best.weight, best.bonus
        info["tuning"] = {"utterances": len(m), "best": {"cer": best.cer, "wer": best.wer}}
        typer.echo(f"best: weight {weight} bonus {bonus} (CER {best.cer:.2f}, WER {best.wer:.2f})")
    b = attach_lm(bundle, lm, weight=weight, bonus=bonus, info=info, out=out)
    typer.echo(f"bundle: {b.path}")
