"""Mel spectrogram, decibel conversions and MFCC with librosa's names, keyword arguments and defaults.

Unlike librosa these functions cache the window, mel basis and DCT matrix, run on any torch device, keep autograd,
and stay in float64 end to end when given float64 (librosa builds a float32 mel basis by default even then).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InvalidParameterError
from ._io import as_tensor, check_finite_number, check_positive_int, check_power
from .mel import (
    MelBlocks,
    apply_mel_blocks,
    groups_for_frames,
    mel_blocks_cached,
    mel_filterbank_tensor,
)
from .native import MelKernelPlan, kernel_plan, mel_power
from .stft import check_pad_mode, frame_signal, resolve_frame_params, stft_window

__all__ = [
    "amplitude_to_db",
    "db_to_amplitude",
    "db_to_power",
    "dct_matrix",
    "melspectrogram",
    "mfcc",
    "power_spectrogram",
    "power_to_db",
]


def power_spectrogram_frames(
    y: torch.Tensor,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int,
    window: Any,
    center: bool,
    pad_mode: str,
    power: float,
) -> torch.Tensor:
    """``|STFT|**power`` of a validated tensor, time-major: ``(..., n_frames, 1 + n_fft // 2)``."""
    win = stft_window(window, win_length, n_fft, dtype=y.dtype, device=y.device)
    frames = frame_signal(y, n_fft=n_fft, hop_length=hop_length, center=center, pad_mode=pad_mode)
    spec = torch.fft.rfft(frames * win, dim=-1)
    if power == 2.0:
        return (spec * spec.conj()).real  # re^2 + im^2, cheaper than squaring the strided real/imag views
    mag = spec.abs()
    return mag if power == 1.0 else mag**power


def power_spectrogram(
    y: Any,
    *,
    n_fft: int = 2048,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: Any = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
) -> Any:
    """``np.abs(librosa.stft(y, ...)) ** power``, shape ``(..., 1 + n_fft // 2, n_frames)``."""
    n_fft, hop_length, win_length = resolve_frame_params(n_fft, hop_length, win_length)
    check_pad_mode(pad_mode, center)
    power = check_power(power)
    yt, back = as_tensor(y)
    S = power_spectrogram_frames(yt, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
                                 center=center, pad_mode=pad_mode, power=power)
    return back(S.transpose(-1, -2))


def melspectrogram(
    y: Any = None,
    *,
    sr: float = 22050,
    S: Any = None,
    n_fft: int = 2048,
    hop_length: int = 512,
    win_length: int | None = None,
    window: Any = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | float | None = "slaney",
    dtype: Any = None,
) -> Any:
    """Mel-scaled spectrogram, equal to ``librosa.feature.melspectrogram`` with the same arguments.

    Parameters
    ----------
    y
        Samples ``(..., n)`` (numpy or torch), or None when ``S`` is given.
    sr
        Sample rate.
    S
        A precomputed ``|STFT|**power`` spectrogram ``(..., 1 + n_fft // 2, t)``; ``n_fft`` is inferred from it.
    n_fft, hop_length, win_length, window, center, pad_mode, power
        STFT settings, librosa's defaults (hop 512, ``pad_mode='constant'``, power 2).
    n_mels, fmin, fmax, htk, norm
        Mel filterbank settings (:func:`audioforge.features.mel_filterbank`).
    dtype
        dtype of the mel basis; default: the input's float dtype (librosa uses float32 unless told otherwise).

    Returns
    -------
    Mel spectrogram of shape ``(..., n_mels, n_frames)``, the same kind (numpy/torch) and dtype as the input.
    """
    if S is not None:
        St, back = as_tensor(S, name="S", min_samples=0)
        n_fft = 2 * (St.shape[-2] - 1) if St.dim() >= 2 else 0
        if St.dim() < 2 or n_fft < 2:
            raise InvalidParameterError(f"S must have shape (..., 1 + n_fft // 2, t), got {tuple(St.shape)}")
        St = St.transpose(-1, -2)
        blocks = _mel_blocks(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype, St)
        return back(apply_mel_blocks(St, blocks).transpose(-1, -2))
    if y is None:
        raise InvalidParameterError("pass either y (samples) or S (a power spectrogram)")
    yt, back = as_tensor(y)
    window_key = window if isinstance(window, (str, tuple)) else None
    if window_key is not None and power == 2.0:
        # the common case: everything validated and built once per configuration
        plan = _mel_plan(sr, n_fft, hop_length, win_length, window_key, center, pad_mode, n_mels, fmin, fmax, htk,
                         norm, _basis_dtype(dtype, yt.dtype), yt.dtype, str(yt.device))
        numpy_in = isinstance(y, np.ndarray)
        if numpy_in or not yt.requires_grad:  # outside autograd: the native kernel, else numpy around torch's FFT
            native_out = _mel_native(yt, plan)
            if native_out is not None:
                return native_out if numpy_in else torch.from_numpy(native_out)
            out = _mel_power2_numpy(yt, plan)
            if out is not None:
                return np.swapaxes(out, -1, -2) if numpy_in else torch.from_numpy(out).transpose(-1, -2)
        return back(_mel_power2(yt, plan).transpose(-1, -2))
    n_fft, hop_length, win_length = resolve_frame_params(n_fft, hop_length, win_length)
    check_pad_mode(pad_mode, center)
    power = check_power(power)
    St = power_spectrogram_frames(yt, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
                                  center=center, pad_mode=pad_mode, power=power)
    blocks = _mel_blocks(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype, St)
    return back(apply_mel_blocks(St, blocks).transpose(-1, -2))


def _basis_dtype(dtype: Any, data_dtype: torch.dtype) -> torch.dtype:
    if dtype is None:
        return data_dtype
    if isinstance(dtype, torch.dtype):
        return dtype
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def _mel_blocks(sr: float, n_fft: int, n_mels: int, fmin: float, fmax: float | None, htk: bool, norm: Any,
                dtype: Any, St: torch.Tensor) -> MelBlocks:
    """Validated, cached block-sparse mel basis in ``St``'s dtype and device."""
    basis_dtype = _basis_dtype(dtype, St.dtype)
    mel_filterbank_tensor(sr=sr, n_fft=n_fft, n_mels=check_positive_int(n_mels, "n_mels"), fmin=fmin, fmax=fmax,
                          htk=htk, norm=norm, dtype=basis_dtype, device=St.device)  # validates, caches
    n_groups = groups_for_frames(n_mels, St.shape[-2])
    blocks = mel_blocks_cached((sr, n_fft, n_mels, fmin, fmax, htk, norm), basis_dtype, str(St.device), n_groups)
    if basis_dtype != St.dtype:
        blocks = tuple((c0, c1, w.to(St.dtype)) for c0, c1, w in blocks)
    return blocks


@dataclass(frozen=True)
class _MelPlan:
    n_fft: int
    hop_length: int
    center: bool
    pad_mode: str
    window: torch.Tensor
    blocks: MelBlocks
    np_blocks: tuple[tuple[int, int, int, int, np.ndarray], ...] = ()  # CPU plans: numpy views of the blocks,
    # (c0, c1, first mel, last mel + 1, weights)
    native: MelKernelPlan | None = None  # CPU float32 plans when the native kernel covers them


#: frames per FFT block: keeps the windowed frames, spectrum and squares in cache for long inputs
_FRAME_BLOCK = 384


@functools.lru_cache(maxsize=128)
def _mel_plan(sr: float, n_fft: Any, hop_length: Any, win_length: Any, window: Any, center: bool, pad_mode: str,
              n_mels: int, fmin: float, fmax: float | None, htk: bool, norm: Any, basis_dtype: torch.dtype,
              dtype: torch.dtype, device: str) -> _MelPlan:
    n_fft, hop_length, win_length = resolve_frame_params(n_fft, hop_length, win_length)
    check_pad_mode(pad_mode, center)
    win = stft_window(window, win_length, n_fft, dtype=dtype, device=device)
    probe = torch.empty((0, _FRAME_BLOCK, 1), dtype=dtype, device=device)
    blocks = _mel_blocks(sr, n_fft, n_mels, fmin, fmax, htk, norm, basis_dtype, probe)
    if device != "cpu":
        return _MelPlan(n_fft, hop_length, bool(center), pad_mode, win, blocks)
    np_blocks, first = [], 0
    for c0, c1, w in blocks:
        np_blocks.append((c0, c1, first, first + w.shape[1], w.numpy()))
        first += w.shape[1]
    native = None
    if dtype == torch.float32 and basis_dtype == torch.float32:
        basis = mel_filterbank_tensor(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm,
                                      dtype=torch.float32, device="cpu")
        native = kernel_plan(n_fft, win.numpy(), basis.numpy())
    return _MelPlan(n_fft, hop_length, bool(center), pad_mode, win, blocks, tuple(np_blocks), native)


def _mel_native(y: torch.Tensor, plan: _MelPlan) -> np.ndarray | None:
    """The whole chain in the native kernel (:mod:`audioforge.features.native`) for float32 CPU input: frames cut
    (and padded) as the torch path cuts them, then one kernel call per channel. ``(..., n_mels, t)`` numpy, or None
    when the kernel does not apply."""
    if plan.native is None:  # plans are per dtype and device: only CPU float32 ones have a kernel
        return None
    frames = frame_signal(y, n_fft=plan.n_fft, hop_length=plan.hop_length, center=plan.center,
                          pad_mode=plan.pad_mode)
    n = frames.shape[-2]
    if n == 0 or frames.stride(-1) != 1 or frames.stride(-2) != plan.hop_length:
        return None
    lead = tuple(frames.shape[:-2])
    out = np.empty((*lead, plan.native.n_mels, n), dtype=np.float32)
    if not lead:
        mel_power(frames.data_ptr(), n, plan.hop_length, plan.native, out)
        return out
    for idx in np.ndindex(*lead):
        mel_power(frames[idx].data_ptr(), n, plan.hop_length, plan.native, out[idx])
    return out


def _mel_power2(y: torch.Tensor, plan: _MelPlan) -> torch.Tensor:
    """Time-major mel power spectrogram ``(..., t, n_mels)``: frames -> window -> rfft -> re^2 + im^2 -> mel.

    The squares are taken on the interleaved real view of the spectrum (one contiguous op, no complex
    arithmetic), the pairs summed into a contiguous power array (so the block-sparse mel product slices it without
    copies), and frames go through in cache-sized blocks. Measured faster than complex multiplication, than
    ``abs()**2`` and than a row-duplicated mel basis on the interleaved squares.
    """
    frames = frame_signal(y, n_fft=plan.n_fft, hop_length=plan.hop_length, center=plan.center,
                          pad_mode=plan.pad_mode)
    n = frames.shape[-2]
    outs = []
    for t0 in range(0, n, _FRAME_BLOCK):
        spec = torch.view_as_real(torch.fft.rfft(frames[..., t0 : t0 + _FRAME_BLOCK, :] * plan.window, dim=-1))
        sq = spec * spec
        outs.append(apply_mel_blocks(sq[..., 0] + sq[..., 1], plan.blocks))
    if not outs:  # zero frames (only with center=False, which frame_signal rejects): keep the shape
        return frames.new_zeros((*frames.shape[:-1], sum(w.shape[1] for _, _, w in plan.blocks)))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)


