"""``audioforge tag FILE`` and ``audioforge tagging {evaluate,train,export}``: audio tagging with PaSST bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from . import app

tagging_app = typer.Typer(help="Train, evaluate and export PaSST audio taggers.", no_args_is_help=True)
app.add_typer(tagging_app, name="tagging")


def _plot_timeline(times: Any, probs: Any, labels: list[str], path: Path, *, title: str) -> Path:
    """Draw ``probs (T, k)`` over ``times`` as a heat map, one row per label, to a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..audio import atomic_path

    probs = np.asarray(probs)
    step = float(times[1] - times[0]) if len(times) > 1 else 0.1
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(labels) + 1.6), dpi=100)
    im = ax.imshow(probs.T, aspect="auto", origin="upper", cmap="viridis", vmin=0.0, vmax=1.0,
                   extent=(float(times[0]) - step / 2, float(times[-1]) + step / 2, len(labels) - 0.5, -0.5))
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="probability")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


@app.command("tag")
def tag(
    file: Path = typer.Argument(..., help="Audio file (any rate; resampled to the model's rate)."),
    bundle: str = typer.Option("tagger", "--bundle", "-b", help="Shipped bundle name or bundle folder."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="How many tags to print."),
    timeline: Path | None = typer.Option(None, "--timeline", help="Draw the top tags over time to this PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print the top tags of FILE with their probabilities (and optionally draw the tag timeline)."""
    from rich.console import Console
    from rich.table import Table

    from ..audio import load
    from ..errors import AudioFileError
    from ..tagging import Tagger

    if not file.is_file():
        raise AudioFileError(f"audio file not found: {file}")
    tagger = Tagger.load(bundle)  # 10 s windows, or the model's span if its time embeddings cover less
    y, sr = load(file)
    result = tagger(y, sr)
    top = result.top_k(top_k)
    if timeline is not None:
        names = [name for name, _ in top]
        idx = [result.labels.index(n) for n in names]
        times, probs = result.timeline()
        _plot_timeline(times, probs[:, idx], names, timeline, title=f"{file.name}: top {len(names)} tags")
    if as_json:
        typer.echo(json.dumps({"file": str(file), "duration": round(result.duration, 3),
                               "tags": [{"label": n, "score": round(p, 6)} for n, p in top],
                               "timeline": str(timeline) if timeline is not None else None}))
        return
    table = Table(title=f"{file.name} ({result.duration:.2f} s, {result.n_windows} window(s))")
    table.add_column("#", justify="right")
    table.add_column("tag")
    table.add_column("score", justify="right")
    for i, (name, p) in enumerate(top, 1):
        table.add_row(str(i), name, f"{p:.3f}")
    console = Console()
    console.print(table)
    if timeline is not None:
        console.print(f"timeline: {timeline}")


@tagging_app.command("evaluate")
def evaluate(
    bundle: str = typer.Argument(..., help="Bundle name or folder, or an exported .onnx file."),
    manifest: Path = typer.Argument(..., help="Manifest (JSONL) with clip labels; labels.json next to it."),
    split: str = typer.Option("test", "--split", help="Score the clips of this split ('all' for every clip)."),
    per_class: bool = typer.Option(False, "--per-class", help="Also print the AP of every class."),
    clip_seconds: float = typer.Option(10.0, "--clip-seconds", help="Crop / zero-pad every clip to this length."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    timeline: bool = typer.Option(False, "--timeline", help="Also score the tag timeline against the strong "
                                  "labels (segment-level mAP; a bundle and a manifest with 'events')."),
) -> None:
    """Macro mAP, AUC and d-prime (or accuracy) of a tagger on the clips of a manifest."""
    from rich.console import Console
    from rich.table import Table

    from ..tagging.export import evaluate_tagger

    result = evaluate_tagger(bundle, manifest, split=None if split == "all" else split, per_class=per_class,
                             clip_seconds=clip_seconds)
    if timeline:
        from ..tagging.timeline_eval import evaluate_timeline

        if str(bundle).endswith(".onnx"):
            raise typer.BadParameter("--timeline needs a bundle (the exported ONNX graph has no timeline output)")
        seg = evaluate_timeline(bundle, manifest, split=None if split == "all" else split, clip_seconds=clip_seconds)
        result.update({k: v for k, v in seg.items() if k.startswith("segment_")})
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"{bundle} on {manifest} (split {split}, {result.get('clips')} clips)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("mAP", "auc", "d_prime", "accuracy", "segment_mAP", "segment_auc"):
        if key in result and result[key] is not None:
            table.add_row(key, f"{result[key]:.4f}")
    if result.get("skipped"):
        table.add_row("classes without positives", ", ".join(result["skipped"]))
    Console().print(table)
    if per_class and "ap" in result:
        t = Table(title="average precision per class")
        t.add_column("class")
        t.add_column("AP", justify="right")
        for name, ap in result["ap"].items():
            t.add_row(name, "n/a" if ap is None else f"{ap:.4f}")
        Console().print(t)


@tagging_app.command("train")
def train(config: Path = typer.Argument(..., help="Training config (JSON; see recipes/tagging/config.json).")) -> None:
    """Train (or resume) a PaSST tagger from a config; writes <out_dir>/bundle."""
    from ..tagging.train import train_tagger

    bundle = train_tagger(config)
    typer.echo(json.dumps(bundle.metrics))


@tagging_app.command("export")
def export(
    bundle: str = typer.Argument(..., help="Bundle name or folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for tagger.onnx (and int8 variants)."),
    int8: list[str] = typer.Option([], "--int8", help="Also write int8 models: 'dynamic' and/or 'static'."),
    calibration: Path | None = typer.Option(
        None, "--calibration", help="Manifest whose 'train' clips calibrate static int8 (required for static)."),
    calibration_clips: int = typer.Option(32, "--calibration-clips", min=1, help="Clips used for calibration."),
) -> None:
    """Export the inference path (front end + transformer) to ONNX, verified against torch; optional int8."""
    from ..errors import InvalidParameterError
    from ..tagging.export import export_all

    bad = [m for m in int8 if m not in ("dynamic", "static")]
    if bad:
        raise InvalidParameterError(f"--int8 {bad[0]!r}; use 'dynamic' or 'static'")
    if "static" in int8 and calibration is None:
        raise InvalidParameterError("--int8 static needs --calibration MANIFEST (training clips to measure ranges)")
    paths = export_all(bundle, out, int8=list(dict.fromkeys(int8)), calibration_manifest=calibration,
                       calibration_clips=calibration_clips)
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")
