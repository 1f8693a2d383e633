"""Parity of the librosa-style functions with librosa 0.11 over a grid of configurations.

Tolerances (issue #2): float32 within 1e-5 of librosa relative to the spectrogram's max; float64 within 1e-9
(librosa is asked for a float64 mel basis there, as audioforge uses one for float64 input).
"""

from __future__ import annotations

import itertools

import librosa
import numpy as np
import pytest
import torch

import audioforge.features as F
from audioforge.errors import (
    AudioDTypeError,
    AudioShapeError,
    EmptyAudioError,
    InvalidParameterError,
    NonFiniteAudioError,
)

RNG = np.random.default_rng(1234)


def _signal(n: int, sr: int, *, channels: tuple[int, ...] = (), dtype=np.float32) -> np.ndarray:
    t = np.arange(n) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 0.31 * sr * t * (1 + t))
    noise = 0.05 * RNG.standard_normal((*channels, n))
    return (tone + noise).astype(dtype)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# --- STFT ----------------------------------------------------------------------------------------------------------

STFT_GRID = [
    # n_fft, hop, win_length, center, pad_mode, n
    (512, 128, None, True, "constant", 4000),
    (511, 100, None, True, "reflect", 4000),
    (400, 160, 300, True, "edge", 3001),
    (401, 97, 257, True, "symmetric", 2500),
    (256, 64, 200, True, "linear_ramp", 1999),
    (512, 128, None, False, "constant", 4000),
    (300, 75, 299, False, "reflect", 1000),
    (1024, 320, 800, True, "constant", 300),  # shorter than n_fft
    (512, 128, None, True, "reflect", 40),  # shorter than n_fft // 2: numpy's repeated reflection
    (512, 128, None, True, "symmetric", 7),
]


@pytest.mark.parametrize(("n_fft", "hop", "win", "center", "pad_mode", "n"), STFT_GRID)
@pytest.mark.filterwarnings("ignore:n_fft=.*is too large")
def test_stft_matches_librosa(n_fft, hop, win, center, pad_mode, n):
    y = _signal(n, 16000)
    ours = F.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, center=center, pad_mode=pad_mode)
    ref = librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, center=center, pad_mode=pad_mode)
    assert ours.shape == ref.shape and ours.dtype == np.complex64
    assert _rel(ours, ref) < 1e-5
    y64 = y.astype(np.float64)
    ours64 = F.stft(y64, n_fft=n_fft, hop_length=hop, win_length=win, center=center, pad_mode=pad_mode)
    ref64 = librosa.stft(y64, n_fft=n_fft, hop_length=hop, win_length=win, center=center, pad_mode=pad_mode)
    assert ours64.dtype == np.complex128 and _rel(ours64, ref64) < 1e-9


@pytest.mark.parametrize("window", ["hamming", "blackman", ("kaiser", 6.0), "boxcar"])
def test_stft_windows(window):
    y = _signal(3000, 22050)
    ours = F.stft(y, n_fft=512, hop_length=128, window=window)
    ref = librosa.stft(y, n_fft=512, hop_length=128, window=window)
    assert _rel(ours, ref) < 1e-5


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric", "linear_ramp"])
@pytest.mark.parametrize(("n", "left", "right"), [(1, 3, 2), (2, 5, 7), (5, 13, 4), (100, 8, 9)])
def test_pad_signal_equals_numpy(mode, n, left, right):
    x = RNG.standard_normal((2, n))
    ours = F.pad_signal(torch.from_numpy(x), left, right, mode).numpy()
    ref = np.pad(x, ((0, 0), (left, right)), mode=mode)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-15)


# --- mel filterbank ---------------------------------------------------------------------------------------------

MEL_BANK_GRID = list(
    itertools.product(
        [8000, 16000, 22050, 44100, 48000],
        [(512, 40), (2048, 128), (801, 64)],
        [False, True],
        ["slaney", None, 1.0, 2.0, np.inf],
    )
)


