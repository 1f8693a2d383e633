"""ASR training data: manifests, augmentation, dynamic batching, DataModule. Also the shared corpus fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audioforge.asr.data import (
    AsrDataConfig,
    AsrDataModule,
    AsrDataset,
    DynamicBatchSampler,
    collate_batch,
    entry_durations,
    load_manifest,
    speed_perturb,
)
from audioforge.asr.model import IGNORE_ID
from audioforge.asr.tokenizer import CharTokenizer
from audioforge.corpora.manifest import Manifest
from audioforge.errors import InvalidParameterError, ManifestError

LETTERS = "abcdefgh"
WORDS = ["bad", "cab", "fed", "hag", "bead", "face", "gab", "head"]


def _tone_text_audio(text: str, sr: int = 16000) -> np.ndarray:
    """A learnable toy 'speech': one 90 ms tone per letter (frequency by letter), 60 ms silence between words."""
    parts = [np.zeros(int(0.1 * sr), np.float32)]
    t = np.arange(int(0.09 * sr)) / sr
    for ch in text:
        if ch == " ":
            parts.append(np.zeros(int(0.06 * sr), np.float32))
        else:
            f = 300.0 + 250.0 * LETTERS.index(ch)
            parts.append((0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32))
    parts.append(np.zeros(int(0.1 * sr), np.float32))
    return np.concatenate(parts)


def write_tone_corpus(folder: Path, n: int = 12, seed: int = 0) -> Path:
    """A small manifest of tone 'utterances' with ``txt`` (train and test splits); returns the manifest path."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4))))
        y = _tone_text_audio(text)
        wav = folder / f"u{i:03d}.wav"
        sf.write(wav, y, 16000)
        rows.append({"key": f"u{i:03d}", "wav": wav.name, "txt": text, "duration": len(y) / 16000,
                     "split": "test" if i % 4 == 3 else "train"})
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tone_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"), n=16)


@pytest.fixture(scope="session")
def tone_tokenizer() -> CharTokenizer:
    return CharTokenizer.build([*WORDS, "a b"])


# ---------------------------------------------------------------------------------------------------------- tests


def test_config_validation() -> None:
    assert AsrDataConfig.from_dict({"max_batch_seconds": 10}).max_batch_seconds == 10
    with pytest.raises(InvalidParameterError, match="unknown data settings"):
        AsrDataConfig.from_dict({"batch": 3})
    with pytest.raises(InvalidParameterError, match="speeds"):
        AsrDataConfig(speeds=[])
    with pytest.raises(InvalidParameterError, match="max_batch_seconds"):
        AsrDataConfig(max_batch_seconds=0)
    with pytest.raises(InvalidParameterError, match="min_duration"):
        AsrDataConfig(min_duration=5, max_duration=1)
    for bad in ([1.1, 0.9], [0.9], [0.5, 1.0], 0.9, ["a", "b"]):
        with pytest.raises(InvalidParameterError, match=r"vtlp must be \[low, high\]"):
            AsrDataConfig(vtlp=bad)
    assert AsrDataConfig.from_dict(AsrDataConfig().to_dict()) == AsrDataConfig()


def test_load_manifest_errors(tmp_path: Path, tone_manifest: Path) -> None:
    m = load_manifest(tone_manifest, split="train")
    assert len(m) == 12 and all(e["split"] == "train" for e in m)
    with pytest.raises(ManifestError, match="no entries"):
        load_manifest(tone_manifest, split="dev")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"key": "a", "wav": "a.wav"}) + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="txt"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "missing.jsonl")


def test_durations_from_header(tone_manifest: Path) -> None:
    m = Manifest.load(tone_manifest)
    stripped = Manifest([{k: v for k, v in e.items() if k != "duration"} for e in m], root=m.root)
    assert np.allclose(entry_durations(stripped), [e["duration"] for e in m], atol=1e-4)


