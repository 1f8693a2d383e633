"""PNG plots of features and results (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .audio import atomic_path

__all__ = ["plot_spectrogram"]


def plot_spectrogram(
    spec_db: Any,
    path: str | os.PathLike[str],
    *,
    sr: int,
    hop_length: int,
    title: str = "",
    ylabel: str = "mel band",
    colorbar_label: str = "dB",
) -> Path:
    """Draw a ``(bands, frames)`` spectrogram (already in dB or log) to a PNG with a time axis in seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = np.asarray(spec_db.detach().cpu() if hasattr(spec_db, "detach") else spec_db)
    if spec.ndim != 2:
        raise ValueError(f"expected a 2-D (bands, frames) array, got shape {spec.shape}")
    seconds = spec.shape[1] * hop_length / sr
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    im = ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0.0, seconds, 0, spec.shape[0]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, label=colorbar_label)
    fig.tight_layout()
    p = Path(path)
    with atomic_path(p) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return p
