"""Kaldi-exact filterbank (fbank) and MFCC features, batched and differentiable.

The semantics follow Kaldi's ``compute-fbank-feats`` / ``compute-mfcc-feats`` (as re-implemented by
kaldi-native-fbank), with the keyword names and defaults of ``torchaudio.compliance.kaldi.fbank`` / ``mfcc``.
Unlike torchaudio, inputs may carry leading batch axes ``(..., n)``.

Per frame, in order: dither (Gaussian noise times ``dither``), DC-offset removal, raw log energy, pre-emphasis
(the first sample uses itself as predecessor), window, zero padding on the right to the FFT size, power spectrum,
mel filterbank built in the mel domain (``1127 ln(1 + f / 700)``, Nyquist bin unused), natural log floored at
float32 epsilon. Energy is floored at ``energy_floor`` and placed first (or last with ``htk_compat``).

All the steps between the frame and the spectrum are linear, so they can also be folded into one matrix applied
with a single matmul (``use_matmul_dft``): that path exports to ONNX, has no complex tensors and is the fast path
for one frame at a time (streaming, see :mod:`audioforge.features.kaldi_stream`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ..audio import validate_audio
from ..errors import InvalidParameterError, UnsupportedSampleRateError
from ._io import as_tensor, check_finite_number, check_positive_int
from .dft import rdft_basis
from .windows import get_window

__all__ = [
    "KaldiFbank",
    "KaldiOptions",
    "inverse_mel_scale",
    "kaldi_fbank",
    "kaldi_mel_banks",
    "kaldi_mfcc",
    "kaldi_num_frames",
    "kaldi_window",
    "mel_scale",
    "vtln_warp_freq",
]

EPSILON = float(np.finfo(np.float32).eps)
WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "blackman")


# ----------------------------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class KaldiOptions:
    """Validated fbank options with the derived frame geometry (hashable, so constants can be cached per option set).

    Build it with :meth:`KaldiOptions.create`, which checks every value and raises
    :class:`~audioforge.errors.InvalidParameterError` with a hint when one is unusable.
    """

    sample_frequency: float
    window_size: int
    window_shift: int
    padded_size: int
    snip_edges: bool
    dither: float
    remove_dc_offset: bool
    preemphasis_coefficient: float
    window_type: str
    blackman_coeff: float
    num_mel_bins: int
    low_freq: float
    high_freq: float
    vtln_low: float
    vtln_high: float
    vtln_warp: float
    use_energy: bool
    raw_energy: bool
    energy_floor: float
    htk_compat: bool
    use_log_fbank: bool
    use_power: bool
    subtract_mean: bool
    min_duration: float

    @property
    def num_fft_bins(self) -> int:
        """Number of one-sided spectrum bins, ``padded_size // 2 + 1`` (the last one, Nyquist, gets weight 0)."""
        return self.padded_size // 2 + 1

    @property
    def feature_dim(self) -> int:
        """Columns of the output: ``num_mel_bins`` plus one when ``use_energy``."""
        return self.num_mel_bins + int(self.use_energy)

    @property
    def energy_index(self) -> int:
        """Column of the log energy (0, or the last with ``htk_compat``); -1 when ``use_energy`` is False."""
        if not self.use_energy:
            return -1
        return self.num_mel_bins if self.htk_compat else 0

    @staticmethod
    def create(
        *,
        blackman_coeff: float = 0.42,
        dither: float = 0.0,
        energy_floor: float = 1.0,
        frame_length: float = 25.0,
        frame_shift: float = 10.0,
        high_freq: float = 0.0,
        htk_compat: bool = False,
        low_freq: float = 20.0,
        min_duration: float = 0.0,
        num_mel_bins: int = 23,
        preemphasis_coefficient: float = 0.97,
        raw_energy: bool = True,
        remove_dc_offset: bool = True,
        round_to_power_of_two: bool = True,
        sample_frequency: float = 16000.0,
        snip_edges: bool = True,
        subtract_mean: bool = False,
        use_energy: bool = False,
        use_log_fbank: bool = True,
        use_power: bool = True,
        vtln_high: float = -500.0,
        vtln_low: float = 100.0,
        vtln_warp: float = 1.0,
        window_type: str = "povey",
    ) -> KaldiOptions:
        """Validate the torchaudio-style keyword options and derive the frame geometry."""
        sr = _check_sample_frequency(sample_frequency)
        frame_length = check_finite_number(frame_length, "frame_length")
        frame_shift = check_finite_number(frame_shift, "frame_shift")
        window_size = int(sr * 0.001 * frame_length)  # Kaldi's truncation, in its order of operations
        window_shift = int(sr * 0.001 * frame_shift)
        if window_size < 2:
            raise InvalidParameterError(
                f"frame_length={frame_length} ms gives {window_size} samples at {sr:g} Hz; a frame needs at least 2 "
                "samples: use a positive frame_length in milliseconds (for example 25.0)"
            )
        if window_shift < 1:
            raise InvalidParameterError(
                f"frame_shift={frame_shift} ms gives {window_shift} samples at {sr:g} Hz; use a positive frame_shift "
                "in milliseconds (for example 10.0)"
            )
        padded = _next_power_of_two(window_size) if round_to_power_of_two else window_size
        if padded % 2:
            raise InvalidParameterError(
                f"the FFT size is {padded} samples, which is odd; Kaldi needs an even size: set "
                "round_to_power_of_two=True or a frame_length giving an even number of samples"
            )
        if not isinstance(window_type, str) or window_type not in WINDOW_TYPES:
            raise InvalidParameterError(f"unknown window_type {window_type!r}; use one of {list(WINDOW_TYPES)}")
        preemph = check_finite_number(preemphasis_coefficient, "preemphasis_coefficient")
        if not 0.0 <= preemph <= 1.0:
            raise InvalidParameterError(
                f"preemphasis_coefficient={preemph} is outside [0, 1]; use 0.97 (Kaldi's default) or 0 to disable it"
            )
        dither = check_finite_number(dither, "dither", minimum=0.0)
        energy_floor = check_finite_number(energy_floor, "energy_floor", minimum=0.0)
        min_duration = check_finite_number(min_duration, "min_duration", minimum=0.0)
        blackman_coeff = check_finite_number(blackman_coeff, "blackman_coeff")
        num_mel_bins = check_positive_int(num_mel_bins, "num_mel_bins", minimum=3)
        low, high = _resolve_band(low_freq, high_freq, sr)
        vtln_warp = check_finite_number(vtln_warp, "vtln_warp")
        if vtln_warp <= 0:
            raise InvalidParameterError(f"vtln_warp={vtln_warp} must be > 0 (1.0 means no warping)")
        vtln_low = check_finite_number(vtln_low, "vtln_low")
        vtln_high = check_finite_number(vtln_high, "vtln_high")
        if vtln_warp != 1.0:
            _check_vtln(vtln_low, vtln_high, low, high, sr)
        opts = KaldiOptions(
            sample_frequency=sr,
            window_size=window_size,
            window_shift=window_shift,
            padded_size=padded,
            snip_edges=_check_bool(snip_edges, "snip_edges"),
            dither=dither,
            remove_dc_offset=_check_bool(remove_dc_offset, "remove_dc_offset"),
            preemphasis_coefficient=preemph,
            window_type=window_type,
            blackman_coeff=blackman_coeff,
            num_mel_bins=num_mel_bins,
            low_freq=low,
            high_freq=high,
            vtln_low=vtln_low,
            vtln_high=vtln_high,
            vtln_warp=vtln_warp,
            use_energy=_check_bool(use_energy, "use_energy"),
            raw_energy=_check_bool(raw_energy, "raw_energy"),
            energy_floor=energy_floor,
            htk_compat=_check_bool(htk_compat, "htk_compat"),
            use_log_fbank=_check_bool(use_log_fbank, "use_log_fbank"),
            use_power=_check_bool(use_power, "use_power"),
            subtract_mean=_check_bool(subtract_mean, "subtract_mean"),
            min_duration=min_duration,
        )
        _check_bins_not_empty(opts)
        return opts


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_sample_frequency(sample_frequency: Any) -> float:
    if (
        isinstance(sample_frequency, bool)
        or not isinstance(sample_frequency, (int, float, np.integer, np.floating))
        or not np.isfinite(sample_frequency)
        or sample_frequency <= 0
    ):
        raise UnsupportedSampleRateError(
            f"sample_frequency must be a positive number of Hz, got {sample_frequency!r}; pass e.g. 16000.0"
        )
    return float(sample_frequency)


