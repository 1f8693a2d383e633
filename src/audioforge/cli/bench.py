"""``audioforge bench ...``: the benchmarks of benchmarks/, runnable from an installed package."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app

bench_app = typer.Typer(help="Benchmarks against peers, measured in one run with threads pinned to one.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("features")
def bench_features(
    quick: bool = typer.Option(False, help="Short measurements (a smoke run, not for reporting)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results to this JSON file."),
    sections: str = typer.Option("abcdef", help="a seed mel, b PaSST mel, c WeNet fbank, d streaming, e 64 streams, "
                                 "f exported (ONNX) log-mel."),
) -> None:
    """Mel / fbank speed against librosa, nnAudio and kaldi-native-fbank (issue #2's table)."""
    import os

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from ..benchmarking.features import run

    run(quick=quick, json_path=str(json_out) if json_out else None, sections=sections)
