"""``audioforge corpus ...``: offline dataset generators; each generator module adds one command to ``corpus_app``."""

from __future__ import annotations

import typer

from . import app

corpus_app = typer.Typer(help="Generate offline corpora (speech, instruments, sound events) with JSONL manifests.",
                         no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")

# Generator command modules register themselves on import (one line each):
from . import corpus_events  # noqa: E402,F401
from . import corpus_instruments  # noqa: E402,F401
from . import corpus_speech  # noqa: E402,F401
