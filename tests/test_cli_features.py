"""``audioforge mel``, ``fbank`` and ``info`` end to end, through the installed entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audioforge.audio import save

librosa = pytest.importorskip("librosa")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from audioforge.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> tuple[Path, np.ndarray]:
    t = np.arange(16000 * 2) / 16000
    y = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    path = tmp_path_factory.mktemp("cli") / "tone.wav"
    save(path, y, 16000, subtype="FLOAT")
    return path, y


def test_mel_writes_librosa_log_mel_and_a_plot(wav, tmp_path: Path) -> None:
    path, y = wav
    out, png = tmp_path / "m.npy", tmp_path / "m.png"
    res = _cli("mel", str(path), "--out", str(out), "--plot", str(png), "--n-fft", "800", "--hop-length", "200",
               "--n-mels", "80", "--fmin", "55", "--fmax", "7600")
    assert res.returncode == 0, res.stderr
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16000, n_fft=800, hop_length=200, n_mels=80,
                                                             fmin=55, fmax=7600))
    got = np.load(out)
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-3
    assert png.stat().st_size > 1000 and "80 x 161 frames" in res.stdout


def test_fbank_writes_kaldi_features(wav, tmp_path: Path) -> None:
    knf = pytest.importorskip("kaldi_native_fbank")
    path, y = wav
    out = tmp_path / "f.npy"
    res = _cli("fbank", str(path), "--out", str(out))
    assert res.returncode == 0, res.stderr
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    opts.energy_floor = 0.0
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, (y * 32768.0).tolist())
    fb.input_finished()
    ref = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    got = np.load(out)
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-3


def test_info_and_a_clear_error_for_a_missing_file(tmp_path: Path) -> None:
    res = _cli("info")
    assert res.returncode == 0 and "native mel kernel" in res.stdout and "torch threads" in res.stdout
    bad = _cli("mel", str(tmp_path / "missing.wav"))
    assert bad.returncode == 2 and "missing.wav" in (bad.stderr + bad.stdout) and "Traceback" not in bad.stderr
