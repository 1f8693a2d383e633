"""``audioforge corpus speech``: the synthetic English speech corpus (espeak-ng, flite, festival, optionally the
neural piper and kokoro voices, + augmentation)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from .corpus import corpus_app


def _split_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@corpus_app.command("speech")
def speech(
    hours: float = typer.Option(..., "--hours", "-H", help="Target hours of audio (summary reports the real total)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; re-running into it resumes."),
    seed: int = typer.Option(0, help="Everything follows from the seed; the audio does not depend on --workers."),
    workers: int | None = typer.Option(None, "--workers", "-j", help="Processes (default: all cores)."),
    test_fraction: float = typer.Option(0.1, help="Share of hours in the held-out test split (0: train only)."),
    voice_test_fraction: float = typer.Option(0.2, help="Share of espeak-ng speakers held out for test."),
    librispeech: bool = typer.Option(False, "--librispeech", help="Write FLAC in LibriSpeech's folder layout."),
    engines: str = typer.Option("espeak-ng,flite,festival",
                                help="Comma-separated TTS engines (also: piper, kokoro, kokoro-blend; neural voices)."),
    only_train: bool = typer.Option(False, "--only-train",
                                    help="A training supplement to the corpus of the same seed: new voices speak "
                                         "training sentences only (no test split)."),
    voices: str | None = typer.Option(None, help="Comma-separated voice names (overrides --engines)."),
    sources: str = typer.Option("fortune,wordnet,gcide,templates", help="Comma-separated sentence sources."),
    max_words: int = typer.Option(25, help="Longest transcript in words."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Tempo, pitch, reverb, band-limit, noise."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate 16 kHz English speech with a WeNet-style JSONL manifest and held-out test voices and sentences."""
    from rich.console import Console
    from rich.table import Table

    from ..corpora.speech import generate_speech_corpus, summarize

    t0 = time.perf_counter()
    manifest = generate_speech_corpus(
        out, hours=hours, seed=seed, workers=workers, test_fraction=test_fraction,
        voice_test_fraction=voice_test_fraction, librispeech_layout=librispeech,
        engines=_split_list(engines) or [], voices=_split_list(voices), sources=_split_list(sources) or [],
        max_words=max_words, only_train=only_train, augment=augment, progress=not quiet,
    )
    wall = time.perf_counter() - t0
    s = summarize(manifest)
    table = Table(title=f"speech corpus in {out}")
    for col in ("group", "utterances", "hours", "voices", "speakers", "sentences"):
        table.add_column(col, justify="left" if col == "group" else "right")

    def row(name: str, b: dict) -> None:
        table.add_row(name, str(b["utterances"]), f"{b['hours']:.3f}", str(b["voices"]), str(b["speakers"]),
                      str(b["sentences"]))

    row("total", s["total"])
    for field in ("split", "engine", "gender", "source"):
        for k, b in s[f"by_{field}"].items():
            row(f"{field}={k}", b)
    console = Console()
    console.print(table)
    d = s["duration_s"]
    console.print(
        f"durations {d['min']:.2f}-{d['max']:.2f} s (mean {d['mean']:.2f}); {s['augmented']} augmented; "
        f"held out: {s['held_out']}; manifest {Path(out) / 'manifest.jsonl'}; "
        f"{s['total']['hours'] / max(wall / 60.0, 1e-9):.2f} h of audio per minute ({wall:.1f} s wall)"
    )
