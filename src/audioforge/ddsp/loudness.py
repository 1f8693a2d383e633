"""A-weighted loudness per frame, DDSP's corrected (power-domain) definition.

Per frame (``n_fft`` = 512, hop 64 at 16 kHz = 250 frames/s, periodic Hann, frames centred on ``i * hop`` with
zero padding, so ``n // hop + 1`` frames, the framing of the instrument corpus's f0 files):

1. ``P_k = |X_k|^2 / (sum w)^2``: the power spectrum normalised by the window's sum;
2. ``P_k * 10^(A(f_k) / 10)``: weighted by the A-curve (IEC 61672, in power; ``A(0) = -inf`` gives 0);
3. the mean over the ``n_fft // 2 + 1`` bins, **in linear power** (averaging dB values, as an older DDSP did, is the
   bug of ddsp#361);
4. ``10 log10(max(p, 1e-20)) - ref_db`` with ``ref_db = 10 log10(0.375 / (n_fft // 2 + 1))``, so **0 dB is a
   full-scale sine at 1 kHz** (A(1 kHz) = 0 dB; a bin-centred sine through a Hann window puts 0.375 of its
   normalised power in its three bins);
5. floored at ``-range_db`` (-80 dB: the floor, reached by silence). Network input: ``ld / 80 + 1``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..audio import validate_audio, validate_sample_rate
from ..errors import InvalidParameterError

__all__ = ["a_weighting_db", "compute_loudness", "loudness_reference_db"]


def a_weighting_db(frequencies: np.ndarray, *, min_db: float | None = None) -> np.ndarray:
    """IEC 61672 A-weighting in dB: ``20 log10 R_A(f) + 2.00`` (``-inf`` at 0 Hz unless ``min_db`` clips it)."""
    f2 = np.asarray(frequencies, dtype=np.float64) ** 2
    num = (12194.0**2) * f2**2
    den = (f2 + 20.6**2) * np.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2)
    with np.errstate(divide="ignore"):
        db = 20.0 * np.log10(num / den) + 2.0
    return db if min_db is None else np.maximum(db, min_db)


def loudness_reference_db(n_fft: int = 512) -> float:
    """The ``ref_db`` subtracted by :func:`compute_loudness`: 0 dB = a full-scale 1 kHz sine."""
    return 10.0 * math.log10(0.375 / (n_fft // 2 + 1))


def compute_loudness(
    audio: np.ndarray | torch.Tensor,
    sr: int = 16000,
    *,
    frame_rate: int = 250,
    n_fft: int = 512,
    range_db: float = 80.0,
) -> np.ndarray | torch.Tensor:
    """A-weighted loudness in dB per frame, shape ``(..., n // hop + 1)`` (see the module docstring).

    Parameters
    ----------
    audio
        ``(..., n)`` float samples, numpy (returns numpy) or torch (returns torch, differentiable).
    sr
        Sample rate; ``sr / frame_rate`` must be a whole number of samples.
    frame_rate
        Frames per second (250: a 4 ms hop, 64 samples at 16 kHz).
    n_fft
        FFT size (512 at 16 kHz as DDSP; scale it with ``sr`` for other rates).
    range_db
        Dynamic range: values are floored at ``-range_db``.

    Raises
    ------
    UnsupportedSampleRateError, InvalidParameterError, InvalidAudioError
        Bad rate, a hop that is not an integer, or bad samples.
    """
    sr = validate_sample_rate(sr)
    validate_audio(audio, name="audio")
    if isinstance(frame_rate, bool) or not isinstance(frame_rate, int) or frame_rate < 1 or sr % frame_rate:
        raise InvalidParameterError(f"frame_rate={frame_rate!r} must divide sr={sr} (250 at 16 kHz: hop 64)")
    if not isinstance(n_fft, int) or n_fft < 8 or range_db <= 0:
        raise InvalidParameterError(f"need n_fft >= 8 and range_db > 0, got {n_fft}, {range_db}")
    hop = sr // frame_rate
    is_np = isinstance(audio, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(audio)) if is_np else audio
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype, device=x.device)
    spec = torch.stft(flat, n_fft=n_fft, hop_length=hop, window=window, center=True, pad_mode="constant",
                      return_complex=True)
    power = (spec.real**2 + spec.imag**2) / window.sum() ** 2  # (B, bins, frames)
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    weight = torch.as_tensor(10.0 ** (a_weighting_db(freqs) / 10.0), dtype=x.dtype, device=x.device)
    mean_power = (power * weight.unsqueeze(-1)).mean(dim=-2)
    db = 10.0 * torch.log10(torch.clamp(mean_power, min=1e-20)) - loudness_reference_db(n_fft)
    db = torch.clamp(db, min=-float(range_db)).reshape(*lead, -1)
    return db.numpy() if is_np else db
