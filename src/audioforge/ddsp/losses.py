"""Multi-scale spectral loss (DDSP's reconstruction loss)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import InvalidParameterError
from .core import check_controls

__all__ = ["MultiScaleSpectralLoss", "multiscale_spectral_loss", "spectrogram_magnitude"]

DEFAULT_FFT_SIZES = (2048, 1024, 512, 256, 128, 64)


def spectrogram_magnitude(audio: torch.Tensor, n_fft: int, *, overlap: float = 0.75) -> torch.Tensor:
    """``|STFT|`` of ``(batch, n)`` audio: periodic Hann of ``n_fft``, hop ``n_fft * (1 - overlap)``, no padding.

    Frames start at sample 0 and only whole frames are used (``1 + (n - n_fft) // hop`` of them); the result has
    shape ``(batch, n_fft // 2 + 1, n_frames)``.
    """
    hop = max(1, round(n_fft * (1.0 - overlap)))
    if audio.shape[-1] < n_fft:
        raise InvalidParameterError(
            f"audio has {audio.shape[-1]} samples, fewer than the largest FFT size {n_fft}; use longer examples or "
            "smaller fft_sizes"
        )
    window = torch.hann_window(n_fft, periodic=True, dtype=audio.dtype, device=audio.device)
    spec = torch.stft(audio, n_fft=n_fft, hop_length=hop, window=window, center=False, return_complex=True)
    return spec.abs()


def multiscale_spectral_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
    overlap: float = 0.75,
    mag_weight: float = 1.0,
    logmag_weight: float = 1.0,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Sum over FFT sizes of ``mag_weight * mean|S_t - S_p| + logmag_weight * mean|log(S_t + eps) - log(S_p + eps)|``.

    Parameters
    ----------
    prediction, target
        ``(batch, n)`` audio (``(n,)`` is treated as a batch of one).
    fft_sizes
        STFT sizes (DDSP: 2048 down to 64), each with a periodic Hann window and ``overlap`` (75 %).
    mag_weight, logmag_weight
        Weights of the linear and log magnitude terms (natural log, as DDSP).
    eps
        Added before the log.

    Returns
    -------
    torch.Tensor
        A scalar, differentiable with respect to ``prediction``.
    """
    if prediction.dim() == 1:
        prediction, target = prediction.unsqueeze(0), target.unsqueeze(0)
    check_controls("prediction", prediction)
    check_controls("target", target)
    if prediction.shape != target.shape:
        raise InvalidParameterError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
    if not fft_sizes or not 0.0 <= overlap < 1.0:
        raise InvalidParameterError(f"need at least one FFT size and 0 <= overlap < 1, got {fft_sizes}, {overlap}")
    loss = prediction.new_zeros(())
    for n_fft in fft_sizes:
        sp = spectrogram_magnitude(prediction, int(n_fft), overlap=overlap)
        st = spectrogram_magnitude(target, int(n_fft), overlap=overlap)
        if mag_weight:
            loss = loss + mag_weight * (st - sp).abs().mean()
        if logmag_weight:
            loss = loss + logmag_weight * (torch.log(st + eps) - torch.log(sp + eps)).abs().mean()
    return loss


class MultiScaleSpectralLoss(nn.Module):
    """Module form of :func:`multiscale_spectral_loss` with its keyword settings fixed at construction."""

    def __init__(
        self,
        *,
        fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
        overlap: float = 0.75,
        mag_weight: float = 1.0,
        logmag_weight: float = 1.0,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        self.fft_sizes = tuple(int(s) for s in fft_sizes)
        self.overlap, self.mag_weight, self.logmag_weight, self.eps = overlap, mag_weight, logmag_weight, eps

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``prediction`` against ``target`` (a scalar)."""
        return multiscale_spectral_loss(
            prediction, target, fft_sizes=self.fft_sizes, overlap=self.overlap, mag_weight=self.mag_weight,
            logmag_weight=self.logmag_weight, eps=self.eps,
        )
