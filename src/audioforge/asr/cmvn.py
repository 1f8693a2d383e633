"""Global cepstral mean and variance normalisation in WeNet's JSON format.

The file holds sums over all training frames: ``{"mean_stat": [sum x], "var_stat": [sum x^2], "frame_num": N}``.
Then ``mean = mean_stat / N``, ``var = max(var_stat / N - mean^2, 1e-20)`` and ``istd = 1 / sqrt(var)``; the encoder
computes ``(x - mean) * istd``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, InvalidParameterError

__all__ = ["GlobalCMVN", "cmvn_from_stats", "compute_cmvn_stats", "load_cmvn", "save_cmvn"]

VAR_FLOOR = 1e-20


def compute_cmvn_stats(features: Iterable[Any]) -> dict[str, Any]:
    """Accumulate WeNet's CMVN statistics over feature matrices ``(T, D)`` (numpy or torch), in float64.

    Raises
    ------
    InvalidParameterError
        When no frame is given or the matrices disagree on ``D``.
    """
    total: np.ndarray | None = None
    squares: np.ndarray | None = None
    frames = 0
    for feats in features:
        arr = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
        if arr.ndim != 2:
            raise InvalidParameterError(f"features must be (frames, dim) matrices, got shape {arr.shape}")
        arr = arr.astype(np.float64, copy=False)
        if total is None:
            total, squares = np.zeros(arr.shape[1]), np.zeros(arr.shape[1])
        if arr.shape[1] != total.shape[0]:
            raise InvalidParameterError(f"feature dims differ: {arr.shape[1]} vs {total.shape[0]}")
        total += arr.sum(0)
        squares += (arr * arr).sum(0)
        frames += arr.shape[0]
    if total is None or squares is None or frames == 0:
        raise InvalidParameterError("no feature frames given: CMVN statistics need at least one frame")
    return {"mean_stat": total.tolist(), "var_stat": squares.tolist(), "frame_num": int(frames)}


def cmvn_from_stats(stats: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, istd)`` float64 vectors from WeNet's statistics dict.

    Raises
    ------
    CheckpointError
        Missing keys, mismatched lengths or ``frame_num <= 0``.
    """
    try:
        mean_stat = np.asarray(stats["mean_stat"], dtype=np.float64)
        var_stat = np.asarray(stats["var_stat"], dtype=np.float64)
        n = float(stats["frame_num"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"CMVN statistics need mean_stat, var_stat and frame_num: {exc}") from exc
    if mean_stat.ndim != 1 or mean_stat.shape != var_stat.shape or n <= 0:
        raise CheckpointError(
            f"malformed CMVN statistics: mean_stat {mean_stat.shape}, var_stat {var_stat.shape}, frame_num {n}"
        )
    mean = mean_stat / n
    var = np.maximum(var_stat / n - mean * mean, VAR_FLOOR)
    return mean, 1.0 / np.sqrt(var)


def load_cmvn(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a WeNet ``global_cmvn`` JSON file (checked by :func:`cmvn_from_stats`)."""
    try:
        stats = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read CMVN file {path}: {exc}") from exc
    if not isinstance(stats, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    cmvn_from_stats(stats)
    return stats


def save_cmvn(stats: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write statistics as WeNet's JSON; return the path."""
    cmvn_from_stats(stats)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {"mean_stat": list(map(float, stats["mean_stat"])), "var_stat": list(map(float, stats["var_stat"]))}
    doc["frame_num"] = int(stats["frame_num"])
    p.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    return p


class GlobalCMVN(nn.Module):
    """``(x - mean) * istd`` over the last axis (``norm_var=False``: mean only).

    Parameters
    ----------
    mean, istd
        Vectors of the feature size.
    norm_var
        Also scale by ``istd``.
    """

    def __init__(self, mean: Any, istd: Any, norm_var: bool = True) -> None:
        super().__init__()
        mean_t = torch.as_tensor(np.asarray(mean), dtype=torch.float32)
        istd_t = torch.as_tensor(np.asarray(istd), dtype=torch.float32)
        if mean_t.shape != istd_t.shape or mean_t.dim() != 1:
            raise InvalidParameterError(f"mean {tuple(mean_t.shape)} and istd {tuple(istd_t.shape)} must be equal 1-D")
        self.norm_var = norm_var
        self.register_buffer("mean", mean_t)
        self.register_buffer("istd", istd_t)

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any], norm_var: bool = True) -> GlobalCMVN:
        """Build from WeNet's statistics dict."""
        mean, istd = cmvn_from_stats(stats)
        return cls(mean, istd, norm_var)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(..., dim)``."""
        x = x - self.mean
        return x * self.istd if self.norm_var else x
