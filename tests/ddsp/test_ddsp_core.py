"""ddsp.core against direct float64 numpy formulas, and the long-run phase precision of angular_cumsum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audioforge.ddsp.core import (
    angular_cumsum,
    exp_sigmoid,
    hz_to_midi,
    midi_to_hz,
    normalize_harmonics,
    remove_above_nyquist,
    upsample_linear,
    upsample_windowed,
)
from audioforge.ddsp.synths import HarmonicSynth
from audioforge.errors import AudioForgeError, InvalidParameterError


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref**2) / np.sum((np.asarray(x, np.float64) - ref) ** 2))


def test_exp_sigmoid_formula():
    x = np.linspace(-10, 10, 101)
    ref = 2.0 * (1 / (1 + np.exp(-x))) ** np.log(10.0) + 1e-7
    np.testing.assert_allclose(exp_sigmoid(torch.from_numpy(x)).numpy(), ref, rtol=1e-12)
    ref2 = 3.0 * (1 / (1 + np.exp(-x))) ** np.log(5.0) + 1e-3
    got = exp_sigmoid(torch.from_numpy(x), exponent=5.0, max_value=3.0, threshold=1e-3).numpy()
    np.testing.assert_allclose(got, ref2, rtol=1e-12)
    with pytest.raises(InvalidParameterError):
        exp_sigmoid(torch.zeros(1), exponent=1.0)


def test_midi_conversions():
    f = torch.tensor([0.0, 440.0, 261.6255653005986, 880.0], dtype=torch.float64)
    np.testing.assert_allclose(hz_to_midi(f).numpy(), [0, 69, 60, 81], atol=1e-9)
    np.testing.assert_allclose(midi_to_hz(torch.tensor([69.0, 57.0])).numpy(), [440, 220], rtol=1e-6)


def _np_ola_hann(frames: np.ndarray, hop: int) -> np.ndarray:
    """Explicit overlap-add of periodic Hann windows (2 hop) peaking at each frame's aligned sample."""
    t = frames.shape[0]
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2 * hop) / (2 * hop))
    ext = np.concatenate([frames[:1], frames])  # frame -1 = frame 0
    out = np.zeros(t * hop + 4 * hop)
    off = 2 * hop  # output sample s lives at out[s + off]
    for i, v in enumerate(ext, start=-1):
        start = i * hop - 1  # window index hop (the peak) lands on sample i * hop + hop - 1
        out[start + off: start + off + 2 * hop] += v * w
    return out[off: off + t * hop]


def test_upsample_windowed_is_hann_overlap_add():
    rng = np.random.default_rng(0)
    frames = rng.random((7, 3))
    got = upsample_windowed(torch.from_numpy(frames)[None], 16)[0].numpy()
    for c in range(3):
        np.testing.assert_allclose(got[:, c], _np_ola_hann(frames[:, c], 16), atol=1e-12)


def test_upsample_linear_formula_and_streaming():
    rng = np.random.default_rng(1)
    f = rng.random(9)
    hop = 8
    prev = np.concatenate([f[:1], f[:-1]])
    j = np.arange(1, hop + 1) / hop
    ref = (prev[:, None] + (f - prev)[:, None] * j[None]).reshape(-1)
    ft = torch.from_numpy(f)[None]
    np.testing.assert_allclose(upsample_linear(ft, hop)[0].numpy(), ref, atol=1e-12)
    parts = [upsample_linear(ft[:, :4], hop), upsample_linear(ft[:, 4:], hop, previous=ft[:, 3])]
    np.testing.assert_allclose(torch.cat(parts, 1)[0].numpy(), ref, atol=1e-12)
    with pytest.raises(InvalidParameterError):
        upsample_linear(ft, 0)


def test_nyquist_removal_and_renormalisation():
    d = torch.ones(1, 2, 10, dtype=torch.float64)
    f0 = torch.tensor([[1000.0, 3000.0]], dtype=torch.float64)
    masked = remove_above_nyquist(d, f0, 16000)
    assert masked[0, 0].sum() == 7  # 1..7 kHz < 8 kHz, 8 kHz is removed
    assert masked[0, 1].sum() == 2  # 3, 6 kHz
    norm = normalize_harmonics(d, f0, 16000)
    np.testing.assert_allclose(norm.sum(-1).numpy(), 1.0, atol=1e-6)
    assert float(norm[0, 1, 2]) == 0.0


def test_angular_cumsum_matches_float64_and_streams():
    rng = np.random.default_rng(2)
    omega = rng.uniform(0, np.pi, size=(2, 1000))
    ref = np.mod(np.cumsum(omega, axis=1) + 0.5, 2 * np.pi)
    phase, final = angular_cumsum(torch.from_numpy(omega), initial_phase=torch.full((2,), 0.5))
    d = np.angle(np.exp(1j * (phase.numpy() - ref)))
    assert np.abs(d).max() < 1e-9
    assert phase.min() >= 0 and phase.max() < 2 * np.pi
    # streaming in uneven blocks gives the same phases
    parts, state = [], torch.full((2,), 0.5)
    for a, b in ((0, 37), (37, 500), (500, 1000)):
        p, state = angular_cumsum(torch.from_numpy(omega[:, a:b]), initial_phase=state, chunk_size=16)
        parts.append(p)
    np.testing.assert_allclose(np.angle(np.exp(1j * (torch.cat(parts, 1).numpy() - ref))), 0, atol=1e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (final.numpy() - ref[:, -1]))), 0, atol=1e-9)
    with pytest.raises(AudioForgeError):
        angular_cumsum(torch.zeros(5))


def test_phase_precision_6khz_60s():
    """A 6 kHz tone, 60 s at 16 kHz, float32 controls: >= 80 dB against float64; >= 40 dB with fp16-stored phase."""
    sr, hop, seconds, f = 16000, 64, 60, 6000.0
    n_frames = seconds * sr // hop
    n = n_frames * hop
    ref = np.sin(np.cumsum(np.full(n, 2 * np.pi * f / sr)))  # float64 formula
    synth = HarmonicSynth(sr=sr, hop=hop, n_harmonics=1)
    f0 = torch.full((1, n_frames), f)
    ones = torch.ones(1, n_frames)
    audio, _ = synth(ones, ones[..., None], f0)
    assert audio.dtype == torch.float32
    assert snr_db(ref, audio[0].numpy()) >= 80.0
    # the float32 accumulator alone (increments rounded to float32 once, as a float32 pipeline has them)
    omega32 = torch.full((1, n), 2 * math.pi * f / sr, dtype=torch.float32)
    phase32, _ = angular_cumsum(omega32)
    ref32 = np.sin(np.cumsum(np.full(n, float(omega32[0, 0]))))
    assert snr_db(ref32, torch.sin(phase32)[0].numpy()) >= 80.0
    # wrapped phase stored in float16
    stored = phase32.half()
    assert snr_db(ref32, torch.sin(stored.float())[0].numpy()) >= 40.0
    # a plain float32 cumsum does not survive (why angular_cumsum exists)
    plain = np.sin(np.cumsum(omega32[0].numpy()))
    assert snr_db(ref32, plain) < 40.0
