"""Mel scales and mel filterbanks with librosa's definitions (Slaney and HTK scales; slaney / numeric norms).

Everything is computed in float64 numpy, exactly as ``librosa.filters.mel`` does, then cast; the filterbank is cached
by its parameters so repeated calls cost nothing (librosa rebuilds it on every ``melspectrogram`` call).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from ..audio import validate_sample_rate
from ..errors import InvalidParameterError
from ._io import check_finite_number, check_positive_int

__all__ = [
    "apply_mel_blocks",
    "fft_frequencies",
    "hz_to_mel",
    "mel_blocks",
    "mel_filterbank",
    "mel_filterbank_tensor",
    "mel_frequencies",
    "mel_to_hz",
]

_F_SP = 200.0 / 3.0  # Slaney: Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(frequencies: Any, *, htk: bool = False) -> Any:
    """Convert Hz to mels (Slaney's scale by default, HTK's ``2595 log10(1 + f / 700)`` with ``htk=True``)."""
    f = np.asanyarray(frequencies, dtype=np.float64)
    if htk:
        out = 2595.0 * np.log10(1.0 + f / 700.0)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(
                f >= _MIN_LOG_HZ, _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, f / _F_SP
            )
    return out if out.ndim else float(out)


def mel_to_hz(mels: Any, *, htk: bool = False) -> Any:
    """Convert mels back to Hz (inverse of :func:`hz_to_mel`)."""
    m = np.asanyarray(mels, dtype=np.float64)
    if htk:
        out = 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    else:
        out = np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)
    return out if out.ndim else float(out)


def mel_frequencies(n_mels: int = 128, *, fmin: float = 0.0, fmax: float = 11025.0, htk: bool = False) -> np.ndarray:
    """``n_mels`` frequencies (Hz) evenly spaced on the mel scale from ``fmin`` to ``fmax`` inclusive."""
    n_mels = check_positive_int(n_mels, "n_mels")
    lo, hi = hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk)
    return np.asarray(mel_to_hz(np.linspace(lo, hi, n_mels), htk=htk))


def fft_frequencies(*, sr: float = 22050, n_fft: int = 2048) -> np.ndarray:
    """Centre frequencies of the ``1 + n_fft // 2`` rfft bins (``numpy.fft.rfftfreq``)."""
    return np.fft.rfftfreq(n=int(n_fft), d=1.0 / float(sr))


def _normalize_rows(w: np.ndarray, norm: float) -> np.ndarray:
    """Row normalisation as ``librosa.util.normalize(w, norm=norm, axis=-1)`` (rows with ~0 norm left as is)."""
    mag = np.abs(w).astype(np.float64)
    if norm == np.inf:
        length = mag.max(axis=-1, keepdims=True)
    elif norm == -np.inf:
        length = mag.min(axis=-1, keepdims=True)
    elif norm == 0:
        length = np.sum(mag > 0, axis=-1, keepdims=True).astype(np.float64)
    else:
        length = np.sum(mag**norm, axis=-1, keepdims=True) ** (1.0 / norm)
    small = length < np.finfo(w.dtype).tiny
    length[small] = 1.0
    return (w / length).astype(w.dtype)


@functools.lru_cache(maxsize=64)
def _mel_cached(
    sr: float, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool, norm: Any, dtype: str
) -> np.ndarray:
    fftfreqs = fft_frequencies(sr=sr, n_fft=n_fft)
    mel_f = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    # librosa stores the triangles in the output dtype first, then scales in place (float64 arithmetic, cast back)
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(dtype)
    if norm == "slaney":
        enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
        weights = (weights * enorm[:, None]).astype(dtype)
    elif norm is not None:
        weights = _normalize_rows(weights, norm)
    weights.setflags(write=False)
    return weights


