"""Synthesised sound-event classes for the tagging corpus.

Every class is a function ``(duration, sr, rng) -> np.ndarray`` returning a float32 mono signal of exactly
``round(duration * sr)`` samples, peak-normalised to :data:`PEAK` (never clipped), that starts sounding within the
first few milliseconds. Each call draws its parameters (pattern, pitch, timbre, timing) from ``rng``, so one class
covers many variants while the same generator state always gives the same samples.

The models are small physical or signal-level caricatures: modal resonators for impacts (clock ticks, knocks,
footsteps, glass), harmonic series with slow drifts for machines (engine), swept tones for sirens and whistles,
formant-filtered pulse trains for barks, and shaped noise for rain and wind. They are meant to be varied and mutually
distinguishable for training and evaluating taggers, not to be mistaken for recordings.

Examples
--------
>>> import numpy as np
>>> y = synthesize_sfx("siren", 2.0, 32000, np.random.default_rng(0))
>>> y.shape, y.dtype
((64000,), dtype('float32'))
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import signal

from ..audio import validate_sample_rate
from ..errors import InvalidParameterError

__all__ = [
    "PEAK",
    "SFX_CLASSES",
    "SfxClass",
    "alarm_beep",
    "bird_chirp",
    "clock_tick",
    "dog_bark",
    "door_knock",
    "engine",
    "footsteps",
    "glass_clink",
    "noise_burst",
    "phone_ring",
    "rain",
    "siren",
    "synthesize_sfx",
    "water_drip",
    "whistle",
    "wind",
]

PEAK = 0.9
"""Peak absolute sample value of every generated signal."""

SfxFunction = Callable[[float, int, np.random.Generator], np.ndarray]


# --------------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------------
def _num_samples(duration: float, sr: int) -> int:
    if isinstance(duration, bool) or not isinstance(duration, (int, float, np.integer, np.floating)):
        raise InvalidParameterError(f"duration must be a number of seconds, got {duration!r}")
    if not np.isfinite(duration) or duration <= 0:
        raise InvalidParameterError(f"duration must be a positive finite number of seconds, got {duration!r}")
    n = round(float(duration) * sr)
    if n < int(0.02 * sr):
        raise InvalidParameterError(f"duration={duration} s is too short for a sound event; use at least 0.02 s")
    return n


def _check_rng(rng: np.random.Generator) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise InvalidParameterError(
            f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


def _nyq(sr: int) -> float:
    """Highest frequency a component may use: safely below Nyquist."""
    return 0.45 * sr


def _smooth_noise(n: int, sr: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random curve of ``n`` samples, about N(0, 1), with ``rate`` independent values per second."""
    n_ctrl = int(np.ceil(n / sr * rate)) + 4
    ctrl = rng.standard_normal(n_ctrl)
    pos = np.arange(n) / sr * rate + 1.0
    i = np.floor(pos).astype(np.int64)
    frac = pos - i
    w = 0.5 - 0.5 * np.cos(np.pi * frac)  # cosine interpolation: smooth, no overshoot
    return ctrl[i] * (1.0 - w) + ctrl[i + 1] * w