def _mel_power2_numpy(y: torch.Tensor, plan: _MelPlan) -> np.ndarray | None:
    """:func:`_mel_power2` for CPU callers (numpy arrays, tensors outside autograd) with up to ``_FRAME_BLOCK`` frames.

    For a short clip the dozen torch dispatches of the general path cost more than its arithmetic (1 s at 16 kHz:
    208 -> ~160 us). Framing, padding (the torch path's validation and pad modes), the window product and the FFT
    are torch's; the squares and the block-sparse mel product are numpy's. Returns None (use the general path) for
    longer inputs, whose blocks are better kept in torch.
    """
    if not plan.np_blocks or y.device.type != "cpu":
        return None
    frames = frame_signal(y, n_fft=plan.n_fft, hop_length=plan.hop_length, center=plan.center,
                          pad_mode=plan.pad_mode)
    n = frames.shape[-2]
    if n == 0 or n > _FRAME_BLOCK:
        return None
    # the window product in torch: the frames are an overlapping strided view, which numpy multiplies row by row
    # (81 x 800 at 16 kHz: 17 us in numpy, ~5 us in torch) while torch writes a contiguous result the FFT reads
    ri = torch.view_as_real(torch.fft.rfft(frames * plan.window, dim=-1)).numpy()
    np.multiply(ri, ri, out=ri)
    power = np.add(ri[..., 0], ri[..., 1])
    out = np.empty((*power.shape[:-1], plan.np_blocks[-1][3]), dtype=power.dtype)
    for c0, c1, m0, m1, w in plan.np_blocks:
        np.matmul(power[..., c0:c1], w, out=out[..., m0:m1])
    return out