def _next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _resolve_band(low_freq: Any, high_freq: Any, sample_frequency: float) -> tuple[float, float]:
    """Return the absolute (low, high) band edges; ``high_freq <= 0`` is an offset from Nyquist."""
    low = check_finite_number(low_freq, "low_freq")
    high = check_finite_number(high_freq, "high_freq")
    nyquist = 0.5 * sample_frequency
    high_abs = high if high > 0.0 else nyquist + high
    if not (0.0 <= low < nyquist and 0.0 < high_abs <= nyquist and low < high_abs):
        raise InvalidParameterError(
            f"low_freq={low:g} Hz and high_freq={high:g} Hz (= {high_abs:g} Hz) do not form a band inside "
            f"(0, {nyquist:g}] Hz, the Nyquist band at {sample_frequency:g} Hz: use 0 <= low_freq < high_freq <= "
            "Nyquist (high_freq <= 0 counts down from Nyquist)"
        )
    return low, high_abs


def _check_vtln(vtln_low: float, vtln_high: float, low: float, high: float, sample_frequency: float) -> None:
    vhigh = vtln_high + 0.5 * sample_frequency if vtln_high < 0 else vtln_high
    if vtln_low < 0 or vtln_low <= low or vtln_low >= high or vhigh <= 0 or vhigh >= high or vhigh <= vtln_low:
        raise InvalidParameterError(
            f"vtln_low={vtln_low:g} Hz and vtln_high={vtln_high:g} Hz (= {vhigh:g} Hz) must satisfy low_freq < "
            f"vtln_low < vtln_high < high_freq ({low:g} .. {high:g} Hz); negative vtln_high counts down from Nyquist"
        )


def _check_bins_not_empty(opts: KaldiOptions) -> None:
    banks = _mel_banks_f64(
        opts.num_mel_bins,
        opts.padded_size,
        opts.sample_frequency,
        opts.low_freq,
        opts.high_freq,
        opts.vtln_low,
        opts.vtln_high,
        opts.vtln_warp,
    )
    empty = np.flatnonzero(~(banks > 0).any(axis=1))
    if empty.size:
        raise InvalidParameterError(
            f"mel bin(s) {empty.tolist()} contain no FFT bin with num_mel_bins={opts.num_mel_bins} and an FFT of "
            f"{opts.padded_size} points; use fewer mel bins, a wider low_freq..high_freq band or a longer frame_length"
        )


# ----------------------------------------------------------------------------------------------------------------
# Mel scale, VTLN, mel banks, windows


