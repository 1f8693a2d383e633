"""YIN and CREPE tiny: against librosa.yin, synthetic tones and glides, an instrument-corpus clip, bad input."""

from __future__ import annotations

import glob

import librosa
import numpy as np
import pytest
import torch

from audioforge.ddsp import CrepeTiny, crepe_f0, estimate_f0, load_crepe_tiny, yin_f0
from audioforge.ddsp.pitch import crepe_weights_path
from audioforge.errors import AudioForgeError, CheckpointError, UnsupportedSampleRateError

SR = 16000


def _cents(f: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return 1200 * np.abs(np.log2(np.maximum(f, 1e-3) / ref))


def _tone(freq: float, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _glide(seconds: float = 1.0):
    t = np.arange(int(seconds * SR)) / SR
    inst = 220.0 * 2 ** (t / seconds)  # one octave up
    y = (0.5 * np.sin(2 * np.pi * np.cumsum(inst) / SR)).astype(np.float32)
    truth = 220.0 * 2 ** ((np.arange(len(t) // 64 + 1) * 64 / SR) / seconds)
    return y, truth


@pytest.mark.parametrize("freq", [82.4, 220.0, 440.0, 1046.5])
def test_yin_tones_and_librosa(freq):
    y = _tone(freq)
    f0, conf = yin_f0(y, SR)
    assert len(f0) == len(y) // 64 + 1
    inner = slice(10, -10)
    assert np.max(_cents(f0[inner], freq)) < 5.0
    assert conf[inner].min() > 0.9
    ref = librosa.yin(y, fmin=40, fmax=2000, sr=SR, frame_length=1024, hop_length=64)
    assert np.median(_cents(f0[inner], ref[inner])) < 20.0  # librosa is 7-15 cents sharp at 82 Hz
    assert np.median(_cents(f0[inner], freq)) <= np.median(_cents(ref[inner], freq)) + 1.0


def test_yin_glide_and_resampling():
    y, truth = _glide()
    f0, _ = yin_f0(y, SR)
    assert np.max(_cents(f0[10:-10], truth[10:-10])) < 10.0
    y44 = librosa.resample(y, orig_sr=SR, target_sr=44100)
    f44, _ = estimate_f0(y44, 44100, method="yin")
    assert abs(len(f44) - len(f0)) <= 1
    assert np.median(_cents(f44[10:-10], truth[10 : len(f44) - 10])) < 10.0


def test_crepe_loads_strictly_and_rejects_bad_weights(tmp_path):
    model = load_crepe_tiny()
    assert isinstance(model, CrepeTiny) and not model.training
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(0.487e6, rel=0.01)
    sd = torch.load(crepe_weights_path(), weights_only=True)
    sd["extra.weight"] = torch.zeros(1)
    del sd["conv6.bias"]
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(CheckpointError, match=r"conv6\.bias"):
        load_crepe_tiny(bad)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_crepe_tiny(tmp_path / "junk.pth")


def test_crepe_tone_and_glide_within_20_cents():
    f0, conf = crepe_f0(_tone(440.0, 0.6), SR)
    assert np.max(_cents(f0[10:-10], 440.0)) < 20.0
    assert conf[10:-10].min() > 0.5
    y, truth = _glide(0.8)
    for decoder in ("viterbi", "argmax"):
        f0, _ = crepe_f0(y, SR, decoder=decoder)
        assert np.max(_cents(f0[10:-10], truth[10:-10])) < 20.0


@pytest.mark.parametrize("method", ["yin", "crepe"])
def test_silence_and_bad_input(method):
    f0, conf = estimate_f0(np.zeros(4000, np.float32), SR, method=method)
    assert np.all(conf < 1e-3) and np.all(np.isfinite(f0))
    quiet = 1e-6 * np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    assert np.all(estimate_f0(quiet, SR, method=method)[1] < 1e-3)
    with pytest.raises(AudioForgeError):
        estimate_f0(np.array([0.0, np.nan] * 100, np.float32), SR, method=method)
    with pytest.raises(UnsupportedSampleRateError):
        estimate_f0(np.zeros(4000, np.float32), 16, method=method)
    with pytest.raises(AudioForgeError):
        estimate_f0(np.zeros((2, 4000), np.float32), SR, method=method)  # stereo
    with pytest.raises(AudioForgeError):
        estimate_f0(np.zeros(4000, np.int16), SR, method=method)
    with pytest.raises(AudioForgeError):
        estimate_f0(np.zeros(4000, np.float32), SR, method=method, hop_length=0)


def test_unknown_method():
    with pytest.raises(AudioForgeError):
        estimate_f0(np.zeros(100, np.float32), SR, method="pyin")


@pytest.fixture(scope="module")
def corpus_clip(tmp_path_factory):
    pytest.importorskip("fluidsynth")
    from audioforge.audio import load
    from audioforge.corpora.instruments import generate_instrument_corpus

    out = tmp_path_factory.mktemp("instruments")
    try:
        generate_instrument_corpus(out, programs="alto_sax", minutes=4 / 60, clip_seconds=4, heldout_minutes=4 / 60,
                                   workers=1, progress=False)
    except AudioForgeError as exc:  # soundfonts missing
        pytest.skip(str(exc))
    wav = glob.glob(str(out / "test" / "*" / "*.wav"))[0]  # held out: TimGM6mb
    y, sr = load(wav)
    return y, sr, np.load(wav.replace(".wav", ".f0.npy"))


def _rpa(f0: np.ndarray, truth: np.ndarray) -> float:
    n = min(len(f0), len(truth))
    voiced = truth[:n] > 0
    return float(np.mean(_cents(f0[:n][voiced], truth[:n][voiced]) < 50))


@pytest.mark.tools
def test_yin_on_corpus_clip(corpus_clip):
    y, sr, truth = corpus_clip
    f0, _ = yin_f0(y, sr)
    assert len(f0) == len(truth)
    assert _rpa(f0, truth) > 0.85  # measured 0.97 (alto sax, held-out soundfont)


@pytest.mark.tools
@pytest.mark.slow
def test_crepe_on_corpus_clip(corpus_clip):
    y, sr, truth = corpus_clip
    f0, _ = crepe_f0(y, sr)
    assert _rpa(f0, truth) > 0.9  # measured 0.99
