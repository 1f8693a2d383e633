"""The short-clip mel paths (numpy in/out, and CPU tensors outside autograd) agree with librosa and the torch ops:
the native kernel where it is built (float32), and the numpy arithmetic around torch's FFT without it."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from audioforge.features import melspectrogram, spectral


@pytest.mark.parametrize("use_native", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("shape", "kw"),
    [
        ((16000,), {"sr": 16000, "n_fft": 800, "hop_length": 200, "n_mels": 80, "fmin": 55.0, "fmax": 7600.0}),
        ((2, 3, 9000), {"sr": 22050, "n_fft": 1024, "win_length": 800, "hop_length": 256, "n_mels": 64}),
        ((500,), {"sr": 8000, "n_fft": 511, "hop_length": 100, "n_mels": 20, "pad_mode": "reflect"}),
        ((4000,), {"sr": 16000, "n_fft": 400, "hop_length": 160, "n_mels": 40, "center": False, "htk": True}),
    ],
)
def test_numpy_path_matches_librosa_and_torch(use_native, dtype, shape, kw, monkeypatch) -> None:
    if not use_native:
        monkeypatch.setattr(spectral, "_mel_native", lambda y, plan: None)
    y = np.random.default_rng(len(shape)).standard_normal(shape).astype(dtype)
    got = melspectrogram(y=y, **kw)
    assert isinstance(got, np.ndarray) and got.dtype == dtype
    ref = librosa.feature.melspectrogram(y=y, dtype=dtype, **kw)  # librosa's mel basis is float32 unless told
    assert got.shape == ref.shape
    tol = 1e-5 if dtype == np.float32 else 1e-9
    assert np.abs(got - ref).max() <= tol * np.abs(ref).max()
    torch_in = melspectrogram(y=torch.from_numpy(y), **kw)  # a CPU tensor outside autograd: the same path
    assert isinstance(torch_in, torch.Tensor) and torch_in.dtype == torch.from_numpy(y).dtype
    assert np.array_equal(torch_in.numpy(), got)
    via_torch = melspectrogram(y=torch.from_numpy(y).requires_grad_(), **kw).detach().numpy()  # the torch ops
    assert np.abs(got - via_torch).max() <= tol * np.abs(ref).max()


def _spy(monkeypatch, name: str) -> list[bool]:
    """Record, for each call of ``spectral.<name>``, whether it returned a result (took the path)."""
    calls: list[bool] = []
    real = getattr(spectral, name)

    def spy(y, plan):
        out = real(y, plan)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(spectral, name, spy)
    return calls


def test_numpy_path_is_taken_for_short_clips_only(monkeypatch) -> None:
    calls = _spy(monkeypatch, "_mel_power2_numpy")
    monkeypatch.setattr(spectral, "_mel_native", lambda y, plan: None)  # this test is about the numpy path
    kw = {"sr": 16000, "n_fft": 800, "hop_length": 200, "n_mels": 80}
    short = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    long = np.random.default_rng(1).standard_normal(16000 * 6).astype(np.float32)  # 481 frames > one block
    melspectrogram(y=short, **kw)
    out_long = melspectrogram(y=long, **kw)
    melspectrogram(y=torch.from_numpy(short), **kw)  # a CPU tensor outside autograd takes it too
    leaf = torch.from_numpy(short).requires_grad_()
    out = melspectrogram(y=leaf, **kw)  # autograd needs the torch ops: not taken
    out.sum().backward()
    assert calls == [True, False, True] and leaf.grad is not None and torch.isfinite(leaf.grad).all()
    ref = librosa.feature.melspectrogram(y=long, **kw)
    assert np.abs(out_long - ref).max() <= 1e-5 * ref.max()


def test_native_kernel_is_taken_outside_autograd_only(monkeypatch) -> None:
    from audioforge.features import native

    if not native.available():
        pytest.skip("no native kernel here (compiler or AVX-512F)")
    calls = _spy(monkeypatch, "_mel_native")
    kw = {"sr": 16000, "n_fft": 800, "hop_length": 200, "n_mels": 80}
    y = np.random.default_rng(0).standard_normal(16000 * 6).astype(np.float32)  # long clips too
    melspectrogram(y=y, **kw)
    melspectrogram(y=torch.from_numpy(y), **kw)
    melspectrogram(y=y.astype(np.float64), **kw)  # float64: the plan has no kernel
    melspectrogram(y=torch.from_numpy(y).requires_grad_(), **kw)  # autograd: the torch ops, never asked
    assert calls == [True, True, False]
