"""Waveform augmentation: tempo, pitch, speed, gain, noise at SNR, synthetic reverberation, band-limiting."""

from __future__ import annotations

import numpy as np
import pytest

from audioforge.corpora import augment as A
from audioforge.errors import InvalidParameterError

SR = 16000


def tone(freq: float = 220.0, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_freq(y: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spec) * SR / len(y))


def speechlike(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """Bursts of harmonic tones with gaps, a stand-in for speech with silences."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(SR * seconds), np.float32)
    for start in np.arange(0.1, seconds - 0.3, 0.4):
        seg = sum(tone(f, 0.25, 0.2) for f in rng.uniform(100, 1500, 3))
        i = int(start * SR)
        y[i: i + len(seg)] += seg
    return y


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_tempo_changes_length_not_pitch(rate: float) -> None:
    y = tone(seconds=2.0)
    z = A.tempo(y, SR, rate)
    assert len(z) == round(len(y) / rate)
    assert abs(peak_freq(z) - 220.0) < 3.0
    assert np.abs(z[800:-800]).max() == pytest.approx(0.5, abs=0.05)


def test_pitch_shift_keeps_length_changes_pitch() -> None:
    y = tone(seconds=2.0)
    z = A.pitch_shift(y, SR, 3.0)
    assert len(z) == len(y)
    assert abs(peak_freq(z) - 220.0 * 2 ** (3 / 12)) < 3.0


def test_speed_changes_both() -> None:
    z = A.speed(tone(seconds=2.0), SR, 1.1)
    assert abs(len(z) - 2 * SR / 1.1) <= 2
    assert abs(peak_freq(z) - 242.0) < 3.0


def test_gain_and_peak_limit() -> None:
    y = tone(amp=0.1)
    assert A.rms_db(A.gain(y, 6.0)) - A.rms_db(y) == pytest.approx(6.0, abs=1e-3)
    z, db = A.peak_limit(tone(amp=2.0), 0.99)
    assert np.abs(z).max() == pytest.approx(0.99, abs=1e-4) and db < 0
    _, db0 = A.peak_limit(y)
    assert db0 == 0.0


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_noise_is_added_at_the_requested_snr(snr: float, color: str) -> None:
    y = speechlike()
    z = A.add_noise(y, snr, np.random.default_rng(1), color=color, sr=SR)
    measured = 10 * np.log10(A._active_power(y, SR) / np.mean((z - y).astype(np.float64) ** 2))
    assert measured == pytest.approx(snr, abs=0.05)


def test_noise_colors_have_the_expected_slope() -> None:
    rng = np.random.default_rng(0)
    f = np.fft.rfftfreq(SR * 4, 1 / SR)
    low, high = (f > 100) & (f < 200), (f > 3000) & (f < 6000)
    ratios = {}
    for color in ("white", "pink", "brown"):
        p = np.abs(np.fft.rfft(A.colored_noise(SR * 4, rng, color))) ** 2
        ratios[color] = 10 * np.log10(p[low].mean() / p[high].mean())
    assert abs(ratios["white"]) < 2 and 10 < ratios["pink"] < 20 and ratios["brown"] > 25


def test_synthetic_rir_decays_at_rt60() -> None:
    rir = A.synthetic_rir(SR, 0.5, np.random.default_rng(0), drr_db=0.0)
    assert rir[0] == 1.0 and len(rir) == SR // 2
    tail = rir[1:].astype(np.float64) ** 2
    early = tail[: SR // 20].mean()
    late = tail[SR // 4: SR // 4 + SR // 20].mean()
    # 0.25 s into a 0.5 s RT60 is ~30 dB down
    assert 20 < 10 * np.log10(early / late) < 40
    assert 10 * np.log10(1.0 / tail.sum()) == pytest.approx(0.0, abs=0.01)


def test_reverb_keeps_length_and_level() -> None:
    y = speechlike()
    z = A.reverb(y, A.synthetic_rir(SR, 0.6, np.random.default_rng(0)))
    assert len(z) == len(y)
    assert A.rms_db(z) == pytest.approx(A.rms_db(y), abs=0.01)
    gap = slice(int(0.36 * SR), int(0.49 * SR))  # a silent gap of the input is filled by the tail
    assert np.abs(y[gap]).max() == 0 and np.abs(z[gap]).max() > 1e-3


def test_bandlimit_removes_out_of_band_energy() -> None:
    y = tone(1000.0) + tone(6000.0) + tone(100.0)
    z = A.bandlimit(y, SR, 300.0, 3400.0)
    spec = np.abs(np.fft.rfft(z)) ** 2
    f = np.fft.rfftfreq(len(z), 1 / SR)
    in_band = spec[(f > 900) & (f < 1100)].sum()
    assert spec[(f > 5500)].sum() / in_band < 1e-4
    assert spec[(f < 150)].sum() / in_band < 1e-3
    assert np.allclose(A.bandlimit(y, SR, 0.0, SR / 2), y)


def test_random_augment_is_replayable_and_deterministic() -> None:
    y = speechlike()
    for seed in range(12):
        z1, p1 = A.random_augment(y, SR, np.random.default_rng(seed))
        z2, p2 = A.random_augment(y, SR, np.random.default_rng(seed))
        assert p1 == p2 and np.array_equal(z1, z2)
        replay = A.apply_augmentation(y, SR, {k: v for k, v in p1.items() if k != "limited_db"})
        assert np.array_equal(replay, z1)
        assert np.abs(z1).max() <= 0.99 + 1e-6 and np.isfinite(z1).all() and z1.dtype == np.float32


def test_clean_config_only_sets_level() -> None:
    _, p = A.random_augment(speechlike(), SR, np.random.default_rng(0), A.AugmentConfig.clean())
    assert set(p) <= {"level_db", "limited_db"}


@pytest.mark.parametrize(
    "call",
    [
        lambda: A.tempo(tone(), SR, 3.0),
        lambda: A.pitch_shift(tone(), SR, 20.0),
        lambda: A.speed(tone(), SR, 10.0),
        lambda: A.synthetic_rir(SR, 10.0, np.random.default_rng(0)),
        lambda: A.bandlimit(tone(), SR, 3000.0, 300.0),
        lambda: A.colored_noise(100, np.random.default_rng(0), "purple"),
        lambda: A.add_noise(np.zeros(100, np.float32), 10.0, np.random.default_rng(0)),
        lambda: A.AugmentConfig(p_noise=2.0),
    ],
)
def test_bad_parameters_raise(call) -> None:
    with pytest.raises(InvalidParameterError):
        call()
