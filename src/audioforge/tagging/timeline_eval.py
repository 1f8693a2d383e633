"""Scoring a tagger's timeline against strong labels: segment-level macro mAP.

The timeline of :class:`~audioforge.tagging.Tagger` gives one probability per class and time patch (every 0.1 s for
stride 10, centred on the patch's 16 frames). :func:`evaluate_timeline` turns the manifest's strong labels
(``events``: ``{label, onset, offset}``) into targets on the same grid -- a segment of length ``step`` centred on a
timeline time is positive for a class when one of its events overlaps it -- and reports the AP of every class over
all segments of all clips (the metrics conventions of :mod:`audioforge.tagging.metrics`), macro-averaged.

It measures localisation: a tagger that only knows *which* classes a clip holds, not *when*, scores the clip-level
prior inside each clip and gets a segment mAP well below its clip mAP.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..corpora.manifest import Manifest
from ..errors import InvalidParameterError, ManifestError
from .data import activity_frames, load_clip, load_labels
from .infer import Tagger
from .metrics import multilabel_metrics

__all__ = ["evaluate_timeline", "segment_targets"]


def segment_targets(events: list[dict[str, Any]], labels: list[str], times: np.ndarray) -> np.ndarray:
    """``(len(times), classes)`` 0/1 targets: segment ``[t - step/2, t + step/2)`` overlaps an event of the class.

    ``times`` must be evenly spaced (the timeline grid).
    """
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or len(times) < 2:
        raise InvalidParameterError("times must be a 1-D grid of at least two evenly spaced times")
    step = float(times[1] - times[0])
    if step <= 0 or not np.allclose(np.diff(times), step, rtol=0, atol=1e-6):
        raise InvalidParameterError("times must be evenly spaced and increasing")
    shifted = [{**e, "onset": float(e["onset"]) - times[0], "offset": float(e["offset"]) - times[0]} for e in events]
    return activity_frames(shifted, labels, len(times), hop_seconds=step).T.astype(np.float32)


def evaluate_timeline(model: Bundle | str | os.PathLike[str] | Tagger, manifest: Manifest | str | os.PathLike[str],
                      *, split: str | None = "test", clip_seconds: float = 10.0, batch_size: int = 16,
                      per_class: bool = False) -> dict[str, Any]:
    """Segment-level macro mAP of a tagger's timeline on the clips of a manifest with strong labels.

    Returns
    -------
    dict
        ``segment_mAP``, ``segment_auc``, ``segment_step_s``, ``segments``, ``clips`` (and ``ap`` per class with
        ``per_class``).

    Raises
    ------
    ManifestError
        No clips in the split, or clips without an ``events`` list.
    """
    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    if split is not None:
        m = m.filter(split=split)
    if len(m) == 0:
        raise ManifestError(f"no clips with split={split!r} to score")
    lacking = [e["key"] for e in m if not isinstance(e.get("events"), list)]
    if lacking:
        raise ManifestError(f"{len(lacking)} clips have no strong labels ('events'), e.g. {lacking[0]!r}")
    names = load_labels(m)
    tagger = model if isinstance(model, Tagger) else Tagger.load(model)
    missing = [n for n in names if n not in tagger.labels]
    if missing:
        raise ManifestError(f"the corpus labels {missing} are not outputs of the model")
    order = [tagger.labels.index(n) for n in names]
    sr = tagger.sample_rate
    n = round(clip_seconds * sr)
    scores, targets = [], []
    step = 0.0
    for start in range(0, len(m), batch_size):
        rows = m.entries[start : start + batch_size]
        x = np.stack([load_clip(m.audio_path(e), sample_rate=sr, n_samples=n) for e in rows])
        times, probs = tagger(x, sr).timeline()
        step = float(times[1] - times[0])
        for e, p in zip(rows, probs, strict=True):
            scores.append(p[:, order])
            targets.append(segment_targets(e["events"], names, times))
    d = multilabel_metrics(np.concatenate(scores), np.concatenate(targets), names).as_dict(per_class=per_class)
    out: dict[str, Any] = {"segment_mAP": d["mAP"], "segment_auc": d["auc"], "segment_step_s": round(step, 6),
                           "segments": int(sum(len(s) for s in scores)), "clips": len(m), "skipped": d["skipped"]}
    if per_class:
        out["ap"] = d["ap"]
    return out
