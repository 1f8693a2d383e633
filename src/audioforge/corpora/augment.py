"""Waveform augmentation in numpy/scipy/soxr: tempo, pitch, speed, gain, noise at an SNR, reverberation, band-limiting.

Each transform is a pure function of its inputs (random ones take a ``numpy.random.Generator`` or a seed), so a corpus
generator that draws the parameters from a job's own seed gets the same audio whatever the number of processes.
:func:`random_augment` draws a full chain from an :class:`AugmentConfig` and returns the parameters it used (a JSON
friendly dict); :func:`apply_augmentation` replays such a dict exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio import validate_audio, validate_sample_rate
from ..errors import InvalidParameterError

__all__ = [
    "NOISE_COLORS",
    "AugmentConfig",
    "add_noise",
    "apply_augmentation",
    "bandlimit",
    "colored_noise",
    "gain",
    "peak_limit",
    "pitch_shift",
    "random_augment",
    "reverb",
    "rms_db",
    "speed",
    "synthetic_rir",
    "tempo",
]

NOISE_COLORS = ("white", "pink", "brown", "blue")
_NOISE_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0}


def _mono(y: Any, name: str = "y") -> np.ndarray:
    if isinstance(y, np.ndarray) and y.ndim == 1 and y.size and np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():  # the fast path for numpy input (no torch import in worker processes)
            validate_audio(y, name=name, allow_multichannel=False)
        return y.astype(np.float32, copy=False)
    validate_audio(y, name=name, allow_multichannel=False)
    return np.asarray(y, dtype=np.float32)


def rms_db(y: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf dB is returned as -200)."""
    p = float(np.mean(np.square(y, dtype=np.float64))) if len(y) else 0.0
    return 10.0 * np.log10(p) if p > 1e-20 else -200.0