@pytest.mark.parametrize(("sr", "fft_mels", "htk", "norm"), MEL_BANK_GRID)
def test_mel_filterbank_matches_librosa(sr, fft_mels, htk, norm):
    n_fft, n_mels = fft_mels
    ours = F.mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, htk=htk, norm=norm, fmin=30.0)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, htk=htk, norm=norm, fmin=30.0)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())
    ours64 = F.mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, htk=htk, norm=norm, fmin=30.0, dtype=np.float64)
    ref64 = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, htk=htk, norm=norm, fmin=30.0, dtype=np.float64)
    np.testing.assert_allclose(ours64, ref64, rtol=1e-12, atol=1e-15)


def test_mel_scale_conversions_match_librosa():
    f = np.array([0.0, 55.0, 440.0, 999.9, 1000.0, 1000.1, 7600.0, 24000.0])
    for htk in (False, True):
        np.testing.assert_allclose(F.hz_to_mel(f, htk=htk), librosa.hz_to_mel(f, htk=htk), rtol=1e-12)
        m = librosa.hz_to_mel(f, htk=htk)
        np.testing.assert_allclose(F.mel_to_hz(m, htk=htk), librosa.mel_to_hz(m, htk=htk), rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(
            F.mel_frequencies(40, fmin=20.0, fmax=8000.0, htk=htk),
            librosa.mel_frequencies(40, fmin=20.0, fmax=8000.0, htk=htk),
            rtol=1e-12,
        )
    assert isinstance(F.hz_to_mel(440.0), float)


# --- melspectrogram ------------------------------------------------------------------------------------------------

MEL_GRID = [
    # sr, n_fft, hop, win, n_mels, fmin, fmax, htk, norm, power, center, pad_mode, n
    (16000, 800, 200, None, 80, 55.0, 7600.0, False, "slaney", 2.0, True, "constant", 16000),  # seed config
    (32000, 1024, 320, 800, 128, 0.0, None, False, "slaney", 2.0, True, "reflect", 32000),  # PaSST-like STFT
    (8000, 256, 80, 200, 40, 0.0, 4000.0, True, None, 1.0, True, "constant", 4000),
    (22050, 2048, 512, None, 128, 0.0, None, False, "slaney", 2.0, True, "constant", 22050),  # librosa defaults
    (44100, 1023, 256, 1000, 96, 100.0, 16000.0, True, 2.0, 2.0, False, "constant", 20000),  # odd n_fft
    (48000, 960, 480, 480, 64, 20.0, 20000.0, False, np.inf, 1.0, True, "edge", 9600),
    (16000, 512, 160, 400, 64, 125.0, 7500.0, False, "slaney", 2.0, True, "symmetric", 300),  # < n_fft
    (11025, 512, 128, None, 32, 0.0, None, True, 1.0, 2.0, True, "linear_ramp", 3000),
]


@pytest.mark.parametrize(
    ("sr", "n_fft", "hop", "win", "n_mels", "fmin", "fmax", "htk", "norm", "power", "center", "pad_mode", "n"),
    MEL_GRID,
)
@pytest.mark.filterwarnings("ignore:n_fft=.*is too large")
def test_melspectrogram_matches_librosa(sr, n_fft, hop, win, n_mels, fmin, fmax, htk, norm, power, center, pad_mode,
                                         n):
    kw = dict(sr=sr, n_fft=n_fft, hop_length=hop, win_length=win, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk,
              norm=norm, power=power, center=center, pad_mode=pad_mode)
    y = _signal(n, sr)
    ours, ref = F.melspectrogram(y, **kw), librosa.feature.melspectrogram(y=y, **kw)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert _rel(ours, ref) < 1e-5
    y64 = y.astype(np.float64)
    ours64 = F.melspectrogram(y64, **kw)
    ref64 = librosa.feature.melspectrogram(y=y64, dtype=np.float64, **kw)
    assert ours64.dtype == np.float64 and _rel(ours64, ref64) < 1e-9


def test_melspectrogram_multichannel_and_batch_shapes():
    y = _signal(8000, 16000, channels=(2, 3))
    ours = F.melspectrogram(y, sr=16000, n_fft=512, hop_length=128, n_mels=40)
    ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=128, n_mels=40)
    assert ours.shape == ref.shape == (2, 3, 40, 63)
    assert _rel(ours, ref) < 1e-5