_MAX_REFS = (np.max, np.amax, torch.max, torch.amax, max)


def _ref_value(ref: Any, magnitude: torch.Tensor) -> torch.Tensor:
    if isinstance(ref, str):
        if ref != "max":
            raise InvalidParameterError(f"ref={ref!r}; use a number, 'max', or a callable such as np.max")
        return magnitude.amax()
    if callable(ref):
        if ref in _MAX_REFS:
            return magnitude.amax()
        value = ref(magnitude)
        return torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value,
                               dtype=magnitude.dtype, device=magnitude.device)
    return torch.as_tensor(abs(check_finite_number(ref, "ref")), dtype=magnitude.dtype, device=magnitude.device)


def _to_db(magnitude: torch.Tensor, ref_value: torch.Tensor, amin: float, top_db: float | None) -> torch.Tensor:
    amin_t = torch.as_tensor(amin, dtype=magnitude.dtype, device=magnitude.device)
    log_spec = 10.0 * torch.log10(torch.maximum(magnitude, amin_t))
    log_spec = log_spec - 10.0 * torch.log10(torch.maximum(ref_value, amin_t))
    if top_db is not None:
        log_spec = torch.maximum(log_spec, log_spec.amax() - top_db)
    return log_spec


def _db_args(amin: Any, top_db: Any) -> tuple[float, float | None]:
    amin = check_finite_number(amin, "amin")
    if amin <= 0:
        raise InvalidParameterError(f"amin must be strictly positive, got {amin}")
    if top_db is not None:
        top_db = check_finite_number(top_db, "top_db")
        if top_db < 0:
            raise InvalidParameterError(f"top_db must be non-negative (or None to disable), got {top_db}")
    return amin, top_db


