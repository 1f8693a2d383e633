"""Tagger: bundles, resampling, sliding windows, timeline, batches and input validation (passt_mini, random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioforge.audio import resample
from audioforge.bundle import Bundle
from audioforge.errors import (
    AudioDTypeError,
    AudioShapeError,
    CheckpointError,
    EmptyAudioError,
    InvalidParameterError,
    NonFiniteAudioError,
    UnsupportedSampleRateError,
)
from audioforge.tagging import PasstFrontend, Tagger, build_passt

SR = 32000
RNG = np.random.default_rng(11)


def _bundle(multi_label: bool = True, num_classes: int = 527) -> Bundle:
    torch.manual_seed(0)
    model = build_passt("passt_mini", num_classes=num_classes)
    return Bundle(
        task="tagging",
        architecture="passt_mini",
        hyperparameters=model.config(),
        state_dict=model.state_dict(),
        frontend=PasstFrontend().config(),
        labels=[f"tag{i}" for i in range(num_classes)],
        options={"multi_label": multi_label},
    )


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger.load(_bundle())


def _tone(seconds: float, sr: int = SR, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _noise(seconds: float) -> np.ndarray:
    return (0.1 * RNG.standard_normal(round(seconds * SR))).astype(np.float32)


def test_single_clip(tagger):
    out = tagger(_noise(3.0), SR)
    assert out.probs.shape == (527,) and out.logits.shape == (527,) and out.embeddings.shape == (96,)
    assert out.n_windows == 1 and not out.padded and out.duration == pytest.approx(3.0)
    assert ((out.probs > 0) & (out.probs < 1)).all()
    np.testing.assert_allclose(out.probs, 1 / (1 + np.exp(-out.logits)), rtol=1e-5)
    top = out.top_k(3)
    assert len(top) == 3 and [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert top[0] == (out.labels[int(np.argmax(out.probs))], pytest.approx(float(out.probs.max())))


def test_torch_input_and_batch_rows_match_single_calls(tagger):
    x = np.stack([_noise(2.0), _tone(2.0)])
    batch = tagger(torch.from_numpy(x), SR)
    assert batch.batched and batch.probs.shape == (2, 527) and batch.embeddings.shape == (2, 96)
    assert len(batch.top_k(2)) == 2
    one = tagger(x[1], SR)
    np.testing.assert_allclose(batch.probs[1], one.probs, atol=1e-5)
    np.testing.assert_allclose(batch.embeddings[1], one.embeddings, atol=1e-5)


@pytest.mark.parametrize("sr", [16000, 44100, 48000])
def test_other_rates_are_resampled(tagger, sr):
    x = _tone(2.0, sr)
    out = tagger(x, sr)
    same = tagger(resample(x, sr, SR), SR)
    np.testing.assert_array_equal(out.probs, same.probs)
    native = tagger(_tone(2.0, SR), SR)
    np.testing.assert_allclose(out.embeddings, native.embeddings, atol=0.05 * np.abs(native.embeddings).max())
    assert out.duration == pytest.approx(2.0, abs=1e-4)


@pytest.mark.parametrize(("seconds", "starts"), [(25.0, [0, 5, 10, 15]), (23.0, [0, 5, 10, 13]), (10.0, [0])])
def test_long_clips_use_sliding_windows(tagger, seconds, starts):
    x = _noise(seconds)
    out = tagger(x, SR)
    assert out.n_windows == len(starts)
    windows = [tagger(x[s * SR : s * SR + 10 * SR], SR) for s in starts]
    np.testing.assert_allclose(out.probs, np.mean([w.probs for w in windows], axis=0), atol=1e-5)
    np.testing.assert_allclose(out.embeddings, np.mean([w.embeddings for w in windows], axis=0), atol=1e-5)


def test_hop_is_configurable():
    t = Tagger.load(_bundle(), hop_seconds=2.5)
    assert t(_noise(20.0), SR).n_windows == 5
    with pytest.raises(InvalidParameterError):
        Tagger.load(_bundle(), window_seconds=11.0)  # more than the time embeddings cover (10.05 s)
    with pytest.raises(InvalidParameterError):
        Tagger.load(_bundle(), window_seconds=4.0, hop_seconds=5.0)


def test_timeline_native_and_resampled(tagger):
    x = _noise(3.0)
    out = tagger(x, SR)
    times, probs = out.timeline()
    assert probs.shape == (29, 527) and times.shape == (29,)  # 300 frames -> 29 time patches
    np.testing.assert_allclose(np.diff(times), 0.1, atol=1e-9)
    assert times[0] == pytest.approx(7.5 * 320 / SR) and times[-1] <= 3.0
    # native values are the sigmoid of the model's per-column logits
    with torch.no_grad():
        _, _, frame_logits = tagger.model.forward_timeline(tagger.frontend(torch.from_numpy(x)[None]))
    np.testing.assert_allclose(probs, torch.sigmoid(frame_logits[0]).numpy(), atol=1e-6)
    t2, p2 = out.timeline(0.25)
    np.testing.assert_allclose(np.diff(t2), 0.25, atol=1e-9)
    assert p2.shape == (len(t2), 527) and t2[-1] <= times[-1] + 1e-9
    np.testing.assert_allclose(p2[0], probs[0], atol=1e-6)
    with pytest.raises(InvalidParameterError):
        out.timeline(0)


def test_timeline_of_long_clip_covers_it(tagger):
    out = tagger(_noise(23.0), SR)
    times, probs = out.timeline()
    assert probs.shape == (len(times), 527)
    assert times[-1] == pytest.approx(13.0 + 9.875, abs=1e-6) and times[-1] <= 23.0
    np.testing.assert_allclose(np.diff(times), 0.1, atol=1e-9)
    assert np.isfinite(probs).all() and ((probs >= 0) & (probs <= 1)).all()
    batch = tagger(np.stack([_noise(23.0), _noise(23.0)]), SR)
    assert batch.timeline()[1].shape == (2, len(times), 527)


def test_short_clip_is_padded(tagger):
    out = tagger(_noise(0.05), SR)
    assert out.padded and out.n_windows == 1 and out.duration == pytest.approx(0.05)
    assert np.isfinite(out.probs).all()


def test_single_label_bundle_uses_softmax():
    t = Tagger.load(_bundle(multi_label=False, num_classes=10))
    out = t(_noise(1.0), SR)
    assert out.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert t(_noise(1.0), SR).timeline()[1].sum(axis=-1) == pytest.approx(1.0, abs=1e-5)


def test_bad_input(tagger):
    bad = _noise(1.0)
    bad[100] = np.nan
    with pytest.raises(NonFiniteAudioError):
        tagger(bad, SR)
    with pytest.raises(EmptyAudioError):
        tagger(np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(AudioShapeError):
        tagger(np.zeros((1, 2, 100), dtype=np.float32), SR)
    with pytest.raises(AudioShapeError):
        tagger(np.zeros((0, 100), dtype=np.float32), SR)
    with pytest.raises(AudioDTypeError):
        tagger(np.zeros(1000, dtype=np.int16), SR)
    with pytest.raises(AudioDTypeError):
        tagger([0.0, 0.1], SR)
    for sr in (0, 16000.5, "32k", 10**7):
        with pytest.raises(UnsupportedSampleRateError):
            tagger(_noise(1.0), sr)
    with pytest.raises(InvalidParameterError):
        tagger(_noise(1.0), SR).top_k(0)


def test_bundle_problems():
    with pytest.raises(CheckpointError, match="shipped"):
        Tagger.load("no_such_bundle")
    b = _bundle()
    del b.state_dict["norm.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): norm\.weight"):
        Tagger.load(b)
    b = _bundle()
    b.task = "asr"
    with pytest.raises(CheckpointError, match="task"):
        Tagger.load(b)
    b = _bundle()
    b.labels = b.labels[:5]
    with pytest.raises(CheckpointError, match="labels"):
        Tagger.load(b)


def test_load_fits_the_window_to_short_time_embeddings():
    torch.manual_seed(0)
    model = build_passt("passt_mini", num_classes=3, img_size=[128, 400])  # 40 time patches: about 4 s
    bundle = Bundle(task="tagging", architecture="passt_mini", hyperparameters=model.config(),
                    state_dict=model.state_dict(), frontend=PasstFrontend().config(), labels=["a", "b", "c"])
    short = Tagger.load(bundle)
    assert short.window < 5.0 * short.sample_rate and abs(short.hop - short.window / 2) <= 1
    result = short(_noise(9.0), SR)  # longer than the window: sliding windows, no crash
    assert result.probs.shape[-1] == 3 and result.n_windows >= 2