def mel_scale(freq: Any) -> Any:
    """Kaldi's mel scale ``1127 ln(1 + f / 700)`` (works on floats, numpy arrays and tensors)."""
    if isinstance(freq, torch.Tensor):
        return 1127.0 * torch.log(1.0 + freq / 700.0)
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def inverse_mel_scale(mel: Any) -> Any:
    """Inverse of :func:`mel_scale`: ``700 (exp(m / 1127) - 1)``."""
    if isinstance(mel, torch.Tensor):
        return 700.0 * (torch.exp(mel / 1127.0) - 1.0)
    return 700.0 * (np.exp(np.asarray(mel, dtype=np.float64) / 1127.0) - 1.0)


def vtln_warp_freq(
    freq: np.ndarray, *, vtln_low: float, vtln_high: float, low_freq: float, high_freq: float, warp: float
) -> np.ndarray:
    """Kaldi's piecewise-linear VTLN frequency warp (float64 numpy).

    The warp is the identity outside ``[low_freq, high_freq]``, fixes both ends, and is ``f / warp`` between two
    inflection points ``l = vtln_low * max(1, warp)`` and ``h = vtln_high * min(1, warp)``, with straight lines
    joining them to the band edges. ``vtln_high`` must already be absolute (positive) here.
    """
    f = np.asarray(freq, dtype=np.float64)
    lo_knee = vtln_low * max(1.0, warp)
    hi_knee = vtln_high * min(1.0, warp)
    scale = 1.0 / warp
    slope_left = (scale * lo_knee - low_freq) / (lo_knee - low_freq)
    slope_right = (high_freq - scale * hi_knee) / (high_freq - hi_knee)
    out = np.where(
        f < lo_knee,
        low_freq + slope_left * (f - low_freq),
        np.where(f < hi_knee, scale * f, high_freq + slope_right * (f - high_freq)),
    )
    return np.where((f < low_freq) | (f > high_freq), f, out)


