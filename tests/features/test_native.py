"""The native mel kernel against a float64 FFT and librosa; its fallbacks (no kernel, unsupported sizes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audioforge.features import melspectrogram, native
from audioforge.features import spectral as sp

needs_kernel = pytest.mark.skipif(not native.available(), reason="no native kernel here (compiler or AVX-512F)")
RNG = np.random.default_rng(11)


def _reference(x: np.ndarray, n_fft: int, hop: int, window: np.ndarray, basis: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), n_fft)[::hop] * window
    return basis.astype(np.float32).astype(np.float64) @ (np.abs(np.fft.rfft(frames, axis=-1)) ** 2).T


@needs_kernel
@pytest.mark.parametrize("n_fft", [4, 6, 10, 16, 30, 100, 122, 256, 400, 510, 512, 800, 1024, 2048])
@pytest.mark.parametrize("n_frames", [1, 15, 16, 17, 40])
def test_kernel_matches_float64_fft(n_fft: int, n_frames: int) -> None:
    # 122 = 2 x 61 (a prime radix: direct DFT); 510 = 2 x 3 x 5 x 17; 30 has a 15-point transform (3 x 5)
    hop = max(1, n_fft // 3)
    window = np.hanning(n_fft + 1)[:-1]
    n_mels = 6
    basis = np.abs(RNG.standard_normal((n_mels, n_fft // 2 + 1))) * (RNG.random((n_mels, n_fft // 2 + 1)) < 0.3)
    plan = native.kernel_plan(n_fft, window, basis)
    assert plan is not None
    x = RNG.standard_normal(hop * (n_frames - 1) + n_fft).astype(np.float32)
    out = np.empty((n_mels, n_frames), dtype=np.float32)
    native.mel_power(int(x.ctypes.data), n_frames, hop, plan, out)
    ref = _reference(x, n_fft, hop, window, basis)
    assert ref.shape == out.shape
    assert np.abs(out - ref).max() / np.abs(ref).max() < 2e-6


@needs_kernel
def test_hop_longer_than_the_frame_and_a_lone_frame() -> None:
    n_fft, hop = 64, 100
    window = np.ones(n_fft)
    basis = np.eye(5, n_fft // 2 + 1)
    plan = native.kernel_plan(n_fft, window, basis)
    x = RNG.standard_normal(hop * 20 + n_fft).astype(np.float32)
    out = np.empty((5, 21), dtype=np.float32)
    native.mel_power(int(x.ctypes.data), 21, hop, plan, out)
    np.testing.assert_allclose(out, _reference(x, n_fft, hop, window, basis), rtol=2e-5, atol=1e-4)


@needs_kernel
@pytest.mark.parametrize(
    "kw",
    [
        dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0),
        dict(sr=32000, n_fft=1024, win_length=800, hop_length=320, n_mels=128),
        dict(sr=22050, n_fft=2048, hop_length=512, pad_mode="reflect"),
        dict(sr=8000, n_fft=256, hop_length=80, n_mels=40, center=False, htk=True, norm=None),
    ],
)
def test_melspectrogram_takes_the_kernel_and_matches_librosa(kw: dict) -> None:
    librosa = pytest.importorskip("librosa")
    y = RNG.standard_normal((2, 3, 12345)).astype(np.float32)
    plan = sp._mel_plan(kw["sr"], kw["n_fft"], kw["hop_length"], kw.get("win_length"), "hann", kw.get("center", True),
                        kw.get("pad_mode", "constant"), kw.get("n_mels", 128), kw.get("fmin", 0.0), kw.get("fmax"),
                        kw.get("htk", False), kw.get("norm", "slaney"), torch.float32, torch.float32, "cpu")
    assert plan.native is not None
    got = melspectrogram(y, **kw)
    ref = librosa.feature.melspectrogram(y=y, **kw)
    assert got.shape == ref.shape and got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-5
    t = melspectrogram(torch.from_numpy(y[0, 0]), **kw)
    assert isinstance(t, torch.Tensor) and np.abs(t.numpy() - ref[0, 0]).max() / np.abs(ref).max() < 1e-5


def test_sizes_the_kernel_does_not_cover() -> None:
    window, basis = np.ones(801), np.ones((4, 401))
    assert native.kernel_plan(801, window, basis) is None  # odd n_fft
    assert native.kernel_plan(134, np.ones(134), np.ones((4, 68))) is None  # 134 / 2 = 67, a prime above 64
    assert native.kernel_plan(2, np.ones(2), np.ones((1, 2))) is None
    plan64 = sp._mel_plan(16000, 800, 200, None, "hann", True, "constant", 80, 0.0, None, False, "slaney",
                          torch.float64, torch.float64, "cpu")
    assert plan64.native is None  # float64 keeps the numpy/torch path


def _run(code: str, **env: str) -> dict:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env}, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


_PROBE = """
import json, numpy as np, librosa
from audioforge.features import melspectrogram, native
y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
kw = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)
got, ref = melspectrogram(y, **kw), librosa.feature.melspectrogram(y=y, **kw)
print(json.dumps({"available": native.available(), "err": float(np.abs(got - ref).max() / ref.max())}))
"""


def test_disabled_kernel_falls_back_to_the_same_result() -> None:
    pytest.importorskip("librosa")
    r = _run(_PROBE, AUDIOFORGE_NATIVE="0")
    assert r["available"] is False and r["err"] < 1e-5


@needs_kernel
def test_kernel_is_built_once_into_the_cache(tmp_path: Path) -> None:
    pytest.importorskip("librosa")
    r = _run(_PROBE, AUDIOFORGE_CACHE=str(tmp_path))
    built = list((tmp_path / "native").glob("mel_kernel-*.so"))
    assert r["available"] is True and r["err"] < 1e-5 and len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    _run(_PROBE, AUDIOFORGE_CACHE=str(tmp_path))
    assert [p.stat().st_mtime_ns for p in (tmp_path / "native").glob("mel_kernel-*.so")] == [stamp]
    assert not [p for p in (tmp_path / "native").iterdir() if not p.name.startswith("mel_kernel-")]  # no temp left


@needs_kernel
def test_kernel_call_rejects_a_wrong_output_or_sizes() -> None:
    from audioforge.errors import InvalidParameterError

    plan = native.kernel_plan(64, np.ones(64), np.eye(4, 33))
    x = np.zeros(64 + 10 * 16, dtype=np.float32)
    for out in (np.empty((4, 10), np.float64), np.empty((4, 9), np.float32), np.empty((10, 4), np.float32).T):
        with pytest.raises(InvalidParameterError, match="out must be"):
            native.mel_power(int(x.ctypes.data), 10, 16, plan, out)
    with pytest.raises(InvalidParameterError, match="n_frames"):
        native.mel_power(int(x.ctypes.data), 0, 16, plan, np.empty((4, 0), np.float32))
