"""Multi-scale spectral loss and A-weighted loudness against numpy implementations."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from audioforge.ddsp import MultiScaleSpectralLoss, a_weighting_db, compute_loudness, multiscale_spectral_loss
from audioforge.ddsp.loudness import loudness_reference_db
from audioforge.errors import AudioForgeError, UnsupportedSampleRateError


def _np_stft_mag(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    n = 1 + (len(x) - n_fft) // hop
    frames = np.stack([x[i * hop: i * hop + n_fft] * w for i in range(n)])
    return np.abs(np.fft.rfft(frames, axis=-1))


def test_multiscale_loss_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 4096)) * 0.3
    ref = 0.0
    for n_fft in (2048, 1024, 512, 256, 128, 64):
        sa, sb = _np_stft_mag(a, n_fft, n_fft // 4), _np_stft_mag(b, n_fft, n_fft // 4)
        ref += np.mean(np.abs(sb - sa)) + 0.5 * np.mean(np.abs(np.log(sb + 1e-7) - np.log(sa + 1e-7)))
    got = multiscale_spectral_loss(torch.from_numpy(a)[None], torch.from_numpy(b)[None], logmag_weight=0.5)
    np.testing.assert_allclose(float(got), ref, rtol=1e-9)
    mod = MultiScaleSpectralLoss(logmag_weight=0.5)
    pred = torch.from_numpy(a)[None].requires_grad_(True)
    loss = mod(pred, torch.from_numpy(b)[None])
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert float(mod(pred.detach(), pred.detach())) == 0.0


def test_multiscale_loss_errors():
    with pytest.raises(AudioForgeError):
        multiscale_spectral_loss(torch.zeros(1, 1000), torch.zeros(1, 1000))  # shorter than 2048
    with pytest.raises(AudioForgeError):
        multiscale_spectral_loss(torch.zeros(1, 4096), torch.zeros(1, 4000))
    with pytest.raises(AudioForgeError):
        multiscale_spectral_loss(torch.full((1, 4096), float("nan")), torch.zeros(1, 4096))


def _np_loudness(x: np.ndarray, sr: int = 16000, hop: int = 64, n_fft: int = 512, range_db: float = 80.0):
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    xp = np.pad(x, n_fft // 2)
    n = len(x) // hop + 1
    frames = np.stack([xp[i * hop: i * hop + n_fft] * w for i in range(n)])
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2 / w.sum() ** 2
    with np.errstate(divide="ignore"):  # A(0 Hz) = -inf: weight 0
        weight = 10 ** (librosa.A_weighting(np.fft.rfftfreq(n_fft, 1 / sr), min_db=None) / 10)
    mean = (power * weight).mean(-1)  # linear power, then dB
    db = 10 * np.log10(np.maximum(mean, 1e-20)) - 10 * np.log10(0.375 / (n_fft // 2 + 1))
    return np.maximum(db, -range_db)


def test_a_weighting_matches_librosa():
    f = np.linspace(20, 8000, 200)
    np.testing.assert_allclose(a_weighting_db(f), librosa.A_weighting(f, min_db=None), atol=0.01)


def test_loudness_matches_numpy_and_reference_points():
    rng = np.random.default_rng(1)
    t = np.arange(16000) / 16000
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * np.linspace(0, 1, 16000) + 0.01 * rng.standard_normal(16000)
    got = compute_loudness(x)
    assert got.shape == (16000 // 64 + 1,)
    np.testing.assert_allclose(got, _np_loudness(x), atol=0.02)  # librosa's A-curve constants differ by < 0.01 dB
    sine = np.sin(2 * np.pi * 1000 * t)
    np.testing.assert_allclose(compute_loudness(sine)[10:-10], 0.0, atol=0.01)  # 0 dB = full-scale 1 kHz sine
    np.testing.assert_allclose(compute_loudness(0.01 * sine)[10:-10], -40.0, atol=0.01)
    assert np.all(compute_loudness(np.zeros(1600)) == -80.0)  # the floor
    assert loudness_reference_db() == pytest.approx(10 * np.log10(0.375 / 257))
    # torch in, torch out, batched, differentiable
    xt = torch.from_numpy(np.stack([x, 0.5 * x])).requires_grad_(True)
    ld = compute_loudness(xt)
    assert ld.shape == (2, 251)
    ld.sum().backward()
    assert xt.grad is not None


def test_loudness_bad_input():
    with pytest.raises(UnsupportedSampleRateError):
        compute_loudness(np.zeros(100), sr=-1)
    with pytest.raises(AudioForgeError):
        compute_loudness(np.zeros(100), sr=44100)  # 250 frames/s is not a whole hop at 44.1 kHz
    with pytest.raises(AudioForgeError):
        compute_loudness(np.array([np.nan, 0.0]))
