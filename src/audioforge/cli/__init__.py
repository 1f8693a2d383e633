"""The ``audioforge`` command line (typer). Each command group lives in its own module and registers itself here."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="audioforge",
    help="Real-time audio machine learning: features, corpora, tagging, speech recognition, synthesis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
    """audioforge: real-time audio machine learning."""


# Command modules: importing one registers its commands on `app` (or adds a sub-app).
from . import asr, bench, corpus, ddsp, demo, features, info, serve, tagging  # noqa: E402,F401


def main() -> None:
    """Entry point of the ``audioforge`` script: AudioForgeError becomes a one-line message and exit code 2."""
    from ..errors import AudioForgeError

    try:
        app()
    except AudioForgeError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise SystemExit(2) from None


__all__ = ["app", "main"]