def mel_filterbank(
    *,
    sr: float,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | float | None = "slaney",
    dtype: Any = np.float32,
) -> np.ndarray:
    """Mel filterbank matrix of shape ``(n_mels, 1 + n_fft // 2)``, identical to ``librosa.filters.mel``.

    Parameters
    ----------
    sr
        Sample rate of the audio.
    n_fft
        FFT size.
    n_mels
        Number of mel bands.
    fmin, fmax
        Lowest and highest band edges in Hz; ``fmax=None`` means ``sr / 2``.
    htk
        HTK's mel formula instead of Slaney's.
    norm
        ``"slaney"`` (area normalisation), ``None``, or a number ``p`` for row-wise p-norm normalisation
        (``np.inf`` for max-norm), as ``librosa.util.normalize``.
    dtype
        Output dtype (float32 by default, as librosa).

    Returns
    -------
    numpy.ndarray
        Read-only array (it is cached; copy it before editing).
    """
    sr = validate_sample_rate(sr, name="sr") if float(sr).is_integer() else check_finite_number(sr, "sr", minimum=1)
    n_fft = check_positive_int(n_fft, "n_fft", minimum=2)
    n_mels = check_positive_int(n_mels, "n_mels")
    fmin = check_finite_number(fmin, "fmin", minimum=0.0)
    fmax = float(sr) / 2.0 if fmax is None else check_finite_number(fmax, "fmax")
    if fmax <= fmin:
        raise InvalidParameterError(f"fmax={fmax} must be greater than fmin={fmin}")
    if fmax > sr / 2.0 + 1e-9:
        raise InvalidParameterError(f"fmax={fmax} Hz is above the Nyquist frequency {sr / 2} Hz; lower fmax")
    if not (norm is None or norm == "slaney" or (isinstance(norm, (int, float)) and not isinstance(norm, bool))):
        raise InvalidParameterError(f"norm={norm!r}; use 'slaney', None, or a number (p-norm, np.inf for max)")
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise InvalidParameterError(f"dtype must be a float type, got {dt}")
    return _mel_cached(float(sr), n_fft, n_mels, fmin, fmax, bool(htk), norm, dt.name)


@functools.lru_cache(maxsize=64)
def _mel_tensor_cached(key: tuple[Any, ...], dtype: torch.dtype, device: str) -> torch.Tensor:
    sr, n_fft, n_mels, fmin, fmax, htk, norm = key
    w = mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm,
                       dtype=np.float64 if dtype == torch.float64 else np.float32)
    return torch.from_numpy(np.array(w)).to(dtype=dtype, device=device)


def mel_filterbank_tensor(
    *,
    sr: float,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | float | None = "slaney",
    dtype: torch.dtype = torch.float32,
    device: Any = "cpu",
) -> torch.Tensor:
    """:func:`mel_filterbank` as a cached torch tensor on ``device`` (float64 basis for float64 dtype)."""
    return _mel_tensor_cached((sr, n_fft, n_mels, fmin, fmax, htk, norm), dtype, str(device))


MelBlocks = tuple[tuple[int, int, torch.Tensor], ...]


def mel_blocks(basis: torch.Tensor, n_groups: int | None = None) -> MelBlocks:
    """Split a ``(n_mels, n_freq)`` filterbank into row groups restricted to the columns they touch.

    A mel filterbank is ~95% zeros (each FFT bin feeds at most two triangles). Grouping consecutive filters and
    keeping only the frequency span of each group cuts the product's arithmetic several-fold while keeping it a few
    dense matmuls (fast, exportable, graph-friendly). Returns ``((c0, c1, W), ...)`` with ``W`` of shape
    ``(c1 - c0, rows_in_group)``; apply with :func:`apply_mel_blocks`.
    """
    n_mels = basis.shape[0]
    if n_groups is None:
        n_groups = 1 if n_mels < 32 else 4
    n_groups = max(1, min(n_groups, n_mels))
    blocks = []
    for g in range(n_groups):
        r0, r1 = g * n_mels // n_groups, (g + 1) * n_mels // n_groups
        sub = basis[r0:r1]
        cols = (sub != 0).any(0).nonzero().flatten()
        c0, c1 = (int(cols[0]), int(cols[-1]) + 1) if cols.numel() else (0, 1)
        blocks.append((c0, c1, sub[:, c0:c1].T.contiguous()))
    return tuple(blocks)


def apply_mel_blocks(S: torch.Tensor, blocks: MelBlocks) -> torch.Tensor:
    """``S @ basis.T`` for time-major ``S`` of shape ``(..., t, n_freq)`` using :func:`mel_blocks`' groups."""
    if len(blocks) == 1:
        c0, c1, w = blocks[0]
        return torch.matmul(S[..., c0:c1], w)
    return torch.cat([torch.matmul(S[..., c0:c1], w) for c0, c1, w in blocks], dim=-1)


@functools.lru_cache(maxsize=64)
def mel_blocks_cached(
    key: tuple[Any, ...], dtype: torch.dtype, device: str, n_groups: int | None = None
) -> MelBlocks:
    """Cached :func:`mel_blocks` of :func:`mel_filterbank_tensor` for a parameter tuple
    ``(sr, n_fft, n_mels, fmin, fmax, htk, norm)``."""
    return mel_blocks(_mel_tensor_cached(key, dtype, device), n_groups)


def groups_for_frames(n_mels: int, n_frames: int) -> int:
    """Block count for :func:`mel_blocks`: few blocks when per-matmul overhead dominates (short inputs), more
    when arithmetic does (long inputs). Measured on a 2-core x86 VM, one thread."""
    if n_mels < 32 or n_frames <= 16:
        return 1
    return 4
