"""Tests of the synthesised sound-event classes (audioforge.corpora.sfx)."""

from __future__ import annotations

import numpy as np
import pytest

from audioforge.corpora.sfx import PEAK, SFX_CLASSES, synthesize_sfx
from audioforge.errors import AudioForgeError, InvalidParameterError, UnsupportedSampleRateError

NAMES = list(SFX_CLASSES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("duration", "sr"), [(0.3, 16000), (2.5, 16000), (4.0, 32000)])
def test_shape_range_and_content(name: str, duration: float, sr: int) -> None:
    y = synthesize_sfx(name, duration, sr, np.random.default_rng(7))
    assert y.dtype == np.float32
    assert y.shape == (round(duration * sr),)
    assert np.isfinite(y).all()
    peak = float(np.abs(y).max())
    assert peak == pytest.approx(PEAK, abs=1e-4)  # normalised, never clipped
    assert float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) > 1e-3  # not silent
    head = y[: int(0.1 * sr)]
    assert float(np.abs(head).max()) > 0.01, "every event starts sounding at the beginning"
    assert abs(float(y.mean())) < 0.05  # no DC offset


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_per_seed_and_varied(name: str) -> None:
    a = synthesize_sfx(name, 2.0, 16000, np.random.default_rng(3))
    b = synthesize_sfx(name, 2.0, 16000, np.random.default_rng(3))
    c = synthesize_sfx(name, 2.0, 16000, 3)  # an int seed is the same generator
    d = synthesize_sfx(name, 2.0, 16000, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, d)


@pytest.mark.parametrize("name", NAMES)
def test_direct_function_matches_registry(name: str) -> None:
    cls = SFX_CLASSES[name]
    np.testing.assert_array_equal(cls.fn(1.0, 16000, np.random.default_rng(1)),
                                  synthesize_sfx(name, 1.0, 16000, np.random.default_rng(1)))
    assert 0 < cls.min_duration < cls.max_duration <= 10.0
    assert cls.description and cls.description[0].isupper()


def _logmel_stats(y: np.ndarray, sr: int) -> np.ndarray:
    """Mean and standard deviation over time of a 40-band log-mel spectrogram, plus the modulation of the level."""
    from scipy import signal

    librosa = pytest.importorskip("librosa")
    _, _, z = signal.stft(y.astype(np.float64), fs=sr, nperseg=512, noverlap=352)
    mel = librosa.filters.mel(sr=sr, n_fft=512, n_mels=40) @ (np.abs(z) ** 2)
    logmel = np.log(mel + 1e-8)
    level = logmel.max(axis=0)
    return np.concatenate([logmel.mean(axis=1), logmel.std(axis=1), [level.std(), np.abs(np.diff(level)).mean()]])


def test_classes_are_distinguishable() -> None:
    """Simple log-mel statistics tell the classes apart: class profiles differ, and 1-NN works on unseen seeds."""
    sr = 16000
    train = {n: np.stack([_logmel_stats(synthesize_sfx(n, 3.0, sr, s), sr) for s in range(8)]) for n in NAMES}
    everything = np.concatenate(list(train.values()))
    mu, sd = everything.mean(axis=0), everything.std(axis=0) + 1e-6
    train = {n: (f - mu) / sd for n, f in train.items()}
    # the mean profiles of the classes all differ clearly
    centroids = {n: f.mean(axis=0) for n, f in train.items()}
    names = list(centroids)
    dists = [np.linalg.norm(centroids[a] - centroids[b]) for i, a in enumerate(names) for b in names[i + 1 :]]
    assert min(dists) > 1.0
    # and a nearest-neighbour classifier recognises new variants of each class
    correct = total = 0
    for n in NAMES:
        for s in (100, 101, 102):
            f = (_logmel_stats(synthesize_sfx(n, 3.0, sr, s), sr) - mu) / sd
            guess = min(train, key=lambda c: float(np.linalg.norm(train[c] - f, axis=1).min()))
            correct += guess == n
            total += 1
    assert correct / total >= 0.85, f"1-NN accuracy {correct}/{total}"


def test_ten_seconds_at_32k() -> None:
    for name in NAMES:
        y = synthesize_sfx(name, 10.0, 32000, np.random.default_rng(11))
        assert y.shape == (320000,)
        assert np.isfinite(y).all() and float(np.abs(y).max()) <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "lion_roar"}, InvalidParameterError, "unknown sound-event class"),
        ({"duration": 0.0}, InvalidParameterError, "positive"),
        ({"duration": -1.0}, InvalidParameterError, "positive"),
        ({"duration": float("nan")}, InvalidParameterError, "positive"),
        ({"duration": 0.005}, InvalidParameterError, "too short"),
        ({"duration": "2"}, InvalidParameterError, "number of seconds"),
        ({"sr": 0}, UnsupportedSampleRateError, "sr"),
        ({"sr": 16000.5}, UnsupportedSampleRateError, "whole number"),
        ({"rng": "seed"}, InvalidParameterError, "numpy Generator"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    args = {"name": "siren", "duration": 1.0, "sr": 16000, "rng": np.random.default_rng(0)} | kwargs
    with pytest.raises(error, match=match) as info:
        synthesize_sfx(**args)
    assert isinstance(info.value, AudioForgeError)


def test_direct_call_validates_too() -> None:
    with pytest.raises(UnsupportedSampleRateError):
        SFX_CLASSES["rain"].fn(1.0, -5, np.random.default_rng(0))
    with pytest.raises(InvalidParameterError, match="numpy Generator"):
        SFX_CLASSES["rain"].fn(1.0, 16000, 3)  # type: ignore[arg-type]
