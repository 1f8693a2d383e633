"""Tagging metrics against scikit-learn's average_precision_score / roc_auc_score (independent references)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from audioforge.errors import InvalidParameterError
from audioforge.tagging.metrics import accuracy, average_precision, d_prime, multilabel_metrics, roc_auc


def _data(seed: int, n: int = 60, c: int = 5, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = (rng.random((n, c)) < 0.3).astype(float)
    t[0] = 1.0  # every class has a positive
    t[1] = 0.0  # and a negative
    s = t * rng.normal(1.0, 1.0, (n, c)) + rng.normal(0.0, 1.0, (n, c))
    if ties:
        s = np.round(s, 0)  # many tied scores
    return s, t


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_ap_and_auc_match_sklearn(seed: int, ties: bool) -> None:
    s, t = _data(seed, ties=ties)
    ap = average_precision(s, t)
    auc = roc_auc(s, t)
    for c in range(s.shape[1]):
        assert ap[c] == pytest.approx(average_precision_score(t[:, c], s[:, c]), abs=1e-12)
        assert auc[c] == pytest.approx(roc_auc_score(t[:, c], s[:, c]), abs=1e-12)
    m = multilabel_metrics(s, t)
    assert m.mAP == pytest.approx(average_precision_score(t, s, average="macro"), abs=1e-12)
    assert m.auc == pytest.approx(roc_auc_score(t, s, average="macro"), abs=1e-12)
    assert m.d_prime == pytest.approx(math.sqrt(2) * norm.ppf(m.auc), abs=1e-12)
    assert m.skipped == [] and m.clips == s.shape[0]


def test_class_without_positives_is_left_out_explicitly() -> None:
    s, t = _data(3)
    t[:, 2] = 0.0  # class 2: no positive clip
    m = multilabel_metrics(s, t, labels=["a", "b", "c", "d", "e"])
    assert math.isnan(m.ap[2]) and math.isnan(m.per_class_auc[2])
    assert m.skipped == ["c"]
    keep = [0, 1, 3, 4]
    assert m.mAP == pytest.approx(average_precision_score(t[:, keep], s[:, keep], average="macro"), abs=1e-12)
    d = m.as_dict(per_class=True)
    assert d["ap"]["c"] is None and d["skipped"] == ["c"]


def test_class_with_only_positives_has_ap_but_no_auc() -> None:
    s, t = _data(4)
    t[:, 1] = 1.0
    m = multilabel_metrics(s, t)
    assert m.ap[1] == pytest.approx(1.0)
    assert math.isnan(m.per_class_auc[1])
    assert m.skipped == ["1"]


def test_no_scorable_class_gives_nan() -> None:
    m = multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 2)))
    assert math.isnan(m.mAP) and math.isnan(m.auc) and math.isnan(m.d_prime)


def test_d_prime_values() -> None:
    assert d_prime(0.5) == pytest.approx(0.0)
    assert d_prime(0.9) == pytest.approx(math.sqrt(2) * norm.ppf(0.9))
    assert np.isfinite(d_prime(1.0)) and d_prime(1.0) > 6
    out = d_prime(np.array([0.75, np.nan]))
    assert out[0] == pytest.approx(math.sqrt(2) * norm.ppf(0.75)) and math.isnan(out[1])


def test_accuracy() -> None:
    s = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(s, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert accuracy(s, np.eye(2)[[1, 0, 1]]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("scores", "targets"),
    [
        (np.zeros((3, 2)), np.zeros((3, 3))),  # shape mismatch
        (np.zeros((0, 2)), np.zeros((0, 2))),  # empty
        (np.array([[np.nan, 0.0]]), np.array([[1.0, 0.0]])),  # NaN scores
        (np.zeros((2, 2)), np.full((2, 2), 0.5)),  # soft targets
    ],
)
def test_bad_input_raises(scores: np.ndarray, targets: np.ndarray) -> None:
    with pytest.raises(InvalidParameterError):
        multilabel_metrics(scores, targets)


def test_accuracy_bad_input() -> None:
    with pytest.raises(InvalidParameterError):
        accuracy(np.zeros((2, 2)), np.array([0, 5]))
    with pytest.raises(InvalidParameterError):
        accuracy(np.zeros((2, 2)), np.array([0.5, 1.0]))
    with pytest.raises(InvalidParameterError):
        multilabel_metrics(np.zeros((2, 2)), np.eye(2), labels=["only one"])