def test_melspectrogram_from_precomputed_S():
    y = _signal(8000, 16000)
    S = np.abs(librosa.stft(y, n_fft=512, hop_length=128)) ** 2
    ours = F.melspectrogram(S=S, sr=16000, n_mels=40)
    ref = librosa.feature.melspectrogram(S=S, sr=16000, n_mels=40)
    assert _rel(ours, ref) < 1e-5


def test_long_input_uses_more_mel_blocks_and_still_matches():
    y = _signal(16000 * 12, 16000)  # > 512 frames: the 8-block path
    kw = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)
    assert _rel(F.melspectrogram(y, **kw), librosa.feature.melspectrogram(y=y, **kw)) < 1e-5


# --- dB and MFCC ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "amin", "top_db"), [(1.0, 1e-10, 80.0), (np.max, 1e-10, 80.0), (0.5, 1e-6, None), (np.max, 1e-5, 40.0)]
)
def test_db_conversions_match_librosa(ref, amin, top_db):
    S = librosa.feature.melspectrogram(y=_signal(8000, 16000, channels=(2,)), sr=16000, n_mels=32)
    S[0, :, :3] = 0.0  # exercises the amin clamp
    ours = F.power_to_db(S, ref=ref, amin=amin, top_db=top_db)
    np.testing.assert_allclose(ours, librosa.power_to_db(S, ref=ref, amin=amin, top_db=top_db), atol=2e-4)
    A = np.sqrt(S)
    ours_a = F.amplitude_to_db(A, ref=ref, amin=np.sqrt(amin), top_db=top_db)
    np.testing.assert_allclose(ours_a, librosa.amplitude_to_db(A, ref=ref, amin=np.sqrt(amin), top_db=top_db),
                               atol=2e-4)
    np.testing.assert_allclose(F.db_to_power(ours), librosa.db_to_power(ours), rtol=1e-5)
    np.testing.assert_allclose(F.db_to_amplitude(ours_a), librosa.db_to_amplitude(ours_a), rtol=1e-5)


def test_power_to_db_top_db_uses_global_max_like_librosa():
    S = np.ones((2, 4, 5), dtype=np.float64)
    S[1] *= 1e-12  # second item far below the first: clamped against the global max
    out = F.power_to_db(S, top_db=80.0)
    np.testing.assert_allclose(out, librosa.power_to_db(S, top_db=80.0))
    assert np.all(out[1] == -80.0)


@pytest.mark.parametrize(
    ("n_mfcc", "dct_type", "norm", "lifter", "mel_norm"),
    [(20, 2, "ortho", 0, "slaney"), (13, 2, None, 22, "slaney"), (40, 3, "ortho", 0, None), (24, 1, None, 10, 2.0),
     (13, 2, "ortho", 22, None)],
)
def test_mfcc_matches_librosa(n_mfcc, dct_type, norm, lifter, mel_norm):
    y = _signal(16000, 16000)
    kw = dict(sr=16000, n_mfcc=n_mfcc, dct_type=dct_type, norm=norm, lifter=lifter, mel_norm=mel_norm, n_mels=40,
              n_fft=512, hop_length=160)
    ours, ref = F.mfcc(y=y, **kw), librosa.feature.mfcc(y=y, **kw)
    assert ours.shape == ref.shape
    # MFCCs live on a dB scale (values up to hundreds): compare to their range
    assert _rel(ours, ref) < 2e-5
    ours64 = F.mfcc(y=y.astype(np.float64), **kw)
    ref64 = librosa.feature.mfcc(y=y.astype(np.float64), dtype=np.float64, **kw)
    assert _rel(ours64, ref64) < 1e-9


# --- torch behaviour ------------------------------------------------------------------------------------------------


def test_torch_in_torch_out_and_differentiable():
    y = torch.from_numpy(_signal(4000, 16000)).requires_grad_(True)
    mel = F.melspectrogram(y, sr=16000, n_fft=256, hop_length=64, n_mels=32)
    assert isinstance(mel, torch.Tensor) and mel.dtype == torch.float32
    mel.sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


