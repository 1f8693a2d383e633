"""audioforge.audio: load/save round trips, resampling against an independent reference, validation errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audioforge import audio
from audioforge.errors import (
    AudioDTypeError,
    AudioFileError,
    AudioForgeError,
    AudioShapeError,
    EmptyAudioError,
    InvalidParameterError,
    NonFiniteAudioError,
    UnsupportedSampleRateError,
)


def _tone(sr: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_save_load_round_trip(tmp_path, ext):
    y = _tone(16000, 0.5)
    path = audio.save(tmp_path / f"a.{ext}", y, 16000)
    z, sr = audio.load(path)
    assert sr == 16000 and z.dtype == np.float32 and z.ndim == 1
    tol = 1e-4 if ext != "ogg" else 0.05  # vorbis is lossy
    assert abs(len(z) - len(y)) <= (0 if ext != "ogg" else 2000)
    n = min(len(z), len(y))
    assert np.sqrt(np.mean((z[:n] - y[:n]) ** 2)) < tol


def test_stereo_load_mono_and_channels(tmp_path):
    left, right = _tone(8000, 0.25, 300.0), _tone(8000, 0.25, 500.0)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    mono, _ = audio.load(tmp_path / "s.wav")
    both, _ = audio.load(tmp_path / "s.wav", mono=False)
    assert both.shape == (2, left.size)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-6)
    np.testing.assert_allclose(audio.to_mono(both), mono, atol=1e-6)


def test_load_offset_duration_and_resample(tmp_path):
    y = _tone(16000, 1.0)
    audio.save(tmp_path / "a.wav", y, 16000, subtype="FLOAT")
    part, _ = audio.load(tmp_path / "a.wav", offset=0.25, duration=0.5)
    np.testing.assert_allclose(part, y[4000:12000], atol=1e-7)
    z, sr = audio.load(tmp_path / "a.wav", sr=8000)
    assert sr == 8000 and abs(z.size - 8000) <= 1


def test_resample_matches_band_limited_reference():
    # a 1 kHz tone resampled 44.1k -> 16k must equal the analytically sampled tone
    y = _tone(44100, 1.0, 1000.0).astype(np.float64)
    z = audio.resample(y, 44100, 16000)
    ref = 0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(z.size) / 16000)
    mid = slice(200, -200)  # the filter's edge transients are excluded
    assert np.max(np.abs(z[mid] - ref[mid])) < 1e-3
    zt = audio.resample(torch.from_numpy(np.stack([y, y])), 44100, 16000)
    assert isinstance(zt, torch.Tensor) and zt.shape[0] == 2 and zt.dtype == torch.float64


def test_pcm_conversions():
    pcm = np.array([-32768, 0, 16384, 32767], dtype=np.int16)
    f = audio.pcm_to_float(pcm)
    np.testing.assert_allclose(f, [-1.0, 0.0, 0.5, 32767 / 32768], rtol=0)
    np.testing.assert_array_equal(audio.float_to_pcm16(f), pcm)
    assert audio.float_to_pcm16(np.array([2.0, -2.0], dtype=np.float32)).tolist() == [32767, -32768]
    np.testing.assert_allclose(audio.pcm_to_float(np.array([0, 128, 255], dtype=np.uint8)), [-1.0, 0.0, 127 / 128])
    assert audio.pcm_to_float(torch.tensor([16384], dtype=torch.int16)).item() == 0.5
    with pytest.raises(AudioDTypeError):
        audio.pcm_to_float(np.array([1], dtype=np.int64))


def test_save_is_atomic_and_refuses_out_of_range(tmp_path):
    target = tmp_path / "x.wav"
    audio.save(target, _tone(8000, 0.1), 8000)
    before = target.read_bytes()
    with pytest.raises(InvalidParameterError, match="outside"):
        audio.save(target, np.full(100, 1.5, dtype=np.float32), 8000)
    assert target.read_bytes() == before  # the old file survives a failed write
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    audio.save(tmp_path / "f.wav", np.full(100, 1.5, dtype=np.float32), 8000, subtype="FLOAT")


@pytest.mark.parametrize(
    ("content", "err"),
    [
        (b"", AudioFileError),
        (b"RIFF\x00\x00\x00\x00WAVEjunkjunk", AudioFileError),
        (b"hello world" * 10, AudioFileError),
    ],
)
def test_corrupt_files(tmp_path, content, err):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(err, match=r"bad\.wav"):
        audio.load(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(AudioFileError, match="not found"):
        audio.load(tmp_path / "nope.wav")
    with pytest.raises(AudioFileError, match="directory"):
        audio.load(tmp_path)
    with pytest.raises(AudioFileError, match="extension"):
        audio.save(tmp_path / "a.xyz", _tone(8000, 0.1), 8000)


def test_empty_window(tmp_path):
    audio.save(tmp_path / "a.wav", _tone(8000, 0.1), 8000)
    with pytest.raises(EmptyAudioError):
        audio.load(tmp_path / "a.wav", offset=5.0)


@pytest.mark.parametrize("sr", [0, -16000, 16.0, 16000.5, float("nan"), "16000", True, 10**7])
def test_bad_sample_rates(sr):
    with pytest.raises(UnsupportedSampleRateError):
        audio.validate_sample_rate(sr)


def test_supported_rate_list_and_validation():
    assert audio.validate_sample_rate(16000.0) == 16000
    with pytest.raises(UnsupportedSampleRateError, match="resample"):
        audio.validate_sample_rate(22050, supported=(16000, 32000))
    with pytest.raises(NonFiniteAudioError):
        audio.validate_audio(np.array([np.nan], dtype=np.float32))
    with pytest.raises(AudioShapeError):
        audio.validate_audio(np.zeros((2, 3), dtype=np.float32), allow_multichannel=False)
    with pytest.raises(EmptyAudioError):
        audio.validate_audio(torch.zeros(2, 0))
    with pytest.raises(AudioDTypeError):
        audio.validate_audio([0.0])
    assert issubclass(AudioFileError, AudioForgeError) and issubclass(AudioFileError, OSError)