def gain(y: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels."""
    return (_mono(y) * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def peak_limit(y: np.ndarray, peak: float = 0.99) -> tuple[np.ndarray, float]:
    """Scale ``y`` down so its peak is at most ``peak``; returns (signal, gain in dB applied, 0 if none)."""
    m = float(np.max(np.abs(y))) if len(y) else 0.0
    if m <= peak:
        return y, 0.0
    return (y * np.float32(peak / m)).astype(np.float32), 20.0 * np.log10(peak / m)


def speed(y: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Kaldi-style speed perturbation: play ``factor`` times faster, changing tempo and pitch together (resampling)."""
    import soxr

    y = _mono(y)
    sr = validate_sample_rate(sr)
    if not 0.25 <= factor <= 4.0:
        raise InvalidParameterError(f"speed factor must be in [0.25, 4], got {factor}")
    if factor == 1.0:
        return y.copy()
    return soxr.resample(y, sr * factor, sr, quality="HQ").astype(np.float32)


def tempo(y: np.ndarray, sr: int, rate: float, *, frame_ms: float = 30.0, tolerance_ms: float = 10.0) -> np.ndarray:
    """Change the speaking rate by ``rate`` (>1 faster) keeping the pitch: waveform-similarity overlap-add (WSOLA).

    Parameters
    ----------
    y
        Mono float signal.
    sr
        Sample rate in Hz.
    rate
        Tempo factor in [0.5, 2]; the output has ``round(len(y) / rate)`` samples.
    frame_ms, tolerance_ms
        Analysis frame (Hann, 50 % overlap at the output) and the search range for the best-aligned next frame.
    """
    y = _mono(y)
    sr = validate_sample_rate(sr)
    if not 0.5 <= rate <= 2.0:
        raise InvalidParameterError(f"tempo rate must be in [0.5, 2], got {rate}")
    n_out = round(len(y) / rate)
    if rate == 1.0:
        return y.copy()
    frame = max(16, int(sr * frame_ms / 1000) // 2 * 2)
    hop_out = frame // 2
    hop_in = hop_out * rate
    tol = max(1, int(sr * tolerance_ms / 1000))
    pad = frame + tol
    x = np.pad(y.astype(np.float64), (pad, pad + frame + int(np.ceil(hop_in)) + hop_out))
    win = np.hanning(frame + 1)[:frame]
    n_frames = int(np.ceil(n_out / hop_out)) + 1
    out = np.zeros(n_frames * hop_out + frame)
    norm = np.zeros_like(out)
    prev = pad
    for k in range(n_frames):
        target = pad + round(k * hop_in)
        if k == 0:
            pos = target
        else:
            ref = x[prev + hop_out: prev + hop_out + frame]  # what would naturally follow the previous frame
            lo = max(0, target - tol)
            region = x[lo: target + tol + frame]
            if not ref.any() or len(region) < frame:
                pos = target
            else:
                corr = np.correlate(region, ref, mode="valid")
                pos = lo + int(np.argmax(corr))
        seg = x[pos: pos + frame]
        if len(seg) < frame:
            seg = np.pad(seg, (0, frame - len(seg)))
        out[k * hop_out: k * hop_out + frame] += win * seg
        norm[k * hop_out: k * hop_out + frame] += win
        prev = pos
    out = out / np.maximum(norm, 1e-3)
    # the first output frame starts at input position `pad`, which is input sample 0 shifted by `pad` zeros
    return out[:n_out].astype(np.float32)


def pitch_shift(y: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Shift the pitch by ``semitones`` (within +-12) keeping the duration: WSOLA stretch then resample."""
    y = _mono(y)
    if not -12.0 <= semitones <= 12.0:
        raise InvalidParameterError(f"pitch shift must be within +-12 semitones, got {semitones}")
    if semitones == 0:
        return y.copy()
    ratio = 2.0 ** (semitones / 12.0)
    stretched = tempo(y, sr, 1.0 / ratio) if 0.5 <= 1.0 / ratio <= 2.0 else y
    out = speed(stretched, sr, ratio)
    if len(out) >= len(y):
        return out[: len(y)]
    return np.pad(out, (0, len(y) - len(out))).astype(np.float32)


def colored_noise(n: int, rng: np.random.Generator, color: str = "white") -> np.ndarray:
    """``n`` samples of unit-RMS Gaussian noise with a power spectrum ~ 1/f^a (white 0, pink 1, brown 2, blue -1)."""
    if color not in _NOISE_EXPONENT:
        raise InvalidParameterError(f"noise color {color!r}; use one of {NOISE_COLORS}")
    if n <= 0:
        raise InvalidParameterError(f"noise length must be positive, got {n}")
    white = rng.standard_normal(n)
    a = _NOISE_EXPONENT[color]
    if a != 0.0:
        spec = np.fft.rfft(white)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        spec *= f ** (-a / 2.0)
        spec[0] = 0.0
        white = np.fft.irfft(spec, n)
    white -= white.mean()
    return (white / max(float(np.sqrt(np.mean(white**2))), 1e-12)).astype(np.float32)


def _active_power(y: np.ndarray, sr: int | None) -> float:
    """Mean power of the frames within 40 dB of the loudest (so leading/trailing silence does not dilute the SNR)."""
    frame = max(1, (sr or 16000) // 50)
    n = len(y) // frame * frame
    if n == 0:
        return float(np.mean(np.square(y, dtype=np.float64)))
    p = np.mean(np.square(y[:n].astype(np.float64)).reshape(-1, frame), axis=1)
    active = p[p >= p.max() * 1e-4]
    return float(active.mean()) if active.size else 0.0


def add_noise(
    y: np.ndarray,
    snr_db: float,
    rng: np.random.Generator,
    *,
    color: str = "white",
    sr: int | None = None,
) -> np.ndarray:
    """Add colored noise at ``snr_db`` relative to the power of the active (non-silent) part of ``y``."""
    y = _mono(y)
    p = _active_power(y, sr)
    if p <= 0:
        raise InvalidParameterError("cannot set an SNR for a silent signal")
    noise = colored_noise(len(y), rng, color) * np.float32(np.sqrt(p / 10.0 ** (snr_db / 10.0)))
    return (y + noise).astype(np.float32)


def synthetic_rir(
    sr: int,
    rt60: float,
    rng: np.random.Generator,
    *,
    drr_db: float = 3.0,
    n_early: int = 8,
) -> np.ndarray:
    """A synthetic room impulse response: direct path, sparse early reflections, exponentially decaying diffuse tail.

    Parameters
    ----------
    sr
        Sample rate in Hz.
    rt60
        Reverberation time (60 dB decay) in seconds, in [0.05, 3].
    rng
        Source of the reflection times and the tail's noise.
    drr_db
        Direct-to-reverberant energy ratio in dB (higher is drier).
    n_early
        Number of early reflections within the first 50 ms.

    Returns
    -------
    numpy.ndarray
        float32 impulse response of ``~rt60`` seconds with the direct path (value 1) at sample 0.
    """
    sr = validate_sample_rate(sr)
    if not 0.05 <= rt60 <= 3.0:
        raise InvalidParameterError(f"rt60 must be in [0.05, 3] s, got {rt60}")
    n = max(int(rt60 * sr), 2)
    t = np.arange(n) / sr
    decay = np.exp(-6.908 * t / rt60)  # 60 dB over rt60
    tail = rng.standard_normal(n) * decay
    # air and wall absorption: high frequencies die faster; a one-pole low-pass whose cut-off falls along the tail
    from scipy.signal import lfilter

    tail = 0.5 * tail + 0.5 * lfilter([0.4], [1.0, -0.6], tail)
    onset = int(0.002 * sr)  # the diffuse field starts a few ms after the direct sound
    tail[:onset] = 0.0
    for _ in range(n_early):
        k = int(rng.integers(max(1, onset), min(n, int(0.05 * sr) + 2)))
        tail[k] += float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.2, 0.6)) * decay[k]
    energy = float(np.sum(tail**2))
    if energy > 0:
        tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / energy)
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverb(y: np.ndarray, rir: np.ndarray, *, keep_length: bool = True) -> np.ndarray:
    """Convolve ``y`` with an impulse response (FFT); the result keeps ``y``'s length and RMS level."""
    from scipy.signal import fftconvolve

    y = _mono(y)
    rir = _mono(rir, "rir")
    out = fftconvolve(y.astype(np.float64), rir.astype(np.float64))
    if keep_length:
        out = out[: len(y)]
    p_in, p_out = float(np.mean(y.astype(np.float64) ** 2)), float(np.mean(out**2))
    if p_out > 0 and p_in > 0:
        out *= np.sqrt(p_in / p_out)
    return out.astype(np.float32)


def bandlimit(y: np.ndarray, sr: int, low_hz: float, high_hz: float, *, order: int = 6) -> np.ndarray:
    """Band-pass ``y`` to [low_hz, high_hz] with a zero-phase Butterworth filter (telephone: 300-3400 Hz).

    ``low_hz <= 0`` gives a low-pass; ``high_hz >= sr / 2`` a high-pass.
    """
    from scipy.signal import butter, sosfiltfilt

    y = _mono(y)
    sr = validate_sample_rate(sr)
    nyq = sr / 2.0
    if low_hz >= high_hz:
        raise InvalidParameterError(f"need low_hz < high_hz, got {low_hz} and {high_hz}")
    lo, hi = low_hz > 0, high_hz < nyq * 0.999
    if not lo and not hi:
        return y.copy()
    if lo and hi:
        sos = butter(order, [low_hz / nyq, high_hz / nyq], btype="bandpass", output="sos")
    elif hi:
        sos = butter(order, high_hz / nyq, btype="lowpass", output="sos")
    else:
        sos = butter(order, low_hz / nyq, btype="highpass", output="sos")
    if len(y) <= 3 * (2 * len(sos) + 1):
        return y.copy()
    return sosfiltfilt(sos, y.astype(np.float64)).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------------
# random chains
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of :func:`random_augment` (each transform is applied with its own probability).

    With the defaults about a fifth of the utterances stay clean and most others carry one or two moderate
    degradations; ``level_db`` always sets the final loudness.
    """

    p_tempo: float = 0.3
    tempo_range: tuple[float, float] = (0.85, 1.2)
    p_pitch: float = 0.25
    pitch_range: tuple[float, float] = (-3.0, 3.0)
    p_reverb: float = 0.25
    rt60_range: tuple[float, float] = (0.15, 0.8)
    drr_range: tuple[float, float] = (0.0, 10.0)
    p_bandlimit: float = 0.15
    p_noise: float = 0.35
    snr_range: tuple[float, float] = (5.0, 30.0)
    noise_colors: tuple[str, ...] = ("white", "pink", "brown")
    level_db: tuple[float, float] = (-32.0, -18.0)

    def __post_init__(self) -> None:
        for name in ("p_tempo", "p_pitch", "p_reverb", "p_bandlimit", "p_noise"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise InvalidParameterError(f"AugmentConfig.{name} must be a probability in [0, 1], got {p}")
        bad = [c for c in self.noise_colors if c not in NOISE_COLORS]
        if bad or not self.noise_colors:
            raise InvalidParameterError(f"AugmentConfig.noise_colors must be some of {NOISE_COLORS}, got {bad}")

    @classmethod
    def clean(cls) -> AugmentConfig:
        """No degradation at all (only the loudness is set)."""
        return cls(p_tempo=0.0, p_pitch=0.0, p_reverb=0.0, p_bandlimit=0.0, p_noise=0.0)


_BANDS = ((300.0, 3400.0), (200.0, 4000.0), (100.0, 5000.0), (0.0, 3800.0), (0.0, 6000.0), (150.0, 7000.0))


def random_augment(
    y: np.ndarray,
    sr: int,
    rng: np.random.Generator,
    config: AugmentConfig | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Draw a chain of augmentations from ``config`` with ``rng`` and apply it.

    Returns
    -------
    (signal, params)
        The augmented float32 signal (peak at most 0.99) and the parameters, replayable with
        :func:`apply_augmentation`.
    """
    cfg = config or AugmentConfig()
    u = lambda lo_hi: float(rng.uniform(*lo_hi))  # noqa: E731
    params: dict[str, Any] = {}
    if rng.random() < cfg.p_tempo:
        params["tempo"] = round(u(cfg.tempo_range), 3)
    if rng.random() < cfg.p_pitch:
        params["pitch"] = round(u(cfg.pitch_range), 2)
    if rng.random() < cfg.p_reverb:
        params["reverb"] = {"rt60": round(u(cfg.rt60_range), 3), "drr_db": round(u(cfg.drr_range), 1),
                            "seed": int(rng.integers(0, 2**31 - 1))}
    if rng.random() < cfg.p_bandlimit:
        lo, hi = _BANDS[int(rng.integers(0, len(_BANDS)))]
        params["bandlimit"] = [lo, min(hi, sr / 2.0)]
    if rng.random() < cfg.p_noise:
        params["noise"] = {"snr_db": round(u(cfg.snr_range), 1),
                           "color": str(cfg.noise_colors[int(rng.integers(0, len(cfg.noise_colors)))]),
                           "seed": int(rng.integers(0, 2**31 - 1))}
    params["level_db"] = round(u(cfg.level_db), 1)
    return apply_augmentation(y, sr, params), params


def apply_augmentation(y: np.ndarray, sr: int, params: dict[str, Any]) -> np.ndarray:
    """Apply a parameter dict from :func:`random_augment` (order: tempo, pitch, reverb, band-limit, noise, level).

    The key ``"limited_db"`` is added to ``params`` when the final peak had to be scaled down to 0.99.
    """
    y = _mono(y)
    sr = validate_sample_rate(sr)
    if "tempo" in params:
        y = tempo(y, sr, float(params["tempo"]))
    if "pitch" in params:
        y = pitch_shift(y, sr, float(params["pitch"]))
    if "reverb" in params:
        r = params["reverb"]
        rir = synthetic_rir(sr, float(r["rt60"]), np.random.default_rng(int(r["seed"])), drr_db=float(r["drr_db"]))
        y = reverb(y, rir)
    if "bandlimit" in params:
        lo, hi = params["bandlimit"]
        y = bandlimit(y, sr, float(lo), float(hi))
    if "noise" in params:
        nz = params["noise"]
        y = add_noise(y, float(nz["snr_db"]), np.random.default_rng(int(nz["seed"])), color=str(nz["color"]), sr=sr)
    if "level_db" in params:
        y = gain(y, float(params["level_db"]) - 10.0 * np.log10(max(_active_power(y, sr), 1e-20)))
    y, limited = peak_limit(y, 0.99)
    if limited:
        params["limited_db"] = round(limited, 2)
    return y
