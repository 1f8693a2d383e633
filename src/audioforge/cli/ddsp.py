"""``audioforge transfer`` (timbre transfer) and ``audioforge ddsp train|export``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from . import app

ddsp_app = typer.Typer(help="DDSP timbre models: train from a config, export for the browser.", no_args_is_help=True)
app.add_typer(ddsp_app, name="ddsp")


def _bundle_name(instrument: str) -> str:
    """``sax`` -> ``ddsp-sax``; a folder path or a full bundle name is kept."""
    if Path(instrument).is_dir() or instrument.startswith("ddsp-"):
        return instrument
    return f"ddsp-{instrument}"


@app.command()
def transfer(
    file: Path = typer.Argument(..., help="Monophonic recording (wav, flac, ogg ...; any rate)."),
    instrument: str = typer.Option(..., "--instrument", "-i", help="sax, violin, flute, or a DDSP bundle folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Output audio file (16 kHz)."),
    pitch_shift: float = typer.Option(0.0, "--pitch-shift", help="Semitones added after auto-adjust (-24..24)."),
    loudness_shift: float = typer.Option(0.0, "--loudness-shift", help="dB added after auto-adjust (-40..40)."),
    no_auto: bool = typer.Option(False, "--no-auto", help="No auto-adjust (octave shift, loudness mapping)."),
    f0_method: str = typer.Option("crepe", "--f0", help="f0 tracker: crepe (CREPE tiny) or yin."),
    seed: int = typer.Option(0, "--seed", help="Noise seed."),
) -> None:
    """Play FILE's melody with a trained DDSP instrument."""
    from ..audio import save
    from ..ddsp.transfer import timbre_transfer

    res = timbre_transfer(file, _bundle_name(instrument), auto_adjust=not no_auto, pitch_shift=pitch_shift,
                          loudness_shift=loudness_shift, f0_method=f0_method, seed=seed)
    save(out, res.audio, res.sr)
    typer.echo(f"{file} -> {out}: {res.audio.size / res.sr:.2f} s, notes on {100 * res.note.mean():.0f}% of frames, "
               f"octave shift {res.octave_shift:+d} st, pitch shift {res.pitch_shift:+.1f} st, "
               f"loudness shift {res.loudness_shift:+.1f} dB" + (f", scaled by {res.gain:.2f}" if res.gain < 1 else ""))


@ddsp_app.command("train")
def train(config: Path = typer.Argument(..., help="Training config (JSON; see audioforge.ddsp.train.DEFAULT_CONFIG)."),
          progress: bool = typer.Option(True, help="Show the progress bar.")) -> None:
    """Train (or resume) a DDSP model from CONFIG and write its bundle."""
    from ..ddsp.train import train_ddsp

    bundle = train_ddsp(config, progress=progress)
    typer.echo(json.dumps({"bundle": str(bundle.path) if bundle.path else None, "metrics": bundle.metrics}))


@ddsp_app.command("export")
def export(name: str = typer.Argument(..., help="Bundle: shipped name (ddsp-sax, or sax) or folder."),
           out: Path = typer.Option(..., "--out", "-o", help="Output folder for the ONNX files and controls.json."),
           eval_cache: Path | None = typer.Option(None, "--eval-cache", help="Feature cache to measure quality on.")
           ) -> None:
    """Export the decoder to ONNX (fp32, fp16, int8) with controls.json; print sizes and quality."""
    from ..ddsp.export import export_bundle

    report = export_bundle(_bundle_name(name), out, eval_cache=eval_cache)
    typer.echo(json.dumps(report, indent=1))