def _magnitude_input(S: Any, name: str = "S") -> tuple[torch.Tensor, Any]:
    if isinstance(S, np.ndarray) and np.iscomplexobj(S):
        S = np.abs(S)
    elif isinstance(S, torch.Tensor) and torch.is_complex(S):
        S = S.abs()
    return as_tensor(S, name=name, min_samples=0)


def power_to_db(S: Any, *, ref: Any = 1.0, amin: float = 1e-10, top_db: float | None = 80.0) -> Any:
    """``10 * log10(S / ref)`` with librosa's clamps: ``max(S, amin)``; values below ``max - top_db`` raised to it.

    The ``top_db`` floor uses the maximum over the whole input (librosa's semantics); use :class:`LogMel` with
    ``top_db_per_example=True`` for a per-example floor. ``ref`` may be a number, ``"max"``, or a callable.
    """
    amin, top_db = _db_args(amin, top_db)
    St, back = _magnitude_input(S)
    return back(_to_db(St, _ref_value(ref, St), amin, top_db))


def amplitude_to_db(S: Any, *, ref: Any = 1.0, amin: float = 1e-5, top_db: float | None = 80.0) -> Any:
    """``20 * log10(|S| / ref)`` with librosa's clamps (``power_to_db`` of ``|S|**2``, ``ref**2``, ``amin**2``)."""
    amin, top_db = _db_args(amin, top_db)
    St, back = _magnitude_input(S)
    ref_value = _ref_value(ref, St)
    return back(_to_db(St.square(), ref_value.square(), amin**2, top_db))


