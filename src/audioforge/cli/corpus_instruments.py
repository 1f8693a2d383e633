"""``audioforge corpus instruments``: solo-instrument clips (FluidSynth, 16 kHz) with f0 and note ground truth."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from .corpus import corpus_app


@corpus_app.command("instruments")
def instruments(
    programs: str = typer.Option(
        ..., "--programs", "-p", help="Comma-separated instruments: names, aliases or GM numbers (sax,violin,flute)."
    ),
    minutes: float = typer.Option(..., "--minutes", "-m", help="Training minutes per instrument (FluidR3_GM)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (resumed if it already holds this corpus)."),
    heldout_minutes: float | None = typer.Option(
        None, "--heldout-minutes", help="Held-out minutes per instrument (TimGM6mb, unseen melodies); default M/10."
    ),
    seed: int = typer.Option(0, "--seed", help="Corpus seed: the corpus is a function of it, not of --workers."),
    workers: int | None = typer.Option(None, "--workers", "-j", help="Processes (default: all cores)."),
    clip_seconds: float = typer.Option(10.0, "--clip-seconds", help="Length of each clip in seconds."),
) -> None:
    """Render expressive melodies (phrasing, dynamics, vibrato, glides) with per-frame f0 truth at 250 Hz."""
    from rich.console import Console
    from rich.table import Table

    from ..corpora.instruments import generate_instrument_corpus

    start = time.time()
    manifest = generate_instrument_corpus(
        out, programs=programs, minutes=minutes, heldout_minutes=heldout_minutes, seed=seed, workers=workers,
        clip_seconds=clip_seconds,
    )
    elapsed = time.time() - start
    root = Path(out)

    groups: dict[tuple[str, str], list[dict]] = {}
    for e in manifest:
        groups.setdefault((e["instrument"], e["split"]), []).append(e)
    table = Table(title=f"instrument corpus: {root}")
    for col, justify in (("instrument", "left"), ("program", "right"), ("split", "left"), ("soundfont", "left"),
                         ("clips", "right"), ("minutes", "right"), ("notes", "right"), ("voiced", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for (name, split), rows in sorted(groups.items(), key=lambda kv: (kv[0][1] != "train", kv[0][0])):
        total = sum(r["duration"] for r in rows)
        voiced = sum(r["voiced"] * r["duration"] for r in rows) / total if total else 0.0
        table.add_row(name, str(rows[0]["program"]), split, rows[0]["soundfont"], str(len(rows)),
                      f"{total / 60:.2f}", str(sum(r["n_notes"] for r in rows)), f"{100 * voiced:.0f}%")
    console = Console()
    console.print(table)

    # what this run rendered (a resumed run skips finished clips): the wavs written since it started
    new = [e for e in manifest if manifest.audio_path(e).stat().st_mtime >= start - 1.0]
    new_minutes = sum(e["duration"] for e in new) / 60
    rate = (new_minutes / 60) / (elapsed / 60) if elapsed > 0 else 0.0
    console.print(
        f"{len(manifest)} clips, {manifest.total_duration / 3600:.3f} h in all; this run rendered {len(new)} clips "
        f"({new_minutes:.1f} min) in {elapsed:.1f} s = {rate:.2f} h of audio per minute; "
        f"manifest: {root / 'manifest.jsonl'}"
    )
