"""``audioforge corpus events``: the multi-label sound-event tagging corpus (10 s clips at 32 kHz, strong labels)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from .corpus import corpus_app


@corpus_app.command("events")
def events(
    clips: int = typer.Option(..., "--clips", "-n", help="Number of 10 s clips to generate."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (resumed if it already holds this corpus)."),
    seed: int = typer.Option(0, "--seed", help="Master seed: the corpus is a function of it, not of --workers."),
    workers: int | None = typer.Option(None, "--workers", "-j", help="Processes (default: all cores)."),
    heldout_fraction: float = typer.Option(
        0.2, "--heldout-fraction", help="Fraction of clips in split 'test' (TimGM6mb soundfont, held-out voices)."
    ),
) -> None:
    """Generate clips mixing 1-4 sources (instruments, speech, synthesised events) with clip and strong labels."""
    from rich.console import Console
    from rich.table import Table

    from ..corpora.events import CLASS_NAMES, generate_event_corpus, summarize_event_corpus

    start = time.perf_counter()
    manifest = generate_event_corpus(out, clips=clips, seed=seed, workers=workers, heldout_fraction=heldout_fraction)
    elapsed = time.perf_counter() - start
    summary = summarize_event_corpus(manifest)
    splits = list(summary["clips"])

    console = Console()
    overview = Table(title=f"event corpus: {out}", show_header=True)
    overview.add_column("split")
    overview.add_column("clips", justify="right")
    overview.add_column("hours", justify="right")
    for s in splits:
        overview.add_row(s, str(summary["clips"][s]), f"{summary['hours'][s]:.3f}")
    overview.add_row("all", str(len(manifest)), f"{sum(summary['hours'].values()):.3f}")
    console.print(overview)

    table = Table(title="per class: clips (events, active seconds)", show_header=True)
    table.add_column("class")
    for s in splits:
        table.add_column(s, justify="right")
    for name in CLASS_NAMES:
        row = summary["classes"].get(name)
        if row is None:
            table.add_row(name, *("0" for _ in splits))
            continue
        table.add_row(name, *(f"{row[s]['clips']} ({row[s]['events']}, {row[s]['active_s']:.0f} s)" for s in splits))
    console.print(table)
    hours = sum(summary["hours"].values())
    console.print(
        f"{len(manifest)} clips, {hours:.3f} h, {summary['sources_per_clip']:.2f} sources per clip; "
        f"{elapsed:.1f} s this run; "
        f"manifest: {Path(out) / 'manifest.jsonl'}"
    )
