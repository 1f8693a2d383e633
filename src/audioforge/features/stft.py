"""Short-time Fourier transform with librosa's semantics (librosa >= 0.9: keyword-only, ``pad_mode='constant'``).

Frames are cut with ``unfold`` (a view, no copy), windowed, and transformed with ``torch.fft.rfft`` (or with the
DFT-as-matmul basis of :mod:`audioforge.features.dft`). Padding follows ``numpy.pad`` exactly, including inputs
shorter than the padding (where torch's own reflect padding refuses).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from ..errors import EmptyAudioError, InvalidParameterError
from ._io import as_tensor, check_positive_int
from .windows import get_window, pad_center

__all__ = ["PAD_MODES", "frame_signal", "n_frames", "pad_signal", "stft", "stft_window"]

#: The modes librosa.stft accepts for centred frames (librosa refuses wrap/mean/median/maximum/minimum there).
PAD_MODES = ("constant", "edge", "reflect", "symmetric", "linear_ramp")


def check_pad_mode(pad_mode: str, center: bool = True) -> None:
    """Raise InvalidParameterError unless ``pad_mode`` is usable for (centred) frames."""
    if center and pad_mode not in PAD_MODES:
        raise InvalidParameterError(
            f"pad_mode={pad_mode!r} is not supported for centred frames; use one of {list(PAD_MODES)} "
            "(librosa.stft refuses the others too)"
        )


def _pad_indices(n: int, positions: torch.Tensor, mode: str) -> torch.Tensor:
    """Map out-of-range sample positions onto ``range(n)`` the way ``numpy.pad`` does for index-based modes."""
    if mode == "edge":
        return positions.clamp(0, n - 1)
    if mode == "reflect":
        if n == 1:
            return torch.zeros_like(positions)
        period = 2 * (n - 1)
        m = positions.remainder(period)
        return torch.where(m < n, m, period - m)
    if mode == "symmetric":
        period = 2 * n
        m = positions.remainder(period)
        return torch.where(m < n, m, period - 1 - m)
    raise AssertionError(mode)


def pad_signal(y: torch.Tensor, left: int, right: int, mode: str = "constant") -> torch.Tensor:
    """Pad the last axis of ``y`` like ``numpy.pad(..., mode=mode)`` for the modes in :data:`PAD_MODES`.

    Works for any signal length (numpy's repeated reflection for pads longer than the signal included) and keeps
    the autograd graph.
    """
    check_pad_mode(mode)
    if left == 0 and right == 0:
        return y
    n = y.shape[-1]
    if mode == "constant":
        return torch.nn.functional.pad(y, (left, right))
    if mode == "linear_ramp":
        # numpy: linspace from 0 (the far end) towards the edge sample, the edge value itself excluded;
        # step-times-index in numpy's order of operations so the values round identically
        lr = torch.arange(left, dtype=y.dtype, device=y.device) * (y[..., :1] / max(left, 1))
        rr = torch.arange(right - 1, -1, -1, dtype=y.dtype, device=y.device) * (y[..., -1:] / max(right, 1))
        return torch.cat([lr, y, rr], dim=-1)
    pos_l = torch.arange(-left, 0, device=y.device)
    pos_r = torch.arange(n, n + right, device=y.device)
    return torch.cat([y[..., _pad_indices(n, pos_l, mode)], y, y[..., _pad_indices(n, pos_r, mode)]], dim=-1)


def n_frames(n_samples: int, *, n_fft: int, hop_length: int, center: bool) -> int:
    """Number of frames ``stft`` produces for ``n_samples`` input samples."""
    if center:
        n_samples += 2 * (n_fft // 2)  # odd n_fft pads one sample less than n_fft in total
    return 0 if n_samples < n_fft else 1 + (n_samples - n_fft) // hop_length


def frame_signal(
    y: torch.Tensor, *, n_fft: int, hop_length: int, center: bool = True, pad_mode: str = "constant"
) -> torch.Tensor:
    """Cut ``y`` of shape ``(..., n)`` into frames ``(..., n_frames, n_fft)`` (centre-padded if ``center``)."""
    if center:
        y = pad_signal(y, n_fft // 2, n_fft // 2, pad_mode)
    elif y.shape[-1] < n_fft:
        raise EmptyAudioError(
            f"input has {y.shape[-1]} samples, fewer than n_fft={n_fft}, and center=False gives no frame; "
            "pass center=True, a smaller n_fft, or a longer signal"
        )
    return y.unfold(-1, n_fft, hop_length)


@functools.lru_cache(maxsize=64)
def _window_cached(window: Any, win_length: int, n_fft: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    return pad_center(get_window(window, win_length, fftbins=True), n_fft).to(dtype=dtype, device=device)


def stft_window(
    window: Any, win_length: int, n_fft: int, *, dtype: torch.dtype = torch.float32, device: Any = "cpu"
) -> torch.Tensor:
    """The periodic analysis window of ``win_length`` zero-padded (centred) to ``n_fft``, as librosa builds it.

    Cached per (window, sizes, dtype, device) for hashable window specs; arrays are built each call.
    """
    if isinstance(window, (str, tuple)):
        return _window_cached(window, win_length, n_fft, dtype, str(device))
    return pad_center(get_window(window, win_length, fftbins=True), n_fft).to(dtype=dtype, device=device)


def resolve_frame_params(
    n_fft: Any, hop_length: Any, win_length: Any
) -> tuple[int, int, int]:
    """Validate and fill librosa's defaults: ``win_length = n_fft``, ``hop_length = win_length // 4``."""
    n_fft = check_positive_int(n_fft, "n_fft")
    win_length = n_fft if win_length is None else check_positive_int(win_length, "win_length")
    if win_length > n_fft:
        raise InvalidParameterError(f"win_length={win_length} must be <= n_fft={n_fft}")
    hop_length = max(1, win_length // 4) if hop_length is None else check_positive_int(hop_length, "hop_length")
    return n_fft, hop_length, win_length


def stft(
    y: Any,
    *,
    n_fft: int = 2048,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: Any = "hann",
    center: bool = True,
    pad_mode: str = "constant",
) -> Any:
    """Complex STFT of ``y`` with librosa's semantics; shape ``(..., 1 + n_fft // 2, n_frames)``.

    Parameters
    ----------
    y
        Float samples of shape ``(..., n)``, numpy or torch. numpy input returns numpy (complex64 for float32,
        complex128 for float64); torch input returns torch on the same device, differentiable.
    n_fft, hop_length, win_length, window, center, pad_mode
        As in ``librosa.stft`` (defaults 2048, ``win_length // 4``, ``n_fft``, ``"hann"``, True, ``"constant"``).

    Raises
    ------
    InvalidParameterError
        Bad sizes, unknown window or pad mode.
    EmptyAudioError, NonFiniteAudioError, AudioDTypeError
        Bad input samples.
    """
    n_fft, hop_length, win_length = resolve_frame_params(n_fft, hop_length, win_length)
    yt, back = as_tensor(y)
    check_pad_mode(pad_mode, center)
    win = stft_window(window, win_length, n_fft, dtype=yt.dtype, device=yt.device)
    frames = frame_signal(yt, n_fft=n_fft, hop_length=hop_length, center=center, pad_mode=pad_mode)
    spec = torch.fft.rfft(frames * win, dim=-1)
    return back(spec.transpose(-1, -2))
