"""Training on strong labels: frame activity, its augmentation and the frame-level loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audioforge.corpora.manifest import Manifest
from audioforge.errors import InvalidParameterError, ManifestError
from audioforge.tagging import preset_config
from audioforge.tagging.data import (
    MelDataset,
    TaggingDataModule,
    activity_frames,
    mixup,
    mixup_draw,
    spec_augment,
    spec_augment_masks,
)
from audioforge.tagging.train import TaggingModule, load_config, train_tagger

from .test_train import LABELS, make_tone_corpus, tiny_config

pytest.importorskip("lightning")


def _noise_bursts(seconds: float) -> list[dict]:
    """The tone corpus's noise envelope ``sin(2 pi 3 t) > 0``: on for the first half of every 1/3 s."""
    return [{"label": "noise", "onset": k / 3, "offset": k / 3 + 1 / 6} for k in range(int(seconds * 3))]


@pytest.fixture(scope="module")
def strong_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_tone_corpus(tmp_path_factory.mktemp("strong"))
    m = Manifest.load(path)
    for e in m.entries:
        e["events"] = [ev for lab in e["labels"]
                       for ev in (_noise_bursts(e["duration"]) if lab == "noise"
                                  else [{"label": lab, "onset": 0.0, "offset": e["duration"]}])]
    m.save(path)
    return path


def test_activity_frames_against_interval_overlap() -> None:
    hop = 0.01
    events = [{"label": "mid", "onset": 0.123, "offset": 0.4567}, {"label": "noise", "onset": 0.3012, "offset": 0.3013},
              {"label": "mid", "onset": 0.9, "offset": 5.0}, {"label": "low", "onset": 0.051, "offset": 0.052}]
    got = activity_frames(events, LABELS, 100, hop_seconds=hop)
    # reference: frame i spans [i h - h/2, i h + h/2) in float64; active where an event overlaps it
    ref = np.zeros((len(LABELS), 100), dtype=np.uint8)
    for ev in events:
        for i in range(100):
            if ev["onset"] < (i + 0.5) * hop and ev["offset"] >= (i - 0.5) * hop:
                ref[LABELS.index(ev["label"]), i] = 1
    np.testing.assert_array_equal(got, ref)
    assert got[LABELS.index("noise")].sum() == 1 and got[LABELS.index("low")].sum() == 1  # shorter than a hop
    assert not got[LABELS.index("high")].any()
    with pytest.raises(ManifestError, match="class list"):
        activity_frames([{"label": "cat", "onset": 0, "offset": 1}], LABELS, 10)
    with pytest.raises(ManifestError, match="offset >= onset"):
        activity_frames([{"label": "low", "onset": 2, "offset": 1}], LABELS, 10)
    with pytest.raises(InvalidParameterError, match="frames"):
        activity_frames([], LABELS, 0)


def test_mel_dataset_rolls_activity_with_the_mel() -> None:
    frames = 50
    act = np.zeros((3, 2, frames), dtype=np.uint8)
    mels = np.zeros((3, 4, frames), dtype=np.float16)
    for i in range(3):
        act[i, 0, 5 + i : 12 + 2 * i] = 1
        mels[i, 0] = act[i, 0]  # the mel carries the same pattern as class 0's activity
    ds = MelDataset(mels, np.zeros((3, 2)), train=True, roll=True, seed=3, activity=act)
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(3):
            m, _, a = ds[i]
            assert torch.equal(m[0], a[0]) and a.dtype == torch.float32
    assert len(MelDataset(mels, np.zeros((3, 2)))[0]) == 2  # no activity: (mel, target) as before
    with pytest.raises(InvalidParameterError, match="activity"):
        MelDataset(mels, np.zeros((3, 2)), activity=act[:, :, :10])