def _mel_banks_f64(
    num_bins: int,
    n_fft: int,
    sample_frequency: float,
    low_freq: float,
    high_freq: float,
    vtln_low: float,
    vtln_high: float,
    vtln_warp: float,
) -> np.ndarray:
    """Kaldi mel triangles, float64, shape ``(num_bins, n_fft // 2)`` (no Nyquist column). Band already absolute."""
    nyquist = 0.5 * sample_frequency
    mel_low, mel_high = float(mel_scale(low_freq)), float(mel_scale(high_freq))
    delta = (mel_high - mel_low) / (num_bins + 1)
    edges = mel_low + np.arange(num_bins + 2, dtype=np.float64) * delta  # left/centre/right of every bin
    if vtln_warp != 1.0:
        vhigh = vtln_high + nyquist if vtln_high < 0 else vtln_high
        hz = vtln_warp_freq(
            inverse_mel_scale(edges),
            vtln_low=vtln_low,
            vtln_high=vhigh,
            low_freq=low_freq,
            high_freq=high_freq,
            warp=vtln_warp,
        )
        edges = mel_scale(hz)
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fft_mel = mel_scale((sample_frequency / n_fft) * np.arange(n_fft // 2, dtype=np.float64))[None, :]
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    weights = np.where(fft_mel <= center, up, down)
    return np.where((fft_mel > left) & (fft_mel < right), weights, 0.0)


def kaldi_mel_banks(
    num_bins: int,
    n_fft: int,
    sample_frequency: float,
    low_freq: float,
    high_freq: float,
    *,
    vtln_low: float = 100.0,
    vtln_high: float = -500.0,
    vtln_warp: float = 1.0,
    include_nyquist: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Kaldi's triangular mel filterbank as a ``(num_bins, n_fft // 2 + 1)`` matrix (Nyquist column zero).

    Built in float64 in the mel domain (``1127 ln(1 + f / 700)``): bin ``b`` spans mel edges
    ``mel(low) + (b, b + 1, b + 2) * delta`` with ``delta = (mel(high) - mel(low)) / (num_bins + 1)``, and FFT bin
    ``i`` (centre ``i * sample_frequency / n_fft``) gets the triangle's height, strictly inside the edges.

    Parameters
    ----------
    num_bins
        Number of mel bins (>= 3, as in Kaldi).
    n_fft
        FFT size (the padded window length, even).
    sample_frequency
        Sample rate in Hz.
    low_freq, high_freq
        Band edges in Hz; ``high_freq <= 0`` is an offset from Nyquist (``0`` means Nyquist).
    vtln_low, vtln_high, vtln_warp
        Kaldi VTLN: inflection cutoffs (negative ``vtln_high`` counts from Nyquist) and the warp factor
        (``1.0`` = none).
    include_nyquist
        True (default): append the all-zero Nyquist column so the matrix multiplies a full ``n_fft // 2 + 1``
        spectrum. False: ``(num_bins, n_fft // 2)`` as Kaldi and ``torchaudio.compliance.kaldi.get_mel_banks``
        return it.
    dtype, device
        Of the returned tensor.

    Examples
    --------
    PaSST's front end, ``torchaudio.compliance.kaldi.get_mel_banks(128, 1024, 32000, fmin, fmax, 100, -500)``
    padded with one zero column, is ``kaldi_mel_banks(128, 1024, 32000, fmin, fmax)``.
    """
    num_bins = check_positive_int(num_bins, "num_bins", minimum=3)
    n_fft = check_positive_int(n_fft, "n_fft", minimum=2)
    if n_fft % 2:
        raise InvalidParameterError(f"n_fft={n_fft} is odd; Kaldi mel banks need an even FFT size")
    sr = _check_sample_frequency(sample_frequency)
    low, high = _resolve_band(low_freq, high_freq, sr)
    vtln_warp = check_finite_number(vtln_warp, "vtln_warp")
    if vtln_warp <= 0:
        raise InvalidParameterError(f"vtln_warp={vtln_warp} must be > 0 (1.0 means no warping)")
    vtln_low = check_finite_number(vtln_low, "vtln_low")
    vtln_high = check_finite_number(vtln_high, "vtln_high")
    if vtln_warp != 1.0:
        _check_vtln(vtln_low, vtln_high, low, high, sr)
    banks = _mel_banks_f64(num_bins, n_fft, sr, low, high, vtln_low, vtln_high, vtln_warp)
    if include_nyquist:
        banks = np.pad(banks, ((0, 0), (0, 1)))
    return torch.from_numpy(banks).to(dtype=dtype, device=device)


def kaldi_window(
    window_type: str, window_size: int, *, blackman_coeff: float = 0.42, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Kaldi's (symmetric) analysis windows: hamming, hanning, povey (hanning ** 0.85), rectangular, blackman.

    The blackman window is ``c - 0.5 cos(2 pi n / (N - 1)) + (0.5 - c) cos(4 pi n / (N - 1))`` with
    ``c = blackman_coeff``.
    """
    if window_type not in WINDOW_TYPES:
        raise InvalidParameterError(f"unknown window_type {window_type!r}; use one of {list(WINDOW_TYPES)}")
    window_size = check_positive_int(window_size, "window_size", minimum=2)
    if window_type == "blackman":
        a = 2.0 * math.pi * torch.arange(window_size, dtype=torch.float64) / (window_size - 1)
        w = blackman_coeff - 0.5 * torch.cos(a) + (0.5 - blackman_coeff) * torch.cos(2.0 * a)
        return w.to(dtype)
    name = {"hanning": "hann", "rectangular": "rectangular"}.get(window_type, window_type)
    return get_window(name, window_size, fftbins=False, dtype=dtype)


def kaldi_num_frames(num_samples: int, window_size: int, window_shift: int, snip_edges: bool) -> int:
    """Number of frames Kaldi extracts from ``num_samples`` samples (``flush=True``).

    snip_edges=True: frames must fit, ``1 + (n - window_size) // window_shift`` (0 if too short). False: ``n``
    rounded to the nearest multiple of the shift, ``(n + window_shift // 2) // window_shift``.
    """
    if snip_edges:
        return 0 if num_samples < window_size else 1 + (num_samples - window_size) // window_shift
    return (num_samples + window_shift // 2) // window_shift


# ----------------------------------------------------------------------------------------------------------------
# Constant tensors (cached per option set and dtype)


@dataclass(frozen=True)
class _Constants:
    window: torch.Tensor  # (L,)
    mel_fft: torch.Tensor  # (F, D): mel weights with a zero column at the energy index
    fused_basis: torch.Tensor  # (L, 2F): DC removal + preemphasis + window + zero padding + real DFT (if needed)
    mel_fused: torch.Tensor  # (2F, D): mel_fft stacked twice (re^2 and im^2 rows); Parseval energy column if needed
    mel_interleaved: torch.Tensor  # (2F, D): every row of mel_fft twice, for interleaved (re^2, im^2)
    energy_onehot: torch.Tensor  # (D,): 1 at the energy column
    floor: torch.Tensor  # (D,): lower bound before the log (eps for mel bins, max(eps, energy_floor) for energy)
    log_mask: torch.Tensor  # (D,) bool: columns that get the log

    def to(self, device: torch.device) -> _Constants:
        if self.window.device == device:
            return self
        return _Constants(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def _fused_basis_f64(opts: KaldiOptions) -> torch.Tensor:
    """``(L, 2F)`` float64 ``A``: ``frame @ A`` is the rfft of the DC-removed, preemphasized, windowed, padded frame.

    Built right to left in O(L F): window the DFT rows, then apply the transposed preemphasis (row ``j`` receives
    ``-coef`` times row ``j + 1``; row 0 also ``-coef`` times itself), then the transposed centering (subtract
    the column means).
    """
    size = opts.window_size
    window = kaldi_window(opts.window_type, size, blackman_coeff=opts.blackman_coeff)
    a = rdft_basis(opts.padded_size, dtype=torch.float64)[:size] * window[:, None]
    coef = opts.preemphasis_coefficient
    if coef != 0.0:
        pre = a.clone()
        pre[:-1] -= coef * a[1:]
        pre[0] -= coef * a[0]
        a = pre
    if opts.remove_dc_offset:
        a = a - a.mean(dim=0, keepdim=True)
    return a


@lru_cache(maxsize=64)
def _constants_cpu(opts: KaldiOptions, dtype: torch.dtype, fused: bool = False) -> _Constants:
    n_freq = opts.num_fft_bins
    dim, e = opts.feature_dim, opts.energy_index
    mel = kaldi_mel_banks(
        opts.num_mel_bins,
        opts.padded_size,
        opts.sample_frequency,
        opts.low_freq,
        opts.high_freq,
        vtln_low=opts.vtln_low,
        vtln_high=opts.vtln_high,
        vtln_warp=opts.vtln_warp,
        dtype=torch.float64,
    ).T  # (F, bins)
    mel_cols = [c for c in range(dim) if c != e]
    mel_fft = torch.zeros(n_freq, dim, dtype=torch.float64)
    mel_fft[:, mel_cols] = mel
    mel_fused = torch.cat([mel_fft, mel_fft], dim=0)
    if opts.use_energy and not opts.raw_energy:
        # Parseval: the energy of the padded windowed frame from its one-sided spectrum.
        weights = torch.full((n_freq,), 2.0, dtype=torch.float64)
        weights[0] = 1.0
        weights[-1] = 1.0  # Nyquist (the FFT size is even)
        weights /= opts.padded_size
        mel_fused[:, e] = torch.cat([weights, weights])
    basis = _fused_basis_f64(opts) if fused else torch.zeros(0, 2 * n_freq, dtype=torch.float64)
    onehot = torch.zeros(dim, dtype=torch.float64)
    floor = torch.full((dim,), EPSILON, dtype=torch.float64)
    log_mask = torch.full((dim,), opts.use_log_fbank, dtype=torch.bool)
    if e >= 0:
        onehot[e] = 1.0
        floor[e] = max(EPSILON, opts.energy_floor)
        log_mask[e] = True
    window = kaldi_window(opts.window_type, opts.window_size, blackman_coeff=opts.blackman_coeff)
    return _Constants(
        window=window.to(dtype),
        mel_fft=mel_fft.to(dtype),
        fused_basis=basis.to(dtype),
        mel_fused=mel_fused.to(dtype),
        mel_interleaved=mel_fft.repeat_interleave(2, dim=0).to(dtype),
        energy_onehot=onehot.to(dtype),
        floor=floor.to(dtype),
        log_mask=log_mask,
    )


def _constants(opts: KaldiOptions, dtype: torch.dtype, device: torch.device, fused: bool = False) -> _Constants:
    return _constants_cpu(opts, dtype, fused).to(device)


# ----------------------------------------------------------------------------------------------------------------
# Framing and per-frame computation


def _reflect_indices(positions: np.ndarray, n: int) -> np.ndarray:
    """Map sample positions outside ``[0, n)`` back inside by Kaldi's repeated symmetric reflection."""
    p = positions.astype(np.int64).copy()
    while True:
        low, high = p < 0, p >= n
        if not (low.any() or high.any()):
            return p
        p = np.where(low, -p - 1, np.where(high, 2 * n - 1 - p, p))


def frame_signal(x: torch.Tensor, window_size: int, window_shift: int, snip_edges: bool) -> torch.Tensor:
    """Cut ``x`` of shape ``(..., n)`` into Kaldi frames ``(..., num_frames, window_size)``.

    With ``snip_edges=False`` frame ``f`` is centred on ``f * shift + shift // 2`` and samples beyond either end are
    reflected symmetrically (``x[-1] = x[0]``), repeatedly for very short signals, as Kaldi does.
    """
    n = x.shape[-1]
    num = kaldi_num_frames(n, window_size, window_shift, snip_edges)
    if num == 0:
        return x.new_zeros((*x.shape[:-1], 0, window_size))
    if snip_edges:
        return x.unfold(-1, window_size, window_shift)[..., :num, :]
    start = window_shift // 2 - window_size // 2
    end = (num - 1) * window_shift + start + window_size
    parts = []
    if start < 0:
        left = _reflect_indices(np.arange(start, min(0, end)), n)
        parts.append(x[..., torch.from_numpy(left).to(x.device)])
    if min(end, n) > max(start, 0):
        parts.append(x[..., max(start, 0) : min(end, n)])
    if end > n:
        right = _reflect_indices(np.arange(max(n, start), end), n)
        parts.append(x[..., torch.from_numpy(right).to(x.device)])
    padded = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
    return padded.unfold(-1, window_size, window_shift)


def _frame_by_gather(x: torch.Tensor, opts: KaldiOptions) -> torch.Tensor:
    """Frames of ``x`` ``(B, n)`` with ``n >= window_size`` by an index gather whose size follows ``n`` symbolically.

    Used by the matmul module path: ``Tensor.unfold`` does not export to ONNX with a dynamic length, a gather does.
    With ``snip_edges=False`` the edges are mirrored with ``flip`` (one reflection suffices once n >= window_size).
    """
    size, shift = opts.window_size, opts.window_shift
    n = x.shape[-1]
    if opts.snip_edges:
        num = (n - size) // shift + 1
        offset = 0
    else:
        start = shift // 2 - size // 2
        left = max(0, -start)
        x = torch.cat([x[:, :left].flip(-1), x, x[:, n - (size + 1) // 2 :].flip(-1)], dim=-1)
        num = (n + shift // 2) // shift
        offset = start + left
    steps = torch.arange(num, device=x.device) * shift + offset
    index = steps[:, None] + torch.arange(size, device=x.device)[None, :]
    return x[:, index]


def _add_dither(frames: torch.Tensor, dither: float, generator: torch.Generator | None) -> torch.Tensor:
    noise = torch.randn(frames.shape, generator=generator, dtype=frames.dtype, device=frames.device)
    return frames + dither * noise


def _raw_energy(frames: torch.Tensor, remove_dc_offset: bool) -> torch.Tensor:
    """Sum of squares of each frame after DC removal (before preemphasis and window)."""
    if remove_dc_offset:
        return frames.var(dim=-1, correction=0) * frames.shape[-1]
    return (frames * frames).sum(-1)


def frame_mean(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Per-frame mean ``(..., 1)`` for DC removal, accumulated in float64 and rounded once to the frames' dtype.

    A float32 sum's last bit depends on the summation order (torch's vectorised reduction, numpy's pairwise one),
    and in a weak high band one ulp of the mean moves the log energy by up to ~1e-2. Accumulating in float64 makes
    the rounded mean independent of the order, so a one-frame streaming path computes the same bits.
    (MPS has no float64; there the sum stays in the frames' dtype.)
    """
    if frames.dtype == torch.float64 or frames.device.type == "mps":
        return frames.sum(dim=-1, keepdim=True) / size
    return (frames.sum(dim=-1, keepdim=True, dtype=torch.float64) / size).to(frames.dtype)


def _spectrum_fft(
    frames: torch.Tensor, opts: KaldiOptions, const: _Constants
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Kaldi's steps one by one with ``torch.fft.rfft``: returns (mel-ready spectrum, energy or None).

    With ``use_power`` the spectrum is ``(re^2, im^2)`` interleaved, ``(..., 2F)``, to be multiplied by the
    row-duplicated mel matrix (saving the addition); otherwise it is the magnitude ``(..., F)``.
    """
    x = frames
    if opts.remove_dc_offset:
        x = x - frame_mean(x, opts.window_size)
    energy = (x * x).sum(-1) if opts.use_energy and opts.raw_energy else None
    coef = opts.preemphasis_coefficient
    if coef != 0.0:
        # x[i] - coef * x[i - 1], with x[-1] := x[0] (Kaldi's first-sample rule)
        previous = torch.nn.functional.pad(x, (1, 0), mode="replicate")[..., :-1]
        x = torch.sub(x, previous, alpha=coef)
    x = x * const.window
    if opts.use_energy and not opts.raw_energy:
        energy = (x * x).sum(-1)
    spec = torch.view_as_real(torch.fft.rfft(x, n=opts.padded_size, dim=-1))
    squares = spec * spec
    if opts.use_power:
        return squares.flatten(-2), energy
    return squares.sum(-1).sqrt(), energy


def compute_frames(
    frames: torch.Tensor,
    opts: KaldiOptions,
    const: _Constants,
    *,
    fused: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Features of already-extracted frames ``(..., T, window_size)`` -> ``(..., T, feature_dim)``.

    ``fused=True`` applies DC removal, preemphasis, window, padding and the DFT as one matmul (ONNX-exportable,
    fastest for few frames); ``fused=False`` does each step and uses ``torch.fft.rfft``.
    """
    if frames.shape[-2] == 0:
        return frames.new_zeros((*frames.shape[:-1], opts.feature_dim))
    if opts.dither != 0.0:
        frames = _add_dither(frames, opts.dither, generator)
    energy = None
    if fused:
        if opts.use_energy and opts.raw_energy:
            energy = _raw_energy(frames, opts.remove_dc_offset)
        y = frames @ const.fused_basis
        y = y * y
        if opts.use_power:
            out = y @ const.mel_fused  # re^2 and im^2 rows share the mel weights; may hold the Parseval energy
        else:
            half = y.shape[-1] // 2
            power = y[..., :half] + y[..., half:]
            out = power.sqrt() @ const.mel_fft
            if opts.use_energy and not opts.raw_energy:
                energy = power @ const.mel_fused[:half, opts.energy_index]
    else:
        spec, energy = _spectrum_fft(frames, opts, const)
        out = spec @ (const.mel_interleaved if opts.use_power else const.mel_fft)
    if energy is not None:
        out = torch.addcmul(out, energy.unsqueeze(-1), const.energy_onehot)
    if opts.use_log_fbank:
        return torch.log(torch.maximum(out, const.floor))
    if opts.use_energy:
        return torch.where(const.log_mask, torch.log(torch.maximum(out, const.floor)), out)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Public functional API


def _fbank_impl(waveform: Any, opts: KaldiOptions, generator: torch.Generator | None, *, fused: bool = False) -> Any:
    x, back = as_tensor(waveform, name="waveform")
    if not torch.is_floating_point(x):  # pragma: no cover - validate_audio already rejects integers
        raise InvalidParameterError("waveform must hold float samples")
    in_dtype = x.dtype
    if in_dtype not in (torch.float32, torch.float64):
        x = x.float()
    lead, n = x.shape[:-1], x.shape[-1]
    if n < opts.min_duration * opts.sample_frequency:
        return back(x.new_zeros((*lead, 0, opts.feature_dim)).to(in_dtype))
    const = _constants(opts, x.dtype, x.device, fused)
    frames = frame_signal(x.reshape(-1, n), opts.window_size, opts.window_shift, opts.snip_edges)
    feats = compute_frames(frames, opts, const, fused=fused, generator=generator)
    if opts.subtract_mean and feats.shape[-2] > 0:
        feats = feats - feats.mean(dim=-2, keepdim=True)
    return back(feats.reshape(*lead, feats.shape[-2], opts.feature_dim).to(in_dtype))


def kaldi_fbank(
    waveform: Any,
    *,
    blackman_coeff: float = 0.42,
    dither: float = 0.0,
    energy_floor: float = 1.0,
    frame_length: float = 25.0,
    frame_shift: float = 10.0,
    high_freq: float = 0.0,
    htk_compat: bool = False,
    low_freq: float = 20.0,
    min_duration: float = 0.0,
    num_mel_bins: int = 23,
    preemphasis_coefficient: float = 0.97,
    raw_energy: bool = True,
    remove_dc_offset: bool = True,
    round_to_power_of_two: bool = True,
    sample_frequency: float = 16000.0,
    snip_edges: bool = True,
    subtract_mean: bool = False,
    use_energy: bool = False,
    use_log_fbank: bool = True,
    use_power: bool = True,
    vtln_high: float = -500.0,
    vtln_low: float = 100.0,
    vtln_warp: float = 1.0,
    window_type: str = "povey",
    generator: torch.Generator | None = None,
) -> Any:
    """Kaldi filterbank features (``compute-fbank-feats``), with torchaudio's keyword names and defaults.

    Parameters
    ----------
    waveform
        Float samples, numpy or torch, shape ``(n,)`` or ``(..., n)`` (every leading index is a separate signal).
        Kaldi recipes (WeNet, icefall) scale ``[-1, 1]`` audio by 32768 first.
    blackman_coeff
        Coefficient of the blackman window.
    dither
        Standard deviation of Gaussian noise added to every frame (0 disables; Kaldi's CLI uses 1.0 on int16
        scale). Drawn from ``generator`` when given.
    energy_floor
        Floor on the energy (absolute, not log); 0 disables it. Kaldi's default is 0, torchaudio's 1.0.
    frame_length, frame_shift
        In milliseconds.
    high_freq, low_freq
        Mel band in Hz; ``high_freq <= 0`` is an offset from Nyquist.
    htk_compat
        Put the energy last instead of first.
    min_duration
        Signals shorter than this (seconds) give zero frames.
    num_mel_bins
        Number of triangular mel bins (>= 3).
    preemphasis_coefficient
        ``x[i] -= c * x[i - 1]`` per frame, and ``x[0] -= c * x[0]``; 0 disables it.
    raw_energy
        Energy before preemphasis and window (True) or of the windowed frame (False).
    remove_dc_offset
        Subtract each frame's mean first.
    round_to_power_of_two
        Zero-pad each frame on the right to the next power of two for the FFT.
    sample_frequency
        Sample rate in Hz.
    snip_edges
        True: only frames that fit entirely (the first starts at sample 0). False: ``round(n / shift)`` frames
        centred on multiples of the shift, edges reflected.
    subtract_mean
        Subtract the mean over time of every feature column (per signal).
    use_energy
        Add the log energy as a column.
    use_log_fbank
        Natural log of the mel energies (floored at float32 epsilon).
    use_power
        Power spectrum (True) or magnitude spectrum (False).
    vtln_high, vtln_low, vtln_warp
        Kaldi VTLN piecewise-linear warp of the mel bin edges; ``vtln_warp=1`` disables it.
    window_type
        ``'povey'``, ``'hamming'``, ``'hanning'``, ``'rectangular'`` or ``'blackman'`` (all symmetric).
    generator
        Random generator for the dither.

    Returns
    -------
    numpy array or tensor (the kind given)
        Shape ``(..., num_frames, num_mel_bins + use_energy)``; float64 input gives float64 (computed in float64),
        otherwise float32 precision. Too-short input gives ``num_frames == 0`` (Kaldi's behaviour).

    Raises
    ------
    InvalidParameterError, UnsupportedSampleRateError
        An unusable option (the message says which and how to fix it).
    AudioDTypeError, AudioShapeError, EmptyAudioError, NonFiniteAudioError
        Bad samples: integers, a scalar, no samples, NaN or Inf.
    """
    opts = KaldiOptions.create(
        blackman_coeff=blackman_coeff,
        dither=dither,
        energy_floor=energy_floor,
        frame_length=frame_length,
        frame_shift=frame_shift,
        high_freq=high_freq,
        htk_compat=htk_compat,
        low_freq=low_freq,
        min_duration=min_duration,
        num_mel_bins=num_mel_bins,
        preemphasis_coefficient=preemphasis_coefficient,
        raw_energy=raw_energy,
        remove_dc_offset=remove_dc_offset,
        round_to_power_of_two=round_to_power_of_two,
        sample_frequency=sample_frequency,
        snip_edges=snip_edges,
        subtract_mean=subtract_mean,
        use_energy=use_energy,
        use_log_fbank=use_log_fbank,
        use_power=use_power,
        vtln_high=vtln_high,
        vtln_low=vtln_low,
        vtln_warp=vtln_warp,
        window_type=window_type,
    )
    return _fbank_impl(waveform, opts, generator)


@lru_cache(maxsize=32)
def _dct_lifter_f64(num_ceps: int, num_bins: int, cepstral_lifter: float) -> torch.Tensor:
    """``(num_bins, num_ceps)`` matrix: Kaldi's orthonormal DCT-II rows, each scaled by its lifter coefficient."""
    n = np.arange(num_bins, dtype=np.float64)
    k = np.arange(num_ceps, dtype=np.float64)[:, None]
    dct = np.sqrt(2.0 / num_bins) * np.cos(np.pi / num_bins * (n + 0.5) * k)
    dct[0] = np.sqrt(1.0 / num_bins)
    if cepstral_lifter != 0.0:
        dct *= 1.0 + 0.5 * cepstral_lifter * np.sin(np.pi * k / cepstral_lifter)
    return torch.from_numpy(np.ascontiguousarray(dct.T))


def kaldi_mfcc(
    waveform: Any,
    *,
    blackman_coeff: float = 0.42,
    cepstral_lifter: float = 22.0,
    dither: float = 0.0,
    energy_floor: float = 1.0,
    frame_length: float = 25.0,
    frame_shift: float = 10.0,
    high_freq: float = 0.0,
    htk_compat: bool = False,
    low_freq: float = 20.0,
    num_ceps: int = 13,
    min_duration: float = 0.0,
    num_mel_bins: int = 23,
    preemphasis_coefficient: float = 0.97,
    raw_energy: bool = True,
    remove_dc_offset: bool = True,
    round_to_power_of_two: bool = True,
    sample_frequency: float = 16000.0,
    snip_edges: bool = True,
    subtract_mean: bool = False,
    use_energy: bool = False,
    vtln_high: float = -500.0,
    vtln_low: float = 100.0,
    vtln_warp: float = 1.0,
    window_type: str = "povey",
    generator: torch.Generator | None = None,
) -> Any:
    """Kaldi MFCCs (``compute-mfcc-feats``), with ``torchaudio.compliance.kaldi.mfcc``'s keywords and defaults.

    The log mel energies (power spectrum, floored at float32 epsilon) go through Kaldi's DCT (orthonormal DCT-II:
    row 0 is ``sqrt(1/M)``, row ``k`` is ``sqrt(2/M) cos(pi k (m + 0.5) / M)``), keep ``num_ceps`` coefficients,
    and are liftered by ``1 + Q/2 sin(pi k / Q)`` (``Q = cepstral_lifter``; 0 disables it). With ``use_energy``
    the log energy replaces c0. With ``htk_compat`` c0 (or the energy) moves last; without ``use_energy`` it is
    scaled by sqrt(2) there. Note: like torchaudio, ``use_energy`` defaults to False and ``energy_floor`` to 1.0
    (the Kaldi binary defaults are True and 0.0).

    Other parameters are as in :func:`kaldi_fbank`. Returns shape ``(..., num_frames, num_ceps)``.
    """
    num_ceps = check_positive_int(num_ceps, "num_ceps")
    cepstral_lifter = check_finite_number(cepstral_lifter, "cepstral_lifter")
    if num_ceps > check_positive_int(num_mel_bins, "num_mel_bins", minimum=3):
        raise InvalidParameterError(f"num_ceps={num_ceps} exceeds num_mel_bins={num_mel_bins}; use num_ceps <= bins")
    opts = KaldiOptions.create(
        blackman_coeff=blackman_coeff,
        dither=dither,
        energy_floor=energy_floor,
        frame_length=frame_length,
        frame_shift=frame_shift,
        high_freq=high_freq,
        htk_compat=False,
        low_freq=low_freq,
        min_duration=min_duration,
        num_mel_bins=num_mel_bins,
        preemphasis_coefficient=preemphasis_coefficient,
        raw_energy=raw_energy,
        remove_dc_offset=remove_dc_offset,
        round_to_power_of_two=round_to_power_of_two,
        sample_frequency=sample_frequency,
        snip_edges=snip_edges,
        subtract_mean=False,
        use_energy=use_energy,
        use_log_fbank=True,
        use_power=True,
        vtln_high=vtln_high,
        vtln_low=vtln_low,
        vtln_warp=vtln_warp,
        window_type=window_type,
    )
    x, back = as_tensor(waveform, name="waveform")
    in_dtype = x.dtype
    feats = _fbank_impl(x if in_dtype in (torch.float32, torch.float64) else x.float(), opts, generator)
    ceps = _cepstra(feats, opts, num_ceps, cepstral_lifter, htk_compat=_check_bool(htk_compat, "htk_compat"))
    if _check_bool(subtract_mean, "subtract_mean") and ceps.shape[-2] > 0:
        ceps = ceps - ceps.mean(dim=-2, keepdim=True)
    return back(ceps.to(in_dtype))


def _cepstra(
    feats: torch.Tensor, opts: KaldiOptions, num_ceps: int, lifter: float, *, htk_compat: bool
) -> torch.Tensor:
    mel = feats[..., 1:] if opts.use_energy else feats
    dct = _dct_lifter_f64(num_ceps, opts.num_mel_bins, lifter).to(dtype=feats.dtype, device=feats.device)
    ceps = mel @ dct
    if opts.use_energy:
        ceps = torch.cat([feats[..., :1], ceps[..., 1:]], dim=-1)
    if htk_compat:
        c0 = ceps[..., :1] if opts.use_energy else ceps[..., :1] * math.sqrt(2.0)
        ceps = torch.cat([ceps[..., 1:], c0], dim=-1)
    return ceps


# ----------------------------------------------------------------------------------------------------------------
# nn.Module


class KaldiFbank(torch.nn.Module):
    """Kaldi fbank as an ``nn.Module``: constants cached as buffers, no host sync in ``forward``.

    ``forward`` takes float tensors ``(..., n)`` (already validated by the caller: no NaN check, since that would
    sync) and returns ``(..., num_frames, feature_dim)``. It has no ``.item()`` and no branch on tensor values, so
    it runs under ``torch.compile(fullgraph=True)`` and CUDA-graph capture. ``use_matmul_dft=True`` folds DC
    removal, preemphasis, window and DFT into one matmul (no complex tensors, ONNX-exportable).

    Options are those of :func:`kaldi_fbank` (validated here), plus ``use_matmul_dft`` and ``dtype`` of the
    buffers (float32 default; ``module.double()`` also works). With ``dither > 0`` fresh noise is drawn each call.
    """

    def __init__(self, *, use_matmul_dft: bool = False, dtype: torch.dtype = torch.float32, **options: Any) -> None:
        super().__init__()
        self.opts = KaldiOptions.create(**options)
        self.use_matmul_dft = _check_bool(use_matmul_dft, "use_matmul_dft")
        const = _constants_cpu(self.opts, dtype, self.use_matmul_dft)
        for name in const.__dataclass_fields__:
            self.register_buffer(name, getattr(const, name).clone(), persistent=False)

    def _const(self) -> _Constants:
        return _Constants(*(getattr(self, f) for f in _Constants.__dataclass_fields__))

    def extra_repr(self) -> str:
        o = self.opts
        return (
            f"sample_frequency={o.sample_frequency:g}, window={o.window_size}/{o.window_shift} ({o.window_type}), "
            f"num_mel_bins={o.num_mel_bins}, use_energy={o.use_energy}, use_matmul_dft={self.use_matmul_dft}"
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Features of ``waveform`` ``(..., n)`` -> ``(..., num_frames, feature_dim)``."""
        opts = self.opts
        x = waveform.to(self.window.dtype)
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        if self.use_matmul_dft and x.shape[-1] >= opts.window_size:
            frames = _frame_by_gather(x, opts)
        else:
            frames = frame_signal(x, opts.window_size, opts.window_shift, opts.snip_edges)
        feats = compute_frames(frames, opts, self._const(), fused=self.use_matmul_dft)
        if opts.subtract_mean:
            feats = feats - feats.mean(dim=-2, keepdim=True)
        return feats.reshape(*lead, feats.shape[-2], opts.feature_dim)

    def validate(self, waveform: Any) -> None:
        """Check ``waveform`` as :func:`kaldi_fbank` does (syncs the device); call it outside hot loops."""
        validate_audio(waveform, name="waveform")