def test_speed_perturb_changes_length() -> None:
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    assert speed_perturb(x, 1.0, 16000) is x
    assert abs(speed_perturb(x, 1.1, 16000).shape[0] - 16000 / 1.1) < 50
    assert abs(speed_perturb(x, 0.9, 16000).shape[0] - 16000 / 0.9) < 50


def test_dataset_items_and_augmentation(tone_manifest: Path, tone_tokenizer: CharTokenizer) -> None:
    m = load_manifest(tone_manifest)
    plain = AsrDataset(m, tone_tokenizer, train=False)
    item = plain[0]
    assert item["feats"].shape[1] == 80 and item["feats"].dtype == torch.float32
    assert tone_tokenizer.decode(item["tokens"].tolist()) == m[0]["txt"]
    assert torch.equal(plain[0]["feats"], item["feats"])  # no randomness in eval
    cfg = AsrDataConfig(speeds=[1.1], dither=1.0)
    aug = AsrDataset(m, tone_tokenizer, config=AsrDataConfig(speeds=[0.9, 1.1], dither=1.0), train=True)
    a, b = aug[0], aug[0]
    assert torch.equal(a["feats"], b["feats"])  # seeded per (epoch, index)
    aug.set_epoch(1)
    assert not torch.equal(aug[0]["feats"], a["feats"])
    fast = AsrDataset(m, tone_tokenizer, config=cfg, train=True)
    assert fast[0]["feats"].shape[0] < item["feats"].shape[0]  # 1.1x speed: fewer frames
    masked = AsrDataset(m, tone_tokenizer, config=AsrDataConfig(speeds=[1.0], dither=0.0), train=True)[0]["feats"]
    assert (masked == 0).sum() > 0 and (item["feats"] == 0).sum() == 0  # SpecAugment zeros


def test_collate_pads() -> None:
    items = [{"key": "a", "feats": torch.ones(5, 80), "tokens": torch.tensor([3, 4])},
             {"key": "b", "feats": torch.ones(3, 80), "tokens": torch.tensor([5, 6, 7])}]
    batch = collate_batch(items)
    assert batch["feats"].shape == (2, 5, 80) and batch["feats"][1, 3:].abs().sum() == 0
    assert batch["feats_lens"].tolist() == [5, 3] and batch["tokens_lens"].tolist() == [2, 3]
    assert batch["tokens"][0, 2].item() == IGNORE_ID
    with pytest.raises(InvalidParameterError):
        collate_batch([])


def test_dynamic_batches_respect_bounds_and_cover_everything() -> None:
    rng = np.random.default_rng(0)
    durs = rng.uniform(1, 10, size=200).tolist()
    s = DynamicBatchSampler(durs, max_batch_seconds=40, max_batch_size=8, sort_window=50, seed=1)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) <= 8
        assert len(b) == 1 or max(durs[i] for i in b) * len(b) <= 40
    assert list(s) == batches
    s.set_epoch(1)
    assert list(s) != batches
    ordered = list(DynamicBatchSampler(durs, max_batch_seconds=40, shuffle=False))
    flat = [durs[i] for b in ordered for i in b]
    assert flat == sorted(flat)