def test_reused_draws_mix_and_mask_targets_like_inputs() -> None:
    torch.manual_seed(0)
    x = torch.rand(6, 8, 40)
    y = torch.rand(6, 3, 40)
    draw = mixup_draw(6, alpha=0.3)
    xm, ym = mixup(x, y, domain="wave", draw=draw)
    lam, perm = draw
    assert torch.all(lam >= 0.5)
    torch.testing.assert_close(ym, lam[:, None, None] * y + (1 - lam[:, None, None]) * y[perm])
    torch.testing.assert_close(xm, lam[:, None, None] * x + (1 - lam[:, None, None]) * x[perm])
    masks = spec_augment_masks(6, 8, 40, freqm=4, timem=20)
    out = spec_augment(x + 1, masks=masks)
    for i in range(6):
        np.testing.assert_array_equal((out[i] == 0).numpy(), (masks[0][i][:, None] | masks[1][i][None, :]).numpy())
    assert spec_augment_masks(2, 8, 40, freqm=0, timem=5)[0] is None
    for bad in ({"alpha": 0.0}, {"alpha": float("nan")}, {"alpha": -1}):
        with pytest.raises(InvalidParameterError, match="alpha"):
            mixup_draw(4, **bad)
    with pytest.raises(InvalidParameterError, match="batch"):
        mixup_draw(0)
    with pytest.raises(InvalidParameterError, match="timem"):
        spec_augment_masks(2, 8, 40, timem=-1)
    with pytest.raises(InvalidParameterError, match="frames"):
        spec_augment_masks(2, 8, 0)


def test_column_targets_follow_patchout() -> None:
    torch.manual_seed(1)
    cfg = preset_config("passt_mini", num_classes=4, img_size=[128, 200], s_patchout_t=6, s_patchout_f=2)
    module = TaggingModule(cfg, {}, features="mel", frame_loss_weight=1.0).train()
    x = torch.randn(2, 1, 128, 200)
    _, _, frame_logits = module.model.forward_timeline(x)
    kept = module.model.kept_time_columns
    assert kept is not None and frame_logits.shape == (2, len(kept), 4)
    activity = (torch.rand(2, 4, 200) > 0.9).float()
    got = module._column_targets(activity)
    for b in range(2):
        for k, j in enumerate(kept.tolist()):
            ref = activity[b, :, j * 10 : j * 10 + 16].amax(-1)
            assert torch.equal(got[b, k], ref)
    module.eval()
    module.model.forward_timeline(x)
    assert module.model.kept_time_columns is None  # evaluation keeps every column


def test_strong_label_config_and_manifest_errors(corpus_without_events: Path, tmp_path: Path) -> None:
    base = {"manifest": "m", "out_dir": "o"}
    with pytest.raises(InvalidParameterError, match="strong_labels"):
        load_config({**base, "frame_loss_weight": 1.0})
    with pytest.raises(InvalidParameterError, match="mel"):
        load_config({**base, "strong_labels": True, "features": "wave"})
    with pytest.raises(InvalidParameterError, match="u_patchout"):
        load_config({**base, "strong_labels": True, "frame_loss_weight": 0.5, "model": {"u_patchout": 10}})
    with pytest.raises(InvalidParameterError, match="frame_loss_weight"):
        load_config({**base, "strong_labels": True, "frame_loss_weight": -1})
    with pytest.raises(ManifestError, match="'events'"):
        TaggingDataModule(corpus_without_events, features="mel", strong_labels=True)
    with pytest.raises(InvalidParameterError, match="mel"):
        TaggingDataModule(corpus_without_events, features="wave", strong_labels=True)


@pytest.fixture(scope="module")
def corpus_without_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone_corpus(tmp_path_factory.mktemp("weak"), clips=8)


@pytest.mark.slow
def test_training_with_frame_loss(strong_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    bundle = train_tagger(tiny_config(strong_corpus, out, max_epochs=5, strong_labels=True, frame_loss_weight=1.0,
                                      mixup_alpha=0.3))
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    frame = [r["frame_loss_epoch"] for r in rows if "frame_loss_epoch" in r]
    total = [r["train_loss_epoch"] for r in rows if "train_loss_epoch" in r]
    assert len(frame) == 5 and frame[-1] < 0.8 * frame[0], frame
    assert total[-1] < 0.8 * total[0], total
    assert bundle.options["training"]["strong_labels"] is True
    assert bundle.options["training"]["frame_loss_weight"] == 1.0
