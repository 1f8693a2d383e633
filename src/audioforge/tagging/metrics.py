"""Tagging metrics: macro mAP, ROC AUC and d-prime for multi-label outputs, accuracy for single-label outputs.

Conventions (stated because libraries differ):

* **average precision** of one class is the step-wise area under its precision-recall curve,
  ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds (tied scores form one threshold), which is
  what ``sklearn.metrics.average_precision_score`` computes;
* **ROC AUC** is the Mann-Whitney statistic with ties counted one half;
* **d-prime** is ``sqrt(2) * Phi^-1(AUC)`` (the AudioSet convention), with the AUC clipped to
  ``[1e-6, 1 - 1e-6]`` so a perfect class gives a large finite number instead of infinity;
* a class **without positives** (or, for AUC, without negatives) has no defined AP/AUC: it is reported as NaN in the
  per-class arrays and left out of the macro averages; :attr:`TaggingMetrics.skipped` names such classes. If no
  class can be scored, the macro values are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidParameterError

__all__ = [
    "TaggingMetrics",
    "accuracy",
    "average_precision",
    "d_prime",
    "multilabel_metrics",
    "roc_auc",
]

_AUC_CLIP = 1e-6


def _as_2d(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
    t = np.asarray(targets.detach().cpu() if hasattr(targets, "detach") else targets, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if t.ndim == 1:
        t = t[:, None]
    if s.ndim != 2 or s.shape != t.shape:
        raise InvalidParameterError(
            f"scores and targets must both have shape (clips, classes); got {s.shape} and {t.shape}"
        )
    if s.shape[0] == 0:
        raise InvalidParameterError("no clips to score: scores and targets are empty")
    if not np.isfinite(s).all():
        raise InvalidParameterError("scores contain NaN or Inf; check the model outputs")
    if not np.isin(t, (0.0, 1.0)).all():
        raise InvalidParameterError("targets must be 0/1 (multi-hot); soft targets cannot be scored")
    return s, t


def _ap_1d(score: np.ndarray, target: np.ndarray) -> float:
    n_pos = target.sum()
    if n_pos == 0:
        return math.nan
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], target[order]
    tp = np.cumsum(t)
    # keep the last index of each run of tied scores: one threshold per distinct score
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = tp[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _auc_1d(score: np.ndarray, target: np.ndarray) -> float:
    n_pos = target.sum()
    n_neg = len(target) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    from scipy.stats import rankdata

    ranks = rankdata(score)  # average ranks: ties count one half
    return float((ranks[target == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores: Any, targets: Any) -> np.ndarray:
    """Per-class average precision ``(classes,)``; NaN for a class with no positive clip.

    Parameters
    ----------
    scores
        ``(clips, classes)`` (or ``(clips,)``) scores: logits or probabilities, any monotone scale.
    targets
        Multi-hot 0/1 targets of the same shape.
    """
    s, t = _as_2d(scores, targets)
    return np.array([_ap_1d(s[:, c], t[:, c]) for c in range(s.shape[1])])


def roc_auc(scores: Any, targets: Any) -> np.ndarray:
    """Per-class ROC AUC ``(classes,)``; NaN for a class without positives or without negatives."""
    s, t = _as_2d(scores, targets)
    return np.array([_auc_1d(s[:, c], t[:, c]) for c in range(s.shape[1])])


def d_prime(auc: Any) -> np.ndarray | float:
    """d-prime ``sqrt(2) * Phi^-1(AUC)`` of an AUC or an array of them (NaN stays NaN; AUC clipped to 1e-6)."""
    from scipy.stats import norm

    a = np.asarray(auc, dtype=np.float64)
    out = np.sqrt(2.0) * norm.ppf(np.clip(a, _AUC_CLIP, 1.0 - _AUC_CLIP))
    out = np.where(np.isnan(a), np.nan, out)
    return float(out) if out.ndim == 0 else out


def _nanmean(x: np.ndarray) -> float:
    ok = ~np.isnan(x)
    return float(x[ok].mean()) if ok.any() else math.nan


@dataclass
class TaggingMetrics:
    """Multi-label scores of a tagger on a set of clips.

    Attributes
    ----------
    mAP
        Macro mean of the per-class AP over the classes with at least one positive.
    auc
        Macro mean ROC AUC over the classes with positives and negatives.
    d_prime
        d-prime of the macro AUC (the AudioSet convention: computed from the mean AUC).
    ap, per_class_auc
        Per-class values (NaN where undefined).
    labels
        Class names (indices as strings when not given).
    skipped
        Classes left out of the macro averages because they have no positives (or no negatives, for AUC).
    clips
        Number of clips scored.
    """

    mAP: float  # noqa: N815 - the conventional name
    auc: float
    d_prime: float
    ap: np.ndarray = field(repr=False)
    per_class_auc: np.ndarray = field(repr=False)
    labels: list[str] = field(repr=False)
    skipped: list[str]
    clips: int

    def as_dict(self, *, per_class: bool = False) -> dict[str, Any]:
        """Plain JSON values (NaN becomes None); ``per_class`` adds ``{"ap": {label: value}}``."""

        def clean(v: float) -> float | None:
            return None if math.isnan(v) else round(float(v), 6)

        out: dict[str, Any] = {"mAP": clean(self.mAP), "auc": clean(self.auc), "d_prime": clean(self.d_prime),
                               "clips": int(self.clips), "skipped": list(self.skipped)}
        if per_class:
            out["ap"] = {lab: clean(v) for lab, v in zip(self.labels, self.ap, strict=True)}
        return out


def multilabel_metrics(scores: Any, targets: Any, labels: Sequence[str] | None = None) -> TaggingMetrics:
    """Macro mAP, macro AUC and d-prime of ``scores`` against multi-hot ``targets`` (both ``(clips, classes)``).

    Raises
    ------
    InvalidParameterError
        Shapes differ or are not 2-D, no clips, non-finite scores, targets other than 0/1, or a label count that
        differs from the classes.
    """
    s, t = _as_2d(scores, targets)
    names = list(labels) if labels is not None else [str(i) for i in range(s.shape[1])]
    if len(names) != s.shape[1]:
        raise InvalidParameterError(f"{len(names)} labels for {s.shape[1]} classes")
    ap = np.array([_ap_1d(s[:, c], t[:, c]) for c in range(s.shape[1])])
    auc = np.array([_auc_1d(s[:, c], t[:, c]) for c in range(s.shape[1])])
    skipped = [names[c] for c in range(len(names)) if np.isnan(ap[c]) or np.isnan(auc[c])]
    mean_auc = _nanmean(auc)
    dp = math.nan if math.isnan(mean_auc) else float(d_prime(mean_auc))
    return TaggingMetrics(mAP=_nanmean(ap), auc=mean_auc, d_prime=dp, ap=ap, per_class_auc=auc, labels=names,
                          skipped=skipped, clips=int(s.shape[0]))


def accuracy(scores: Any, targets: Any) -> float:
    """Top-1 accuracy of single-label outputs.

    Parameters
    ----------
    scores
        ``(clips, classes)`` logits or probabilities.
    targets
        ``(clips,)`` class indices, or ``(clips, classes)`` one-hot rows.
    """
    s = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
    t = np.asarray(targets.detach().cpu() if hasattr(targets, "detach") else targets)
    if s.ndim != 2 or s.shape[0] == 0:
        raise InvalidParameterError(f"scores must have shape (clips, classes) with clips > 0, got {s.shape}")
    if not np.isfinite(s).all():
        raise InvalidParameterError("scores contain NaN or Inf; check the model outputs")
    if t.ndim == 2:
        if t.shape != s.shape or not (t.sum(axis=1) == 1).all():
            raise InvalidParameterError("2-D targets must be one-hot rows of the same shape as scores")
        t = t.argmax(axis=1)
    if t.shape != (s.shape[0],):
        raise InvalidParameterError(f"targets must have shape ({s.shape[0]},), got {t.shape}")
    if not np.issubdtype(t.dtype, np.integer) or t.min() < 0 or t.max() >= s.shape[1]:
        raise InvalidParameterError(f"targets must be class indices in [0, {s.shape[1]})")
    return float((s.argmax(axis=1) == t).mean())
