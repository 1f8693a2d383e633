"""PNG plots of features and results (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .audio import atomic_path
from .errors import InvalidParameterError

__all__ = ["ema", "plot_curves", "plot_spectrogram", "save_figure"]

#: One panel of :func:`plot_curves`: its y-axis label and named ``(x, y)`` series.
Panel = tuple[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Lay out a matplotlib figure, write it to ``path`` as PNG atomically, close it; return the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    p = Path(path)
    with atomic_path(p) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return p


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
        raise InvalidParameterError(f"expected a 2-D (bands, frames) array, got shape {spec.shape}")
    seconds = spec.shape[1] * hop_length / sr
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    im = ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0.0, seconds, 0, spec.shape[0]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, label=colorbar_label)
    return save_figure(fig, path)


def ema(values: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Exponential moving average (bias-corrected from the first value), to draw noisy per-step losses."""
    if not 0.0 < alpha <= 1.0:
        raise InvalidParameterError(f"alpha must be in (0, 1], got {alpha}")
    out: list[float] = []
    acc = 0.0
    weight = 0.0
    for v in values:
        acc = (1.0 - alpha) * acc + alpha * float(v)
        weight = (1.0 - alpha) * weight + alpha
        out.append(acc / weight)
    return out


def plot_curves(panels: Sequence[Panel], path: str | os.PathLike[str], *, xlabel: str = "step",
                title: str = "") -> Path:
    """Training curves: one panel per ``(ylabel, {label: (x, y)})``, stacked, sharing the x axis; written atomically.

    Series with no points are skipped; a panel with none says so instead of drawing empty axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise InvalidParameterError("plot_curves needs at least one panel")
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.8 * len(panels)), dpi=100, sharex=True, squeeze=False)
    for ax, (ylabel, series) in zip(axes[:, 0], panels, strict=True):
        drawn = 0
        for label, (x, y) in series.items():
            if len(x) != len(y):
                raise InvalidParameterError(f"series {label!r}: {len(x)} x values for {len(y)} y values")
            if len(x):
                ax.plot(x, y, label=label, marker="o" if len(x) < 30 else None, markersize=3)
                drawn += 1
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(loc="best", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
    axes[-1, 0].set_xlabel(xlabel)
    if title:
        axes[0, 0].set_title(title)
    return save_figure(fig, path)