def _bandpass(x: np.ndarray, lo: float, hi: float, sr: int, order: int = 2) -> np.ndarray:
    hi = min(hi, _nyq(sr))
    lo = max(lo, 10.0)
    if lo >= hi * 0.95:
        lo = hi * 0.5
    sos = signal.butter(order, [lo, hi], btype="bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def _lowpass(x: np.ndarray, fc: float, sr: int, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(fc, _nyq(sr)), btype="lowpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def _highpass(x: np.ndarray, fc: float, sr: int, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(fc, _nyq(sr) * 0.9), btype="highpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def _resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """Two-pole resonator at ``freq`` Hz with -3 dB ``bandwidth`` Hz, unity gain at the peak (approximately)."""
    freq = min(freq, _nyq(sr))
    r = np.exp(-np.pi * bandwidth / sr)
    w = 2.0 * np.pi * freq / sr
    a = [1.0, -2.0 * r * np.cos(w), r * r]
    b = [1.0 - r]
    return signal.lfilter(b, a, x)


def _modal_kernel(
    freqs: np.ndarray, decays: np.ndarray, amps: np.ndarray, sr: int, rng: np.random.Generator, *, click: float = 0.0
) -> np.ndarray:
    """Impulse response of a few damped modes (``decays`` are 1/e times in s) plus an optional noise click."""
    keep = freqs < _nyq(sr)
    freqs, decays, amps = freqs[keep], decays[keep], amps[keep]
    length = int(min(1.5, 7.0 * float(decays.max(initial=0.005))) * sr) + 1
    t = np.arange(length) / sr
    k = np.zeros(length)
    for f, d, a in zip(freqs, decays, amps, strict=True):  # struck modes start in sine phase: no step at t=0
        k += a * np.exp(-t / d) * np.sin(2 * np.pi * f * t)
    if click > 0:
        m = max(2, int(0.0015 * sr))
        burst = rng.standard_normal(m) * np.hanning(m + 2)[1:-1]
        k[:m] += click * burst * np.abs(k).max(initial=1.0)
    return k


def _impulses(n: int, times: list[float] | np.ndarray, amps: list[float] | np.ndarray, sr: int) -> np.ndarray:
    x = np.zeros(n)
    idx = np.round(np.asarray(times, dtype=np.float64) * sr).astype(np.int64)
    ok = (idx >= 0) & (idx < n)
    np.add.at(x, idx[ok], np.asarray(amps, dtype=np.float64)[ok])
    return x


def _convolve(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    return signal.fftconvolve(x, k)[: len(x)]


def _ramp(m: int, sr: int, attack: float, release: float) -> np.ndarray:
    """A gate envelope of ``m`` samples with raised-cosine attack and release (seconds)."""
    env = np.ones(m)
    a = min(m // 2, max(1, int(attack * sr)))
    r = min(m // 2, max(1, int(release * sr)))
    env[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / a)
    env[m - r :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, r + 1) / r)
    return env


def _add(y: np.ndarray, start: int, seg: np.ndarray) -> None:
    if start >= len(y):
        return
    end = min(len(y), start + len(seg))
    y[start:end] += seg[: end - start]


def _sfx(fn: SfxFunction) -> SfxFunction:
    """Validate ``sr`` and ``rng`` before calling a class generator (``duration`` is checked by ``_num_samples``)."""

    @functools.wraps(fn)
    def wrapper(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
        return fn(duration, validate_sample_rate(sr), _check_rng(rng))

    return wrapper


def _finish(y: np.ndarray, sr: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    y = y - y.mean()
    fade = min(len(y) // 4, max(1, int(0.003 * sr)))
    y[:fade] *= np.linspace(0.0, 1.0, fade + 1)[1:]
    y[-fade:] *= np.linspace(1.0, 0.0, fade + 1)[:-1]
    peak = float(np.abs(y).max(initial=0.0))
    if not np.isfinite(peak) or peak <= 0.0:  # pragma: no cover - every model excites its output from t=0
        raise RuntimeError("sound-event synthesis produced silence; this is a bug in audioforge.corpora.sfx")
    return (y * (PEAK / peak)).astype(np.float32)


def _pattern(duration: float, first: float, next_gap: Callable[[int], float]) -> list[float]:
    """Event times from ``first`` on, each next one ``next_gap(i)`` seconds later, while inside ``duration``."""
    times: list[float] = []
    t = first
    i = 0
    while t < duration and len(times) < 100_000:
        times.append(t)
        t += max(1e-3, next_gap(i))
        i += 1
    return times


def _stft_noise(n: int, sr: int, shape: Callable[[np.ndarray, np.ndarray], np.ndarray], rng: np.random.Generator,
                nperseg: int = 1024) -> np.ndarray:
    """Noise whose short-time magnitude spectrum is ``shape(times, freqs)`` (array [freqs, frames])."""
    hop = nperseg // 4
    f, t, z = signal.stft(rng.standard_normal(n + nperseg), fs=sr, nperseg=nperseg, noverlap=nperseg - hop)
    z = z * shape(t, f)
    _, x = signal.istft(z, fs=sr, nperseg=nperseg, noverlap=nperseg - hop)
    return x[nperseg // 2 : nperseg // 2 + n] if len(x) >= n + nperseg // 2 else np.resize(x, n)


# --------------------------------------------------------------------------------------------------------------------
# classes
# --------------------------------------------------------------------------------------------------------------------
@_sfx
def alarm_beep(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Electronic alarm: a tone switched on and off in a pattern (single, alternating two-tone, or grouped beeps).

    Parameters
    ----------
    duration
        Length in seconds.
    sr
        Sample rate in Hz.
    rng
        Random generator; draws the carrier (0.9-3.2 kHz), timbre (sine to band-limited square) and the on/off pattern.

    Returns
    -------
    np.ndarray
        float32 signal of ``round(duration * sr)`` samples.
    """
    n = _num_samples(duration, sr)
    y = np.zeros(n)
    style = int(rng.integers(3))
    f1 = min(rng.uniform(900, 3200), _nyq(sr) / 3)
    f2 = f1 * float(rng.choice([0.75, 0.8, 1.2, 1.25, 1.5]))
    square = rng.uniform(0.0, 1.0)  # 0: pure sine, 1: band-limited square wave (odd harmonics, 1/k)
    on = rng.uniform(0.06, 0.45)
    off = rng.uniform(0.05, 0.5)
    group = int(rng.integers(2, 6)) if style == 2 else 1
    gap = rng.uniform(0.4, 1.2) if style == 2 else off
    if style == 2:
        on, off = on * 0.4, off * 0.4
    times = _pattern(duration, rng.uniform(0, 0.01), lambda i: on + (gap if (i + 1) % group == 0 else off))
    m = max(8, int(on * sr))
    tt = np.arange(m) / sr
    env = _ramp(m, sr, 0.003, 0.004)
    for i, t0 in enumerate(times):
        f = f2 if (style == 1 and i % 2) else f1
        tone = np.sin(2 * np.pi * f * tt)
        for k in range(3, 40, 2):
            if k * f >= _nyq(sr):
                break
            tone += square * np.sin(2 * np.pi * k * f * tt) / k
        _add(y, int(t0 * sr), tone * env)
    return _finish(y, sr)


@_sfx
def siren(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Emergency siren: a slow wail, a fast yelp or a two-tone hi-lo, with harmonics and a slow level swell."""
    n = _num_samples(duration, sr)
    t = np.arange(n) / sr
    mode = int(rng.integers(3))
    lo = rng.uniform(450, 800)
    hi = lo * rng.uniform(1.7, 2.6)
    if mode == 0:  # wail: slow up and down sweep
        period = rng.uniform(2.0, 6.0)
        p = (t / period + rng.uniform(0, 0.3)) % 1.0
        u = 0.5 - 0.5 * np.cos(2 * np.pi * p)
    elif mode == 1:  # yelp: fast rising sweeps
        period = rng.uniform(0.12, 0.35)
        p = (t / period) % 1.0
        u = np.sqrt(p)
    else:  # hi-lo: alternating two tones
        period = rng.uniform(0.8, 1.6)
        lo, hi = lo * 0.8, lo * rng.uniform(1.25, 1.45)
        u = 0.5 + 0.5 * np.tanh(40 * np.sin(2 * np.pi * t / period))
    doppler = 1.0 + 0.02 * _smooth_noise(n, sr, 0.3, rng)
    f = (lo + (hi - lo) * u) * doppler
    phase = 2 * np.pi * np.cumsum(f) / sr
    y = np.zeros(n)
    amps = [1.0, rng.uniform(0.0, 0.5), rng.uniform(0.1, 0.6), rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.3)]
    for k, a in enumerate(amps, 1):
        y += a * np.sin(k * phase) * np.clip((_nyq(sr) - k * f) / (0.05 * sr), 0.0, 1.0)  # fade out near Nyquist
    swell = 0.6 + 0.4 * np.tanh(_smooth_noise(n, sr, 0.25, rng))
    return _finish(y * swell, sr)


@_sfx
def clock_tick(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Clock ticking: regular short resonant clicks, alternating a 'tick' and a slightly lower 'tock'."""
    n = _num_samples(duration, sr)
    interval = rng.uniform(0.45, 1.05) if rng.random() < 0.6 else rng.uniform(0.18, 0.3)
    f_a = rng.uniform(2000, 5000)
    f_b = f_a * rng.uniform(0.72, 0.95)
    decay = rng.uniform(0.003, 0.012)
    ratios = np.array([1.0, rng.uniform(1.4, 1.8), rng.uniform(2.1, 2.9)])
    amps = np.array([1.0, rng.uniform(0.3, 0.8), rng.uniform(0.1, 0.5)])
    thump = rng.uniform(300, 900)
    kernels = []
    for f in (f_a, f_b):
        freqs = np.concatenate([f * ratios, [thump]])
        decays = np.concatenate([decay / ratios**0.5, [decay * 1.5]])
        kernels.append(_modal_kernel(freqs, decays, np.concatenate([amps, [0.3]]), sr, rng, click=0.5))
    tick_gap = lambda i: interval * (1 + 0.002 * rng.standard_normal())  # noqa: E731
    times = np.array(_pattern(duration, rng.uniform(0, 0.005), tick_gap))
    level = 1.0 + 0.05 * rng.standard_normal(len(times))
    y = np.zeros(n)
    for j, k in enumerate(kernels):
        sel = np.arange(len(times)) % 2 == j
        y += _convolve(_impulses(n, times[sel], level[sel], sr), k)
    return _finish(y, sr)


@_sfx
def noise_burst(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Bursts of band-limited noise: impact-like decays, hissing gates or swells, in random bands and timings."""
    n = _num_samples(duration, sr)
    y = np.zeros(n)
    times = _pattern(duration, rng.uniform(0, 0.01), lambda i: rng.uniform(0.3, 2.0))
    for t0 in times:
        d = rng.uniform(0.03, 0.6)
        m = max(16, int(d * sr))
        x = rng.standard_normal(m + 256)
        centre = np.exp(rng.uniform(np.log(300), np.log(min(7000, _nyq(sr) * 0.8))))
        width = rng.uniform(0.4, 2.5)  # octaves
        x = _bandpass(x, centre / 2 ** (width / 2), centre * 2 ** (width / 2), sr)[256:]
        shape = int(rng.integers(3))
        tt = np.arange(m) / m
        if shape == 0:  # impact: fast attack, exponential decay
            env = np.exp(-tt * rng.uniform(4, 9)) * _ramp(m, sr, 0.001, 0.005)
        elif shape == 1:  # gated hiss
            env = _ramp(m, sr, 0.01, 0.02)
        else:  # swell
            env = np.sin(np.pi * tt) ** rng.uniform(0.5, 2.0)
        _add(y, int(t0 * sr), x * env / (np.abs(x).max() + 1e-9) * rng.uniform(0.5, 1.0))
    return _finish(y, sr)


@_sfx
def engine(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Engine hum: harmonic series of a slowly drifting firing frequency, with half orders, AM roughness and noise."""
    n = _num_samples(duration, sr)
    f_mean = rng.uniform(18, 55)
    drift = f_mean * (1 + rng.uniform(0.03, 0.12) * np.tanh(_smooth_noise(n, sr, rng.uniform(0.3, 1.0), rng)))
    if rng.random() < 0.4:  # revving up or slowing down
        drift *= np.linspace(1.0, rng.uniform(0.7, 1.6), n)
    phase = 2 * np.pi * np.cumsum(drift) / sr + rng.uniform(0, 2 * np.pi)
    tilt = rng.uniform(0.6, 1.4)
    cyl = int(rng.integers(2, 5))
    y = np.zeros(n)
    fmax = float(drift.max())
    for h in range(1, 49):  # orders h / 2 of the firing frequency
        order = h / 2
        if order * fmax > min(_nyq(sr), 4000):
            break
        a = order**-tilt * rng.uniform(0.5, 1.0)
        if h % 2:
            a *= rng.uniform(0.1, 0.4)  # half orders: cylinder-to-cylinder irregularity
        if h % (2 * cyl) == 0:
            a *= 2.0
        y += a * np.sin(order * phase + rng.uniform(0, 2 * np.pi))
    y *= 1 + rng.uniform(0.1, 0.4) * np.sin(phase / 2 + rng.uniform(0, 2 * np.pi))
    noise = _lowpass(rng.standard_normal(n), rng.uniform(300, 1200), sr) * (1 + 0.5 * np.sin(phase))
    y = y / (np.abs(y).max() + 1e-9) + rng.uniform(0.05, 0.3) * noise / (np.abs(noise).max() + 1e-9)
    return _finish(_lowpass(y, rng.uniform(1500, 5000), sr), sr)


@_sfx
def rain(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Rain: a dense random stream of small chirped droplets over a high-passed noise bed."""
    n = _num_samples(duration, sr)
    rate = np.exp(rng.uniform(np.log(300), np.log(3000)))
    count = max(1, int(rng.poisson(rate * duration)))
    times = rng.uniform(0, duration, count)
    times[0] = rng.uniform(0, 0.005)
    amps = rng.lognormal(0.0, 0.8, count) * rng.choice([-1.0, 1.0], count)
    n_kernels = 6
    which = rng.integers(n_kernels, size=count)
    y = np.zeros(n)
    for k in range(n_kernels):
        f0 = min(rng.uniform(1500, 7000), _nyq(sr) * 0.7)
        tau = rng.uniform(0.0015, 0.008)
        m = int(6 * tau * sr) + 2
        tt = np.arange(m) / sr
        f = f0 * (1 + rng.uniform(0.2, 1.0) * tt / (6 * tau))
        kern = np.exp(-tt / tau) * np.sin(2 * np.pi * np.cumsum(f) / sr)
        sel = which == k
        y += _convolve(_impulses(n, times[sel], amps[sel], sr), kern)
    bed = _highpass(rng.standard_normal(n), rng.uniform(500, 2000), sr)
    bed *= 1 + 0.2 * np.tanh(_smooth_noise(n, sr, 0.5, rng))
    y = y / (np.abs(y).max() + 1e-9) + rng.uniform(0.05, 0.3) * bed / (np.abs(bed).max() + 1e-9)
    if rng.random() < 0.5:  # drops on a surface: some heavier, lower plops
        big = _pattern(duration, rng.uniform(0, 0.2), lambda i: rng.exponential(0.25))
        kern = _modal_kernel(np.array([rng.uniform(700, 1500)]), np.array([rng.uniform(0.005, 0.015)]), np.ones(1),
                             sr, rng)
        plops = _convolve(_impulses(n, big, rng.uniform(0.2, 0.6, len(big)), sr), kern)
        y += plops / (np.abs(plops).max() + 1e-9) * rng.uniform(0.2, 0.5)
    return _finish(y, sr)


@_sfx
def footsteps(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Footsteps: periodic heel-toe impacts on wood, a hard floor or gravel, with a floor resonance."""
    n = _num_samples(duration, sr)
    interval = rng.uniform(0.42, 0.75) if rng.random() < 0.75 else rng.uniform(0.28, 0.38)
    surface = int(rng.integers(3))
    floor_f = rng.uniform(70, 200)
    freqs = np.array([floor_f, rng.uniform(300, 900), rng.uniform(1200, 3000)])
    if surface == 0:  # wood: resonant, ringing modes
        decays = np.array([rng.uniform(0.03, 0.08), rng.uniform(0.01, 0.03), 0.004])
        amps = np.array([1.0, 0.6, 0.2])
        click = 0.2
    elif surface == 1:  # hard floor: dry and clicky
        decays = np.array([rng.uniform(0.01, 0.03), rng.uniform(0.005, 0.012), 0.003])
        amps = np.array([0.6, 0.5, 0.6])
        click = 1.0
    else:  # gravel: a thump plus crunch grains
        decays = np.array([rng.uniform(0.02, 0.05), 0.008, 0.003])
        amps = np.array([0.7, 0.3, 0.1])
        click = 0.1
    heel = _modal_kernel(freqs, decays, amps, sr, rng, click=click)
    toe = _modal_kernel(freqs * rng.uniform(1.05, 1.3), decays * 0.7, amps, sr, rng, click=click)
    times = np.array(_pattern(duration, rng.uniform(0, 0.01), lambda i: interval * (1 + 0.04 * rng.standard_normal())))
    side = np.where(np.arange(len(times)) % 2 == 0, 1.0, rng.uniform(0.7, 0.95))
    level = side * (1 + 0.1 * rng.standard_normal(len(times)))
    delay = rng.uniform(0.04, 0.09)
    y = _convolve(_impulses(n, times, level, sr), heel)
    y += _convolve(_impulses(n, times + delay, level * rng.uniform(0.4, 0.8), sr), toe)
    if surface == 2:
        grains = np.zeros(n)
        span = int(rng.uniform(0.06, 0.15) * sr)
        for t0, lv in zip(times, level, strict=True):
            s = int(t0 * sr)
            count = max(3, int(span / sr * rng.uniform(200, 600)))
            idx = s + rng.integers(0, span, count)
            idx = idx[idx < n]
            np.add.at(grains, idx, lv * rng.uniform(-1, 1, len(idx)) * np.exp(-(idx - s) / span * 2))
        grains = _bandpass(grains, 1500, 7000, sr)
        y = y / (np.abs(y).max() + 1e-9) + 0.8 * grains / (np.abs(grains).max() + 1e-9)
    return _finish(y, sr)


@_sfx
def dog_bark(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Dog barking: groups of short pitched, noisy bursts shaped by three formant resonances."""
    n = _num_samples(duration, sr)
    size = rng.random()  # 0: small dog (high, short), 1: big dog (low, longer)
    f0_base = np.interp(size, [0, 1], [900, 260]) * rng.uniform(0.85, 1.15)
    formants = np.array([np.interp(size, [0, 1], [900, 450]), np.interp(size, [0, 1], [2000, 1200]),
                         np.interp(size, [0, 1], [3400, 2500])]) * rng.uniform(0.9, 1.1, 3)
    bands = rng.uniform(80, 220, 3)
    fgains = np.array([1.0, rng.uniform(0.4, 0.8), rng.uniform(0.15, 0.4)])
    group = int(rng.integers(1, 5))
    spacing = rng.uniform(0.18, 0.35)
    gap = rng.uniform(0.6, 1.8)
    times = _pattern(duration, rng.uniform(0, 0.01), lambda i: (gap if (i + 1) % group == 0 else spacing)
                     * rng.uniform(0.85, 1.15))
    y = np.zeros(n)
    for t0 in times:
        d = np.interp(size, [0, 1], [0.07, 0.2]) * rng.uniform(0.8, 1.3)
        m = int(d * sr)
        tt = np.arange(m) / m
        contour = np.where(tt < 0.25, 0.75 + tt, 1.0 - 0.4 * (tt - 0.25) / 0.75)
        f0 = f0_base * rng.uniform(0.9, 1.1) * contour * (1 + 0.03 * rng.standard_normal(m).cumsum() / np.sqrt(m))
        ph = 2 * np.pi * np.cumsum(f0) / sr
        src = np.zeros(m)
        for k in range(1, 40):
            if k * f0_base * 1.2 > _nyq(sr):
                break
            src += np.sin(k * ph) / k
        pulse = 0.5 + 0.5 * np.cos(ph)
        src = src + rng.uniform(0.4, 1.0) * rng.standard_normal(m) * pulse  # breathy, rough excitation
        pad = np.concatenate([src, np.zeros(int(0.03 * sr))])
        bark = sum(g * _resonator(pad, f, b, sr) for f, b, g in zip(formants, bands, fgains, strict=True))
        env = np.concatenate([np.minimum(1.0, tt / 0.08) * np.exp(-tt * rng.uniform(1.0, 3.0)),
                              np.zeros(len(pad) - m)])
        bark = bark * env
        _add(y, int(t0 * sr), bark / (np.abs(bark).max() + 1e-9) * rng.uniform(0.6, 1.0))
    return _finish(y, sr)


@_sfx
def phone_ring(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Telephone ringing: dual-tone cadences (US, UK double ring), an electronic trill, or an old bell ringer."""
    n = _num_samples(duration, sr)
    style = int(rng.integers(4))
    y = np.zeros(n)
    detune = rng.uniform(0.97, 1.03)
    if style in (0, 1):
        pair = (440.0, 480.0) if style == 0 else (400.0, 450.0)
        f = np.array(pair) * detune
        if style == 0:
            bursts, gap = [rng.uniform(0.8, 2.0)], rng.uniform(1.0, 3.0)
        else:
            bursts, gap = [0.4, 0.4], rng.uniform(1.2, 2.2)
        cycle: list[tuple[float, float]] = []
        for i, b in enumerate(bursts):
            cycle.append((b, gap if i == len(bursts) - 1 else 0.2))
        t0 = rng.uniform(0, 0.01)
        i = 0
        while t0 < duration:
            on, off = cycle[i % len(cycle)]
            m = int(on * sr)
            tt = np.arange(m) / sr
            tone = np.sin(2 * np.pi * f[0] * tt) + np.sin(2 * np.pi * f[1] * tt)
            _add(y, int(t0 * sr), tone * _ramp(m, sr, 0.01, 0.01))
            t0 += on + off
            i += 1
    else:
        burst, gap = rng.uniform(0.8, 1.6), rng.uniform(0.8, 2.5)
        rate = rng.uniform(15, 25)
        times = _pattern(duration, rng.uniform(0, 0.01), lambda i: burst + gap)
        m = int(burst * sr)
        tt = np.arange(m) / sr
        if style == 2:  # electronic trill: two tones alternating at the trill rate
            fa = min(rng.uniform(1000, 1800) * detune, _nyq(sr) / 2)
            fb = fa * rng.uniform(1.2, 1.35)
            sel = (np.floor(tt * rate * 2) % 2).astype(bool)
            f = np.where(sel, fb, fa)
            tone = np.sign(np.sin(2 * np.pi * np.cumsum(f) / sr)) * 0.3 + np.sin(2 * np.pi * np.cumsum(f) / sr)
            tone = _lowpass(tone, 6000, sr)
        else:  # mechanical bell: clapper strikes at the trill rate excite inharmonic bell partials
            fb = rng.uniform(700, 1200)
            kern = _modal_kernel(fb * np.array([1.0, 2.76, 5.40, 8.93]), np.array([0.4, 0.2, 0.1, 0.05]),
                                 np.array([1.0, 0.6, 0.3, 0.15]), sr, rng, click=0.3)
            strikes = _impulses(m, np.arange(0, burst, 1 / rate), np.ones(int(np.ceil(burst * rate))), sr)
            tone = _convolve(strikes, kern)
        for t0 in times:
            _add(y, int(t0 * sr), tone * _ramp(m, sr, 0.005, 0.02))
    return _finish(y, sr)


@_sfx
def door_knock(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Knocking on a door: groups of 2-5 knuckle raps exciting the low resonant modes of a wooden panel."""
    n = _num_samples(duration, sr)
    freqs = np.array([rng.uniform(90, 160), rng.uniform(180, 320), rng.uniform(350, 650), rng.uniform(700, 1300)])
    decays = np.array([rng.uniform(0.03, 0.07), rng.uniform(0.02, 0.05), rng.uniform(0.01, 0.03), 0.008])
    amps = np.array([1.0, rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.4)])
    kern = _modal_kernel(freqs, decays, amps, sr, rng, click=rng.uniform(0.2, 0.8))
    times: list[float] = []
    amp: list[float] = []
    t = rng.uniform(0, 0.01)
    while t < duration:
        count = int(rng.integers(2, 6))
        step = rng.uniform(0.1, 0.25)
        for j in range(count):
            times.append(t)
            amp.append(rng.uniform(0.75, 1.0) * (1.2 if j == count - 1 and rng.random() < 0.3 else 1.0))
            t += step * (1 - 0.05 * j)
        t += rng.uniform(0.8, 2.5)
    y = _convolve(_impulses(n, times, amp, sr), kern)
    return _finish(y, sr)


@_sfx
def whistle(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Whistling: a person whistling a gliding tune with vibrato, or a referee's pea whistle with its fast trill."""
    n = _num_samples(duration, sr)
    t = np.arange(n) / sr
    if rng.random() < 0.6:  # tune
        centre = rng.uniform(900, 2000)
        scale = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14])
        f = np.zeros(n)
        gate = np.zeros(n)
        t0 = rng.uniform(0, 0.01)
        prev = centre
        while t0 < duration:
            d = rng.uniform(0.15, 0.6)
            pitch = centre * 2 ** (float(rng.choice(scale)) / 12)
            s, e = int(t0 * sr), min(n, int((t0 + d) * sr))
            f[s:e] = pitch
            g = _ramp(e - s, sr, 0.02, 0.03) if e - s > 8 else np.ones(e - s)
            gate[s:e] = np.maximum(gate[s:e], g if rng.random() < 0.7 else 1.0)
            prev = pitch
            t0 += d + (rng.uniform(0.05, 0.3) if rng.random() < 0.4 else 0.0)
        f[f == 0] = prev
        glide = max(1, int(rng.uniform(0.015, 0.05) * sr))
        f = np.convolve(np.pad(f, (glide, glide), mode="edge"), np.ones(glide) / glide, mode="same")[glide:-glide]
        f *= 1 + rng.uniform(0.004, 0.015) * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t)
        f = np.minimum(f, _nyq(sr))
    else:  # referee whistle: pea rattling modulates the pitch quickly
        base = min(rng.uniform(2500, 3800), _nyq(sr) * 0.8)
        f = base * (1 + rng.uniform(0.03, 0.08) * np.sin(2 * np.pi * rng.uniform(20, 40) * t))
        gate = np.zeros(n)
        t0 = rng.uniform(0, 0.01)
        while t0 < duration:
            d = rng.uniform(0.3, 1.2)
            s, e = int(t0 * sr), min(n, int((t0 + d) * sr))
            gate[s:e] = _ramp(e - s, sr, 0.01, 0.05)
            t0 += d + rng.uniform(0.2, 1.0)
    phase = 2 * np.pi * np.cumsum(f) / sr
    tone = np.sin(phase) + rng.uniform(0.0, 0.15) * np.sin(2 * phase) * (2 * f < _nyq(sr))
    breath = _bandpass(rng.standard_normal(n), float(np.median(f)) * 0.8, float(np.median(f)) * 1.25, sr)
    breath /= np.abs(breath).max() + 1e-9
    y = (tone + rng.uniform(0.05, 0.25) * breath) * gate
    return _finish(y, sr)


@_sfx
def water_drip(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Dripping water: sparse, nearly periodic drops, each an upward-chirping 'plink' with a small splash."""
    n = _num_samples(duration, sr)
    interval = rng.uniform(0.25, 1.2)
    jitter = rng.uniform(0.05, 0.3)
    times = _pattern(duration, rng.uniform(0, 0.005), lambda i: interval * max(0.3, 1 + jitter * rng.standard_normal()))
    f_mean = rng.uniform(600, 2500)
    y = np.zeros(n)
    for t0 in times:
        f0 = min(f_mean * rng.uniform(0.85, 1.15), _nyq(sr) / 2.5)
        rise = rng.uniform(1.3, 2.2)
        tau = rng.uniform(0.01, 0.04)
        m = int(6 * tau * sr) + 2
        tt = np.arange(m) / sr
        f = f0 * rise ** np.minimum(1.0, tt / rng.uniform(0.015, 0.06))
        plink = np.exp(-tt / tau) * np.sin(2 * np.pi * np.cumsum(f) / sr)
        k = max(2, int(0.001 * sr))
        plink[:k] += 0.3 * rng.standard_normal(k)
        _add(y, int(t0 * sr), plink * rng.uniform(0.6, 1.0))
    if rng.random() < 0.5:  # a hard, small room: a couple of early echoes
        for _ in range(2):
            d = int(rng.uniform(0.02, 0.08) * sr)
            y[d:] += rng.uniform(0.15, 0.35) * y[:-d]
    return _finish(y, sr)


@_sfx
def wind(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Wind: band noise whose level (gusts) and centre frequency drift slowly, sometimes with a whistling howl."""
    n = _num_samples(duration, sr)
    fc0 = rng.uniform(200, 1000)
    width = rng.uniform(0.6, 1.4)  # octaves (std of the log-frequency Gaussian)
    gust_rate = rng.uniform(0.15, 0.6)
    howl = rng.random() < 0.4
    howl_f = rng.uniform(400, 1200)
    gust_curve = rng.standard_normal(int(duration * gust_rate) + 8)
    centre_curve = rng.standard_normal(int(duration * gust_rate) + 8)

    def shape(times: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        pos = times * gust_rate + 1
        gust = np.interp(pos, np.arange(len(gust_curve)), gust_curve)
        level = 0.25 + 0.75 / (1 + np.exp(-1.5 * gust))
        centre = fc0 * 2 ** (0.6 * np.interp(pos, np.arange(len(centre_curve)), centre_curve) + 0.5 * (level - 0.6))
        lf = np.log2(np.maximum(freqs, 1.0))[:, None]
        mag = np.exp(-0.5 * ((lf - np.log2(centre)[None, :]) / width) ** 2)
        mag += 0.3 * np.exp(-np.maximum(freqs, 1.0)[:, None] / 150.0)  # low rumble
        if howl:
            hf = howl_f * (0.8 + 0.4 * level)
            mag += 2.0 * np.exp(-0.5 * ((lf - np.log2(hf)[None, :]) / 0.04) ** 2) * level[None, :] ** 2
        return mag * level[None, :]

    y = _stft_noise(n, sr, shape, rng)
    return _finish(y, sr)


@_sfx
def glass_clink(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Glasses clinking: one to four strikes of inharmonic, slowly beating, decaying partials."""
    n = _num_samples(duration, sr)
    f1 = min(rng.uniform(1200, 3500), _nyq(sr) / 2.4)
    ratios = np.array([1.0, 2.32, 4.25, 6.63, 9.38]) * (1 + 0.03 * rng.standard_normal(5))
    ratios[0] = 1.0
    tau1 = rng.uniform(0.3, 1.2)
    freqs = np.concatenate([f1 * ratios, f1 * ratios + rng.uniform(0.5, 3.0, 5)])  # detuned twins: beating
    decays = np.tile(tau1 / ratios**0.7, 2)
    amps = np.tile(rng.uniform(0.3, 1.0, 5) / ratios**0.5, 2) * np.repeat([1.0, rng.uniform(0.5, 1.0)], 5)
    kern = _modal_kernel(freqs, decays, amps, sr, rng, click=0.15)
    count = int(rng.integers(1, 5))
    times = _pattern(duration, rng.uniform(0, 0.005), lambda i: rng.uniform(0.15, 1.2))[:count]
    y = _convolve(_impulses(n, times, rng.uniform(0.5, 1.0, len(times)), sr), kern)
    return _finish(y, sr)


@_sfx
def bird_chirp(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Bird song: phrases of fast frequency-swept syllables (down/up sweeps, trills, warbles) at 2-7 kHz."""
    n = _num_samples(duration, sr)
    y = np.zeros(n)
    top = min(7000.0, _nyq(sr) * 0.85)
    kinds = rng.choice(4, size=int(rng.integers(1, 3)), replace=False)
    t0 = rng.uniform(0, 0.01)
    while t0 < duration:
        kind = int(rng.choice(kinds))
        count = int(rng.integers(3, 12))
        f_hi = rng.uniform(0.6, 1.0) * top
        f_lo = f_hi * rng.uniform(0.4, 0.75)
        d = rng.uniform(0.03, 0.12) if kind != 2 else rng.uniform(0.02, 0.04)
        gap = rng.uniform(0.02, 0.1) if kind != 2 else rng.uniform(0.01, 0.03)
        m = int(d * sr)
        tt = np.arange(m) / m
        if kind == 0:
            f = f_hi + (f_lo - f_hi) * tt
        elif kind == 1:
            f = f_lo + (f_hi - f_lo) * tt**2
        elif kind == 2:
            f = np.full(m, 0.5 * (f_lo + f_hi)) * (1 + 0.1 * tt)
        else:
            f = 0.5 * (f_lo + f_hi) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(2, 5) * tt))
        ph = 2 * np.pi * np.cumsum(f) / sr
        syl = (np.sin(ph) + 0.1 * np.sin(2 * ph) * (2 * f < _nyq(sr))) * np.hanning(m + 2)[1:-1]
        for _ in range(count):
            if t0 >= duration:
                break
            _add(y, int(t0 * sr), syl * rng.uniform(0.6, 1.0))
            t0 += d + gap
        t0 += rng.uniform(0.4, 2.0)
    return _finish(y, sr)


# --------------------------------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SfxClass:
    """One synthesised sound-event class.

    Attributes
    ----------
    name
        The class label (snake_case).
    fn
        The generator ``(duration, sr, rng) -> float32 array``.
    min_duration, max_duration
        A typical range of event lengths in seconds, used by the mixer when it places the event in a clip.
    """

    name: str
    fn: SfxFunction
    min_duration: float
    max_duration: float

    @property
    def description(self) -> str:
        """The first line of the generator's docstring."""
        return (self.fn.__doc__ or self.name).strip().splitlines()[0]


SFX_CLASSES: dict[str, SfxClass] = {
    c.name: c
    for c in (
        SfxClass("alarm_beep", alarm_beep, 1.5, 8.0),
        SfxClass("siren", siren, 3.0, 10.0),
        SfxClass("clock_tick", clock_tick, 2.0, 10.0),
        SfxClass("noise_burst", noise_burst, 0.5, 5.0),
        SfxClass("engine", engine, 3.0, 10.0),
        SfxClass("rain", rain, 3.0, 10.0),
        SfxClass("footsteps", footsteps, 2.0, 8.0),
        SfxClass("dog_bark", dog_bark, 0.8, 6.0),
        SfxClass("phone_ring", phone_ring, 2.0, 8.0),
        SfxClass("door_knock", door_knock, 0.6, 4.0),
        SfxClass("whistle", whistle, 1.0, 6.0),
        SfxClass("water_drip", water_drip, 2.0, 8.0),
        SfxClass("wind", wind, 3.0, 10.0),
        SfxClass("glass_clink", glass_clink, 0.5, 3.0),
        SfxClass("bird_chirp", bird_chirp, 1.5, 8.0),
    )
}
"""The synthesised classes by name, in catalogue order."""


def synthesize_sfx(name: str, duration: float, sr: int, rng: np.random.Generator | int) -> np.ndarray:
    """Generate one event of class ``name``.

    Parameters
    ----------
    name
        A key of :data:`SFX_CLASSES`.
    duration
        Length in seconds (> 0.02).
    sr
        Sample rate in Hz.
    rng
        A numpy Generator, or an int seed.

    Returns
    -------
    np.ndarray
        float32 mono signal of ``round(duration * sr)`` samples with peak :data:`PEAK`.

    Raises
    ------
    InvalidParameterError
        Unknown class, bad duration or bad generator.
    UnsupportedSampleRateError
        Bad sample rate.
    """
    if name not in SFX_CLASSES:
        raise InvalidParameterError(f"unknown sound-event class {name!r}; known: {', '.join(SFX_CLASSES)}")
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        rng = np.random.default_rng(int(rng))
    return SFX_CLASSES[name].fn(duration, sr, rng)
