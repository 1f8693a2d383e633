"""``audioforge info``: versions, devices and threads."""

from __future__ import annotations

import os
import platform

from . import app


@app.command()
def info() -> None:
    """Print versions of audioforge and its key dependencies, available devices and thread settings."""
    import importlib.metadata as md

    import torch
    from rich.console import Console
    from rich.table import Table

    from .. import __version__

    table = Table(title=f"audioforge {__version__}", show_header=False)
    table.add_row("python", platform.python_version())
    table.add_row("platform", platform.platform())
    for pkg in ("torch", "numpy", "scipy", "librosa", "soundfile", "soxr", "onnx", "onnxruntime", "lightning"):
        try:
            table.add_row(pkg, md.version(pkg))
        except md.PackageNotFoundError:
            table.add_row(pkg, "not installed")
    table.add_row("cpu cores", str(os.cpu_count()))
    table.add_row("torch threads", f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op")
    cuda = torch.cuda.is_available()
    table.add_row(
        "cuda",
        ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda else "not available",
    )
    table.add_row(
        "mps",
        "available" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "not available",
    )
    from ..features import native

    table.add_row("native mel kernel", f"built, {native.cache_dir() / 'native'}" if native.available()
                  else "not available (no C compiler or AVX-512F, or AUDIOFORGE_NATIVE=0): numpy/torch path")
    Console().print(table)
