"""The real DFT as a matrix product: ONNX-exportable, CUDA-graph friendly, and fast for one frame at a time.

``torch.fft.rfft`` is the default path. Some consumers cannot use it: the ONNX exporters of older opsets have no
real-FFT op, inductor has no complex codegen, and for a single short frame a cached matmul beats an FFT call's
dispatch overhead. This module builds the basis once (in float64, then cast) and applies it with one matmul.
"""

from __future__ import annotations

import math

import torch

__all__ = ["power_spectrum", "rdft_basis", "rdft_matmul"]


def rdft_basis(
    n_fft: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Return the ``(n_fft, 2 * (n_fft // 2 + 1))`` real basis ``[cos | -sin]`` of the one-sided DFT.

    ``frames @ basis`` gives the real parts in the first half of the last axis and the imaginary parts in the
    second, equal to ``torch.fft.rfft(frames)`` up to rounding. Angles are reduced exactly (``k * n mod n_fft``)
    before the cosine, so the basis is accurate for large ``n_fft``.
    """
    n_freq = n_fft // 2 + 1
    n = torch.arange(n_fft, dtype=torch.int64)
    k = torch.arange(n_freq, dtype=torch.int64)
    phase = (n[:, None] * k[None, :]) % n_fft  # exact integer reduction keeps angles small
    ang = phase.to(torch.float64) * (2.0 * math.pi / n_fft)
    basis = torch.cat([torch.cos(ang), -torch.sin(ang)], dim=1)
    return basis.to(dtype=dtype, device=device)


def rdft_matmul(frames: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a basis from :func:`rdft_basis` to ``frames`` of shape ``(..., n_fft)``; return ``(real, imag)``."""
    out = frames @ basis
    half = basis.shape[-1] // 2
    return out[..., :half], out[..., half:]


def power_spectrum(frames: torch.Tensor, *, basis: torch.Tensor | None = None, power: float = 2.0) -> torch.Tensor:
    """``|rfft(frames)| ** power`` over the last axis, by FFT or (with ``basis``) by matmul.

    ``power == 2`` is computed as ``re**2 + im**2`` (no square root); other powers as ``hypot(re, im) ** power``,
    matching ``np.abs(stft) ** power``.
    """
    if basis is None:
        spec = torch.fft.rfft(frames, dim=-1)
        re, im = spec.real, spec.imag
    else:
        re, im = rdft_matmul(frames, basis)
    if power == 2.0:
        return re * re + im * im
    mag = torch.sqrt(re * re + im * im) if power != 1.0 else torch.hypot(re, im)
    return mag if power == 1.0 else mag**power
