"""Timbre transfer: auto-adjust, manual shifts, rendering, and clear errors for bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audioforge.bundle import Bundle
from audioforge.ddsp import DDSPAutoencoder
from audioforge.ddsp.data import compute_statistics
from audioforge.ddsp.transfer import adjust_controls, raw_pitch_accuracy, timbre_transfer
from audioforge.errors import InvalidAudioError, InvalidParameterError, NonFiniteAudioError, UnsupportedSampleRateError

SR = 16000


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    """An untrained tiny model with statistics of an instrument around MIDI 60, loudness around -30 dB."""
    torch.manual_seed(0)
    model = DDSPAutoencoder.from_preset("tiny")
    rng = np.random.default_rng(0)
    f0 = 440.0 * 2.0 ** ((rng.normal(60, 4, 5000) - 69) / 12)
    ld = rng.normal(-30, 6, 5000)
    stats = compute_statistics(f0, ld, np.ones(5000, bool))
    return Bundle(task="ddsp", architecture="tiny", hyperparameters={"preset": "tiny", "sr": SR, "hop": 64,
                                                                      "reverb_length": None},
                  state_dict=model.state_dict(), options={"instrument": "test", "statistics": stats})


def _tone(freq: float, seconds: float = 1.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t) * np.clip(t * 20, 0, 1)).astype(np.float32)


def test_transfer_auto_adjust_octave(bundle: Bundle) -> None:
    res = timbre_transfer(_tone(1046.5), bundle, sr=SR, f0_method="yin")  # C6 (84) toward mean 60: -24
    assert res.octave_shift == -24
    assert res.audio.shape == (SR,) and res.audio.dtype == np.float32 and np.isfinite(res.audio).all()
    held = res.f0_hz[res.note]
    np.testing.assert_allclose(np.median(held), 1046.5 / 4, rtol=0.01)
    # loudness of note frames mapped into the instrument's range
    assert abs(float(np.median(res.loudness_db[res.note])) + 30.0) < 3.0


def test_manual_shifts_and_no_auto(bundle: Bundle) -> None:
    res = timbre_transfer(_tone(220.0), bundle, sr=SR, auto_adjust=False, pitch_shift=12.0, loudness_shift=-6.0,
                          f0_method="yin")
    assert res.octave_shift == 0
    np.testing.assert_allclose(np.median(res.f0_hz[res.note]), 440.0, rtol=0.01)
    np.testing.assert_allclose(res.loudness_db[res.note], np.clip(res.loudness_in[res.note] - 6.0, -80, 0), atol=1e-4)
    with pytest.raises(InvalidParameterError):
        adjust_controls(res.f0_in, res.loudness_in, res.note, None, auto_adjust=False, pitch_shift=48.0)


def test_resampled_file_input(bundle: Bundle, tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    sf.write(str(path), _tone(330.0, 0.5, 44100), 44100)
    res = timbre_transfer(path, bundle, f0_method="yin")
    assert res.sr == SR and res.audio.shape == (8000,)


def test_bad_input(bundle: Bundle) -> None:
    with pytest.raises(InvalidAudioError, match="silent"):
        timbre_transfer(np.zeros(SR, np.float32), bundle, sr=SR, f0_method="yin")
    noise = (np.random.default_rng(0).uniform(-0.3, 0.3, SR)).astype(np.float32)
    with pytest.raises(InvalidAudioError, match="no pitch"):
        timbre_transfer(noise, bundle, sr=SR, f0_method="yin")
    bad = _tone(220.0)
    bad[100] = np.nan
    with pytest.raises(NonFiniteAudioError):
        timbre_transfer(bad, bundle, sr=SR, f0_method="yin")
    with pytest.raises(UnsupportedSampleRateError):
        timbre_transfer(_tone(220.0), bundle, sr=100, f0_method="yin")
    with pytest.raises(InvalidAudioError):
        timbre_transfer(np.zeros(10, np.float32), bundle, sr=SR)
    with pytest.raises(InvalidParameterError):
        timbre_transfer(_tone(220.0), bundle)  # array without a rate


def test_raw_pitch_accuracy() -> None:
    ref = np.array([0, 100, 100, 100, 100], float)
    est = np.array([50, 100 * 2 ** (40 / 1200), 100 * 2 ** (60 / 1200), 0, 100], float)
    assert raw_pitch_accuracy(ref, est) == pytest.approx(0.5)