def test_dynamic_batches_shard_over_ranks() -> None:
    durs = [1.0 + (i % 7) for i in range(101)]
    shards = [list(DynamicBatchSampler(durs, max_batch_seconds=20, seed=0, rank=r, world_size=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) > 0
    assert not {i for b in shards[0] for i in b} & {i for b in shards[1] for i in b}
    with pytest.raises(InvalidParameterError, match="rank"):
        DynamicBatchSampler(durs, max_batch_seconds=20, rank=2, world_size=2)


def test_datamodule_loaders(tone_manifest: Path, tone_tokenizer: CharTokenizer) -> None:
    train, valid = AsrDataModule.split_valid(load_manifest(tone_manifest), 0.25)
    assert len(valid) == 4 and len(train) == 12
    assert not {e["key"] for e in train} & {e["key"] for e in valid}
    dm = AsrDataModule(train, valid, tone_tokenizer, config=AsrDataConfig(max_batch_seconds=5.0))
    batches = list(dm.train_dataloader())
    assert sum(len(b["keys"]) for b in batches) == 12
    assert all(b["feats"].shape[0] * b["feats"].shape[1] <= 5.0 * 110 * 1.2 or len(b["keys"]) == 1 for b in batches)
    val = list(dm.val_dataloader())
    assert sum(len(b["keys"]) for b in val) == 4
    import pickle

    clone = pickle.loads(pickle.dumps(dm))
    assert clone.tokenizer.symbols == tone_tokenizer.symbols
    with pytest.raises(ManifestError, match="no utterance"):
        AsrDataModule(train, valid, tone_tokenizer, config=AsrDataConfig(min_duration=30, max_duration=40))
    with pytest.raises(InvalidParameterError):
        AsrDataModule.split_valid(train, 1.5)


def _kaldi_log_mel_reference(x: np.ndarray, warp: float) -> np.ndarray:
    """Kaldi fbank by hand in float64 (25/10 ms frames, snip edges, DC removal, pre-emphasis 0.97, povey window,
    512-point power spectrum) with kaldi-native-fbank's VTLN-warped mel banks."""
    import kaldi_native_fbank as knf

    size, shift, n_fft = 400, 160, 512
    k = 1 + (len(x) - size) // shift
    frames = np.stack([x[i * shift: i * shift + size] for i in range(k)]).astype(np.float64) * 32768.0
    frames -= frames.mean(axis=1, keepdims=True)
    frames[:, 1:] -= 0.97 * frames[:, :-1].copy()
    frames[:, 0] -= 0.97 * frames[:, 0]
    n = np.arange(size)
    frames *= (0.5 - 0.5 * np.cos(2 * np.pi * n / (size - 1))) ** 0.85
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    mo, fo = knf.MelBanksOptions(), knf.FrameExtractionOptions()
    mo.num_bins = 80
    banks = np.asarray(knf.MelBanks(mo, fo, warp).get_matrix(), dtype=np.float64)
    return np.log(np.maximum(power[:, : banks.shape[1]] @ banks.T, np.finfo(np.float32).eps))


def test_vtlp_warps_the_mel_banks(tone_manifest: Path, tone_tokenizer: CharTokenizer) -> None:
    """A fixed VTLP warp gives exactly Kaldi's VTLN-warped fbank; a range draws per utterance, train only."""
    m = load_manifest(tone_manifest)
    x = AsrDataset(m, tone_tokenizer, train=False).waveform(0)
    fixed = AsrDataConfig(speeds=[1.0], vtlp=[0.9, 0.9], dither=0.0, specaug=None)
    warped = AsrDataset(m, tone_tokenizer, config=fixed, train=True)[0]["feats"].numpy()
    ref = _kaldi_log_mel_reference(x, 0.9)
    assert warped.shape == ref.shape
    loud = ref > ref.max() - 12.0  # compare where the float32 path is not at the rounding floor
    np.testing.assert_allclose(warped[loud], ref[loud], atol=2e-3)
    plain = AsrDataset(m, tone_tokenizer, config=AsrDataConfig(speeds=[1.0], dither=0.0, specaug=None), train=True)
    unwarped = plain[0]["feats"].numpy()
    np.testing.assert_allclose(unwarped[loud], _kaldi_log_mel_reference(x, 1.0)[loud], atol=2e-3)
    assert np.abs(warped - unwarped)[loud].mean() > 0.05

    ranged = AsrDataset(m, tone_tokenizer, train=True,
                        config=AsrDataConfig(speeds=[1.0], vtlp=[0.9, 1.1], dither=0.0, specaug=None))
    a = ranged[0]["feats"]
    assert torch.equal(a, ranged[0]["feats"])  # seeded per (epoch, index)
    ranged.set_epoch(1)
    assert not torch.equal(ranged[0]["feats"], a)
    evaluation = AsrDataset(m, tone_tokenizer, config=fixed, train=False)[0]["feats"].numpy()
    np.testing.assert_array_equal(evaluation, AsrDataset(m, tone_tokenizer, train=False)[0]["feats"].numpy())
