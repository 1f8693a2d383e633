"""Segment-level scoring of the tag timeline against strong labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from audioforge.bundle import Bundle
from audioforge.corpora.manifest import Manifest
from audioforge.errors import InvalidParameterError, ManifestError
from audioforge.tagging import PasstFrontend, Tagger, build_passt
from audioforge.tagging.data import load_clip
from audioforge.tagging.timeline_eval import evaluate_timeline, segment_targets

from .test_strong_labels import strong_corpus  # noqa: F401 - fixture
from .test_train import LABELS, SR


def test_segment_targets_against_interval_overlap() -> None:
    times = 0.075 + 0.1 * np.arange(30)
    events = [{"label": "mid", "onset": 0.31, "offset": 1.07}, {"label": "noise", "onset": 2.5, "offset": 2.5004},
              {"label": "high", "onset": 0.0, "offset": 0.02}]
    got = segment_targets(events, LABELS, times)
    ref = np.zeros((30, len(LABELS)), dtype=np.float32)
    for ev in events:
        for j, t in enumerate(times):
            if ev["onset"] < t + 0.05 and ev["offset"] >= t - 0.05:
                ref[j, LABELS.index(ev["label"])] = 1
    np.testing.assert_array_equal(got, ref)
    assert got[:, LABELS.index("noise")].sum() == 1
    with pytest.raises(InvalidParameterError, match="evenly"):
        segment_targets(events, LABELS, np.array([0.0, 0.1, 0.3]))
    with pytest.raises(InvalidParameterError, match="grid"):
        segment_targets(events, LABELS, np.array([0.0]))


def test_evaluate_timeline_matches_sklearn(strong_corpus: Path) -> None:  # noqa: F811
    torch.manual_seed(0)
    model = build_passt("passt_mini", num_classes=len(LABELS), img_size=[128, 300])
    b = Bundle(task="tagging", architecture="passt_mini", hyperparameters=model.config(),
               state_dict={k: v.clone() for k, v in model.state_dict().items()}, frontend=PasstFrontend().config(),
               labels=list(LABELS), options={"multi_label": True})
    tagger = Tagger.load(b)  # the reference path: timeline -> brute-force targets -> sklearn
    out = evaluate_timeline(b, strong_corpus, split="train", clip_seconds=2.0, batch_size=4, per_class=True)
    m = Manifest.load(strong_corpus).filter(split="train")
    scores, targets = [], []
    for e in m:
        times, probs = tagger(load_clip(m.audio_path(e), sample_rate=SR, n_samples=2 * SR), SR).timeline()
        step = times[1] - times[0]
        t = np.zeros((len(times), len(LABELS)))
        for ev in e["events"]:
            for j, tj in enumerate(times):
                if ev["onset"] < tj + step / 2 and ev["offset"] >= tj - step / 2:
                    t[j, LABELS.index(ev["label"])] = 1
        scores.append(probs)
        targets.append(t)
    s, t = np.concatenate(scores), np.concatenate(targets)
    ref = [average_precision_score(t[:, c], s[:, c]) for c in range(len(LABELS)) if t[:, c].any()]
    assert out["segment_mAP"] == pytest.approx(np.mean(ref), abs=1e-5)
    assert out["segments"] == len(s) and out["clips"] == len(m) and set(out["ap"]) == set(LABELS)
    assert out["segment_step_s"] == pytest.approx(0.1)


def test_evaluate_timeline_errors(strong_corpus: Path, tmp_path: Path) -> None:  # noqa: F811
    m = Manifest.load(strong_corpus)
    weak = Manifest([{k: v for k, v in e.items() if k != "events"} for e in m.entries], root=m.root)
    weak.save(tmp_path / "weak.jsonl")
    (tmp_path / "labels.json").write_text((strong_corpus.parent / "labels.json").read_text())
    model = build_passt("passt_mini", num_classes=len(LABELS), img_size=[128, 300])
    b = Bundle(task="tagging", architecture="passt_mini", hyperparameters=model.config(),
               state_dict=model.state_dict(), frontend=PasstFrontend().config(), labels=list(LABELS),
               options={"multi_label": True})
    with pytest.raises(ManifestError, match="strong labels"):
        evaluate_timeline(b, tmp_path / "weak.jsonl", split=None, clip_seconds=2.0)
    with pytest.raises(ManifestError, match="split"):
        evaluate_timeline(b, strong_corpus, split="dev", clip_seconds=2.0)