def test_gradcheck_float64():
    y = torch.randn(64, dtype=torch.float64, requires_grad=True)

    def f(x):
        return F.melspectrogram(x, sr=8000, n_fft=32, hop_length=8, n_mels=6, pad_mode="reflect")

    assert torch.autograd.gradcheck(f, (y,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(lambda x: F.mfcc(y=x, sr=8000, n_fft=32, hop_length=8, n_mels=6, n_mfcc=4),
                                    (y,), eps=1e-6, atol=1e-6)


# --- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "err"),
    [
        (np.zeros(0, dtype=np.float32), EmptyAudioError),
        (np.array([0.0, np.nan, 0.0], dtype=np.float32), NonFiniteAudioError),
        (np.array([0.0, np.inf], dtype=np.float64), NonFiniteAudioError),
        (np.zeros(100, dtype=np.int16), AudioDTypeError),
        (np.array(1.0, dtype=np.float32), AudioShapeError),
        ([0.0, 1.0], InvalidParameterError),
    ],
)
def test_bad_audio_is_rejected_clearly(y, err):
    for fn in (lambda: F.melspectrogram(y, sr=16000), lambda: F.stft(y), lambda: F.mfcc(y=y, sr=16000)):
        with pytest.raises(err):
            fn()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_fft=0), "n_fft"),
        (dict(n_fft=256, win_length=512), "win_length"),
        (dict(hop_length=-1), "hop_length"),
        (dict(n_mels=0), "n_mels"),
        (dict(fmin=5000.0, fmax=1000.0), "fmax"),
        (dict(fmax=20000.0), "Nyquist"),
        (dict(pad_mode="wrap"), "pad_mode"),
        (dict(power=0.0), "power"),
        (dict(norm="area"), "norm"),
        (dict(window="no-such-window"), "window"),
        (dict(sr=0), "sr"),
    ],
)
def test_bad_parameters_name_the_problem(kwargs, match):
    y = _signal(4000, 16000)
    kw = dict(sr=16000, n_fft=512, hop_length=128)
    kw.update(kwargs)
    with pytest.raises(Exception, match=match) as info:
        F.melspectrogram(y, **kw)
    from audioforge.errors import AudioForgeError

    assert isinstance(info.value, AudioForgeError)


def test_center_false_too_short_is_explained():
    with pytest.raises(EmptyAudioError, match="center=True"):
        F.stft(np.zeros(100, dtype=np.float32), n_fft=512, center=False)


def test_db_bad_arguments():
    S = np.ones((4, 4), dtype=np.float32)
    with pytest.raises(InvalidParameterError, match="amin"):
        F.power_to_db(S, amin=0.0)
    with pytest.raises(InvalidParameterError, match="top_db"):
        F.power_to_db(S, top_db=-1.0)
    with pytest.raises(InvalidParameterError, match="lifter"):
        F.mfcc(S=S, lifter=-1)
    with pytest.raises(InvalidParameterError, match="n_mfcc"):
        F.mfcc(S=S, n_mfcc=10)


@pytest.mark.parametrize(("n", "n_fft", "hop", "center"), [(4, 5, 2, True), (100, 31, 7, True), (100, 32, 7, True),
                                                          (100, 31, 7, False), (10, 31, 7, False), (1, 8, 3, True)])
def test_n_frames_matches_stft(n, n_fft, hop, center):
    from audioforge.features.stft import n_frames

    y = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    expected = F.stft(y, n_fft=n_fft, hop_length=hop, center=center).shape[-1] if (center or n >= n_fft) else 0
    assert n_frames(n, n_fft=n_fft, hop_length=hop, center=center) == expected


def test_half_precision_input_is_computed_in_float32():
    y = _signal(4000, 16000)
    ref = F.melspectrogram(y.astype(np.float16).astype(np.float32), sr=16000, n_fft=512, hop_length=128)
    out = F.melspectrogram(y.astype(np.float16), sr=16000, n_fft=512, hop_length=128)
    assert out.dtype == np.float32 and np.array_equal(out, ref)
    out_t = F.melspectrogram(torch.from_numpy(y).half(), sr=16000, n_fft=512, hop_length=128)
    assert out_t.dtype == torch.float32


def test_linear_ramp_rounds_like_numpy():
    x = torch.arange(1.0, 4.0, dtype=torch.float64)
    np.testing.assert_array_equal(F.pad_signal(x, 7, 6, "linear_ramp").numpy(),
                                  np.pad(np.arange(1.0, 4.0), (7, 6), "linear_ramp"))
