"""Analysis windows computed in float64, as librosa (scipy) and Kaldi define them."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InvalidParameterError

__all__ = ["get_window", "pad_center"]

_NAMES = ("hann", "hamming", "blackman", "povey", "rectangular", "boxcar", "ones")


def get_window(
    window: str | np.ndarray | torch.Tensor,
    win_length: int,
    *,
    fftbins: bool = True,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Return a window of ``win_length`` samples as a tensor.

    Parameters
    ----------
    window
        A name (``"hann"``, ``"hamming"``, ``"blackman"``, ``"povey"`` (Kaldi: symmetric Hann ** 0.85),
        ``"rectangular"``/``"boxcar"``/``"ones"``), any other window scipy.signal.get_window knows (a name or a
        tuple such as ``("kaiser", 4.0)``), or an explicit array of length ``win_length``.
    win_length
        Window length in samples.
    fftbins
        True for a periodic window (librosa/scipy default for spectral analysis), False for a symmetric one
        (Kaldi's windows are symmetric; ``povey`` is always symmetric).
    dtype
        Output dtype; computed in float64 then cast.
    """
    if isinstance(window, (np.ndarray, torch.Tensor)):
        w = torch.as_tensor(np.asarray(window) if isinstance(window, np.ndarray) else window.detach().cpu())
        if w.dim() != 1 or w.shape[0] != win_length:
            raise InvalidParameterError(
                f"an explicit window must be 1-D with win_length={win_length} samples, got shape {tuple(w.shape)}"
            )
        return w.to(dtype)
    if not isinstance(window, str) or window not in _NAMES:
        return _scipy_window(window, win_length, fftbins=fftbins).to(dtype)
    if win_length < 1:
        raise InvalidParameterError(f"win_length must be >= 1, got {win_length}")
    if win_length == 1:
        return torch.ones(1, dtype=dtype)
    n = torch.arange(win_length, dtype=torch.float64)
    symmetric = (not fftbins) or window == "povey"
    denom = win_length - 1 if symmetric else win_length
    a = 2.0 * math.pi * n / denom
    if window == "hann":
        w = 0.5 - 0.5 * torch.cos(a)
    elif window == "povey":
        w = (0.5 - 0.5 * torch.cos(a)) ** 0.85
    elif window == "hamming":
        w = 0.54 - 0.46 * torch.cos(a)
    elif window == "blackman":
        # Kaldi's blackman coefficient 0.42 matches scipy's exact-ish blackman (0.42, 0.5, 0.08)
        w = 0.42 - 0.5 * torch.cos(a) + 0.08 * torch.cos(2 * a)
    else:
        w = torch.ones(win_length, dtype=torch.float64)
    return w.to(dtype)


def _scipy_window(window: object, win_length: int, *, fftbins: bool) -> torch.Tensor:
    import scipy.signal

    try:
        w = scipy.signal.get_window(window, win_length, fftbins=fftbins)
    except (ValueError, TypeError) as exc:
        raise InvalidParameterError(
            f"unknown window {window!r} ({exc}); use one of {list(_NAMES)}, a scipy.signal window, or an array"
        ) from exc
    return torch.from_numpy(np.asarray(w, dtype=np.float64))


def pad_center(w: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad the last axis of ``w`` to ``size``, centred (left pad ``(size - n) // 2``), as librosa does."""
    n = w.shape[-1]
    if n > size:
        raise InvalidParameterError(f"win_length={n} is longer than n_fft={size}; use win_length <= n_fft")
    left = (size - n) // 2
    return torch.nn.functional.pad(w, (left, size - n - left))