def db_to_power(S_db: Any, *, ref: float = 1.0) -> Any:
    """Inverse of :func:`power_to_db` (without the clamps): ``ref * 10 ** (S_db / 10)``."""
    St, back = as_tensor(S_db, name="S_db", min_samples=0)
    return back(ref * torch.pow(10.0, St * 0.1))


def db_to_amplitude(S_db: Any, *, ref: float = 1.0) -> Any:
    """Inverse of :func:`amplitude_to_db`: ``ref * 10 ** (S_db / 20)``."""
    St, back = as_tensor(S_db, name="S_db", min_samples=0)
    return back(ref * torch.pow(10.0, St * 0.05))


@functools.lru_cache(maxsize=32)
def _dct_np(n_in: int, n_out: int, dct_type: int, norm: str | None) -> np.ndarray:
    import scipy.fft

    # Column j of the identity's DCT is the DCT basis applied to e_j: the exact matrix scipy computes.
    full = scipy.fft.dct(np.eye(n_in), type=dct_type, norm=norm, axis=0)
    return np.ascontiguousarray(full[:n_out])


def dct_matrix(
    n_in: int, n_out: int | None = None, *, dct_type: int = 2, norm: str | None = "ortho",
    dtype: torch.dtype = torch.float64, device: Any = "cpu",
) -> torch.Tensor:
    """The ``(n_out, n_in)`` matrix of ``scipy.fft.dct(x, type=dct_type, norm=norm)`` truncated to ``n_out`` rows."""
    n_in = check_positive_int(n_in, "n_in")
    n_out = n_in if n_out is None else check_positive_int(n_out, "n_mfcc")
    if n_out > n_in:
        raise InvalidParameterError(f"n_mfcc={n_out} cannot exceed the number of mel bands ({n_in})")
    if dct_type not in (1, 2, 3):
        raise InvalidParameterError(f"dct_type must be 1, 2 or 3, got {dct_type!r}")
    if norm not in (None, "ortho"):
        raise InvalidParameterError(f"norm must be 'ortho' or None, got {norm!r}")
    if dct_type == 1 and n_in < 2:
        raise InvalidParameterError("a type-1 DCT needs at least 2 mel bands")
    return torch.from_numpy(_dct_np(n_in, n_out, dct_type, norm)).to(dtype=dtype, device=device)


def mfcc(
    *,
    y: Any = None,
    sr: float = 22050,
    S: Any = None,
    n_mfcc: int = 20,
    dct_type: int = 2,
    norm: str | None = "ortho",
    lifter: float = 0,
    mel_norm: str | float | None = "slaney",
    **kwargs: Any,
) -> Any:
    """Mel-frequency cepstral coefficients, equal to ``librosa.feature.mfcc``; shape ``(..., n_mfcc, t)``.

    ``S`` is a log-power mel spectrogram (dB); without it, ``power_to_db(melspectrogram(y, sr, norm=mel_norm,
    **kwargs))`` is computed (``kwargs`` go to :func:`melspectrogram`). ``lifter > 0`` applies
    ``1 + lifter / 2 * sin(pi * (k + 1) / lifter)``.
    """
    lifter = check_finite_number(lifter, "lifter")
    if lifter < 0:
        raise InvalidParameterError(f"lifter must be a non-negative number, got {lifter}")
    if S is None:
        if y is None:
            raise InvalidParameterError("pass either y (samples) or S (a log-power mel spectrogram)")
        yt, back = as_tensor(y)
        S_t = power_to_db(melspectrogram(yt, sr=sr, norm=mel_norm, **kwargs))
    else:
        S_t, back = as_tensor(S, name="S", min_samples=0)
        if S_t.dim() < 2:
            raise InvalidParameterError(f"S must have shape (..., n_mels, t), got {tuple(S_t.shape)}")
    D = dct_matrix(S_t.shape[-2], n_mfcc, dct_type=dct_type, norm=norm, dtype=S_t.dtype, device=S_t.device)
    M = torch.matmul(D, S_t)
    if lifter > 0:
        k = torch.arange(1, 1 + n_mfcc, dtype=M.dtype, device=M.device)
        M = M * (1.0 + (lifter / 2.0) * torch.sin(torch.pi * k / lifter))[:, None]
    return back(M)
