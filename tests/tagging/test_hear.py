"""The HEAR 2021 API, checked the way hearvalidator checks a module (its checks are mirrored here because the
validator itself imports TensorFlow and needs Python < 3.9), plus batch consistency and the loading paths."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from audioforge.errors import AudioShapeError, NonFiniteAudioError
from audioforge.tagging import build_passt, hear, load_official_checkpoint

HEAR_RATES = {16000, 22050, 32000, 44100, 48000}


@pytest.fixture(scope="module")
def model():
    return hear.load_model("")  # the shipped default tagger


def test_without_a_shipped_tagger_a_random_model_is_built_with_a_warning(monkeypatch):
    monkeypatch.setattr(hear, "available_bundles", lambda: [])
    with pytest.warns(UserWarning, match="randomly initialised passt_mini"):
        fallback = hear.load_model("")
    assert fallback.scene_embedding_size > 0


def _noise(n_sounds: int, seconds: float, sr: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n_sounds, round(seconds * sr)), generator=g) * 2 - 1


def test_model_attributes(model):
    assert model.sample_rate in HEAR_RATES and model.sample_rate == 32000
    for name in ("scene_embedding_size", "timestamp_embedding_size"):
        value = getattr(model, name)
        assert isinstance(value, int) and not isinstance(value, bool)
    n_classes, width = model.model.head[1].out_features, model.model.head[1].in_features
    assert model.scene_embedding_size == model.timestamp_embedding_size == n_classes + width  # logits + features


@pytest.mark.parametrize("seconds", [1.07, 1.98, 4.0])
def test_timestamp_embeddings_like_hearvalidator(model, seconds):
    audio = _noise(2, seconds, model.sample_rate)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.dim() == 3 and ts.dim() == 2
    assert emb.shape[:2] == ts.shape
    assert emb.shape[2] == model.timestamp_embedding_size
    assert emb.dtype == torch.float32 and ts.dtype == torch.float32
    assert torch.isfinite(emb).all()
    diffs = ts[:, 1:] - ts[:, :-1]
    assert (diffs - diffs.mean()).abs().max() <= 1.0  # hearvalidator: > 1 ms deviation is an error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert diffs.max() <= 50.0  # hearvalidator warns above 50 ms; we assert it never happens
    assert ts.max() <= seconds * 1000.0  # a timestamp after the end of the clip is an error
    assert ts[0, 0] == 0.0 and ts.shape[1] == 1 + audio.shape[1] // 1600


def test_scene_embeddings_like_hearvalidator(model):
    audio = _noise(4, 2.74, model.sample_rate)
    emb = hear.get_scene_embeddings(audio, model)
    assert emb.shape == (4, model.scene_embedding_size)
    assert emb.dtype == torch.float32 and torch.isfinite(emb).all()


def test_batch_consistency(model):
    audio = _noise(3, 1.5, model.sample_rate, seed=4)
    scene = hear.get_scene_embeddings(audio, model)
    alone = hear.get_scene_embeddings(audio[1:2], model)
    torch.testing.assert_close(scene[1:2], alone, atol=1e-5, rtol=1e-5)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    emb1, ts1 = hear.get_timestamp_embeddings(audio[2:3], model)
    torch.testing.assert_close(emb[2:3], emb1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ts[2:3], ts1)


def test_scene_embedding_of_a_long_clip_averages_padded_windows(model):
    audio = _noise(2, 12.0, model.sample_rate, seed=5)
    emb = hear.get_scene_embeddings(audio, model)
    assert emb.shape == (2, model.scene_embedding_size) and torch.isfinite(emb).all()
    win, hop = 320000, 80000
    padded = torch.nn.functional.pad(audio[:1].unsqueeze(1), (win // 2, win // 2), mode="reflect").squeeze(1)
    starts = range(0, padded.shape[1] - win + 1, hop)
    assert len(starts) == 5
    with torch.no_grad():
        ref = torch.cat([model(padded[:, s : s + win]) for s in starts]).mean(0)
    torch.testing.assert_close(emb[0], ref, atol=1e-5, rtol=1e-5)


def test_very_short_clips(model):
    emb, ts = hear.get_timestamp_embeddings(_noise(1, 0.01, model.sample_rate), model)
    assert emb.shape == (1, 1, model.timestamp_embedding_size) and ts.tolist() == [[0.0]]
    assert hear.get_scene_embeddings(_noise(1, 0.01, model.sample_rate), model).shape == (1, model.scene_embedding_size)


def test_numpy_input_and_validation(model):
    audio = _noise(2, 1.0, model.sample_rate).numpy()
    torch.testing.assert_close(hear.get_scene_embeddings(audio, model),
                               hear.get_scene_embeddings(torch.from_numpy(audio), model))
    with pytest.raises(AudioShapeError):
        hear.get_scene_embeddings(audio[0], model)
    audio[0, 10] = np.inf
    with pytest.raises(NonFiniteAudioError):
        hear.get_timestamp_embeddings(audio, model)


def test_load_model_from_bundle_and_checkpoint(tmp_path):
    net = build_passt("passt_mini", num_classes=20)
    path = tmp_path / "small.pt"
    torch.save(net.state_dict(), path)
    from_pt = hear.load_model(str(path), arch="passt_mini", mode="features")
    assert from_pt.scene_embedding_size == 96 and from_pt.timestamp_embedding_size == 96
    folder = load_official_checkpoint(path, arch="passt_mini").save(tmp_path / "bundle")
    from_bundle = hear.load_model(folder)
    assert from_bundle.scene_embedding_size == 20 + 96
    audio = _noise(1, 1.0, 32000)
    torch.testing.assert_close(hear.get_scene_embeddings(audio, from_bundle)[:, 20:],
                               hear.get_scene_embeddings(audio, from_pt))
    logits_only = hear.load_model(folder, mode="logits")
    assert hear.get_scene_embeddings(audio, logits_only).shape == (1, 20)
