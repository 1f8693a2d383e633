"""Training: data pipeline, augmentations, schedule, loss going down, checkpoint resume, DDP with 2 CPU processes."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audioforge.audio import save
from audioforge.corpora.manifest import Manifest
from audioforge.errors import AudioFileError, InvalidParameterError, ManifestError, NonFiniteAudioError
from audioforge.tagging import PasstFrontend
from audioforge.tagging.data import (
    MelDataset,
    TaggingDataModule,
    WaveformDataset,
    build_mel_cache,
    class_weights,
    load_clip,
    load_labels,
    mel_filter_augment,
    mel_gain,
    mixup,
    sample_weights,
    spec_augment,
)
from audioforge.tagging.train import (
    TaggingModule,
    _build,
    check_restarts,
    epoch_checkpoint,
    load_config,
    lr_factor,
    plot_training,
    prior_bias,
    train_tagger,
)

pytest.importorskip("lightning")

LABELS = ["low", "mid", "high", "noise"]
SR = 32000


def make_tone_corpus(root: Path, *, clips: int = 24, seconds: float = 2.0, test_every: int = 4, seed: int = 0) -> Path:
    """A tiny multi-label corpus: each clip holds 1-2 of {300 Hz tone, 1200 Hz tone, 4 kHz tone, noise bursts}."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    freq = {"low": 300.0, "mid": 1200.0, "high": 4000.0}
    entries = []
    for i in range(clips):
        labs = [LABELS[i % 4]] if i % 3 else [LABELS[i % 4], LABELS[(i + 1) % 4]]
        y = 0.002 * rng.standard_normal(len(t))
        for lab in labs:
            if lab == "noise":
                env = (np.sin(2 * np.pi * 3 * t) > 0).astype(float)
                y += 0.2 * env * rng.standard_normal(len(t))
            else:
                y += 0.3 * np.sin(2 * np.pi * freq[lab] * t + rng.uniform(0, 6))
        key = f"clip{i:03d}"
        save(root / "audio" / f"{key}.wav", (y / max(1.0, np.abs(y).max())).astype(np.float32), SR)
        entries.append({"key": key, "wav": f"audio/{key}.wav", "duration": seconds, "sr": SR,
                        "split": "test" if i % test_every == 0 else "train", "labels": labs})
    Manifest(entries, root=root).save(root / "manifest.jsonl")
    (root / "labels.json").write_text(json.dumps(LABELS), encoding="utf-8")
    return root / "manifest.jsonl"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone_corpus(tmp_path_factory.mktemp("tones"))


def tiny_config(manifest: Path, out: Path, **kw) -> dict:
    cfg = {"manifest": str(manifest), "out_dir": str(out), "preset": "passt_mini",
           "model": {"s_patchout_t": 4, "s_patchout_f": 2}, "features": "mel", "clip_seconds": 2.0,
           "frontend": {"timem": 20}, "batch_size": 6, "max_epochs": 2, "lr": 1e-3, "warmup_epochs": 0.5,
           "decay_start": 10, "decay_end": 20,
           "mixup_alpha": 0.0, "swa": False, "val_every": 1, "threads": 1, "progress": False, "seed": 0}
    cfg.update(kw)
    return cfg


# ----------------------------------------------------------------------------------------------------------- data


def test_labels_targets_and_sampler_weights(corpus: Path) -> None:
    m = Manifest.load(corpus)
    labels = load_labels(m)
    assert labels == LABELS
    counts = np.array([sum(lab in e["labels"] for e in m) for lab in labels], dtype=float)
    np.testing.assert_allclose(class_weights(m, labels), 1000 / (counts + 100))
    w = sample_weights(m, labels)
    e = m[0]
    assert w[0] == pytest.approx(sum(1000 / (counts[labels.index(lab)] + 100) for lab in e["labels"]))
    ds = WaveformDataset(m, labels, clip_seconds=2.0)
    x, y = ds[0]
    assert x.shape == (64000,) and y.tolist() == [float(lab in e["labels"]) for lab in labels]


def test_labels_errors(corpus: Path, tmp_path: Path) -> None:
    m = Manifest.load(corpus)
    with pytest.raises(ManifestError, match="not in the class list"):
        load_labels(m, ["low"])
    with pytest.raises(ManifestError, match="does not exist"):
        load_labels(Manifest([{"key": "a", "wav": "a.wav", "labels": ["x"]}], root=tmp_path))
    with pytest.raises(ManifestError, match="no 'labels'"):
        load_labels(Manifest([{"key": "a", "wav": "a.wav"}], root=tmp_path), ["x"])


def test_load_clip_crop_pad_resample_and_errors(tmp_path: Path) -> None:
    y = np.linspace(-0.5, 0.5, 16000, dtype=np.float32)
    save(tmp_path / "a.wav", y, 16000)  # 1 s at 16 kHz -> resampled to 32 kHz, padded to 1.5 s
    out = load_clip(tmp_path / "a.wav", sample_rate=SR, n_samples=48000)
    assert out.shape == (48000,) and np.all(out[33000:] == 0)
    out = load_clip(tmp_path / "a.wav", sample_rate=SR, n_samples=1000, rng=np.random.default_rng(0))
    assert out.shape == (1000,)
    with pytest.raises(AudioFileError):
        load_clip(tmp_path / "missing.wav", sample_rate=SR, n_samples=10)
    bad = np.zeros(100, dtype=np.float32)
    bad[5] = np.nan
    import soundfile as sf

    sf.write(tmp_path / "nan.wav", bad, SR, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError):
        load_clip(tmp_path / "nan.wav", sample_rate=SR, n_samples=100)


def test_datamodule_errors(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="split='nope'"):
        TaggingDataModule(corpus, train_split="nope")
    with pytest.raises(InvalidParameterError):
        TaggingDataModule(corpus, features="spectrogram")
    m = Manifest.load(corpus)
    broken = Manifest([{**e, "wav": "audio/none.wav", "key": e["key"]} for e in m], root=m.root)
    with pytest.raises(AudioFileError, match="missing"):
        TaggingDataModule(broken)
    with pytest.raises(ManifestError, match="not found"):
        TaggingDataModule(tmp_path / "none.jsonl")


def test_mel_cache_matches_frontend_and_is_reused(corpus: Path, tmp_path: Path) -> None:
    m = Manifest.load(corpus).filter(split="test")
    fe = PasstFrontend()
    mels = build_mel_cache(m, fe, tmp_path, clip_seconds=2.0)
    assert mels.shape == (len(m), 128, 200) and mels.dtype == np.float16
    ref = fe.eval()(torch.from_numpy(load_clip(m.audio_path(m[0]), sample_rate=SR, n_samples=64000)))[0, 0]
    np.testing.assert_allclose(np.asarray(mels[0], dtype=np.float32), ref.numpy(), atol=4e-3)
    assert len(list(tmp_path.glob("mels-*.npy"))) == 1
    build_mel_cache(m, fe, tmp_path, clip_seconds=2.0)
    assert len(list(tmp_path.glob("mels-*.npy"))) == 1
    # training-only settings (masking widths, band-edge jitter) do not change evaluation mels: same cache
    build_mel_cache(m, PasstFrontend(freqm=0, timem=0, fmin_aug_range=1, fmax_aug_range=2000, fmax=fe.fmax),
                    tmp_path, clip_seconds=2.0)
    assert len(list(tmp_path.glob("mels-*.npy"))) == 1
    build_mel_cache(m, PasstFrontend(fmax=12000), tmp_path, clip_seconds=2.0)  # other mels: a new cache
    assert len(list(tmp_path.glob("mels-*.npy"))) == 2
    ds = MelDataset(mels, np.zeros((len(m), 4)), train=True)
    x, _ = ds[0]
    assert x.shape == (128, 200) and x.dtype == torch.float32


def test_filter_augment_is_a_smooth_per_example_equaliser() -> None:
    from audioforge.tagging.data import _to_power

    torch.manual_seed(0)
    mels = torch.rand(5, 32, 40) * 0.6 + 0.2  # well above the log floor: gains are exact power ratios
    assert mel_filter_augment(mels, 0.0) is mels
    g = torch.Generator().manual_seed(3)
    out = mel_filter_augment(mels, 6.0, bands=(3, 5), generator=g)
    again = mel_filter_augment(mels, 6.0, bands=(3, 5), generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, again)  # reproducible from the generator
    db = 10 * torch.log10(_to_power(out.double()) / _to_power(mels.double()))
    gain = db[..., 0]  # (batch, n_mels): the same for every frame
    assert torch.allclose(db, gain[..., None].expand_as(db), atol=1e-3)
    assert gain.abs().max() <= 6.0 + 1e-3 and not torch.allclose(gain[0], gain[1])
    for row in gain:  # piecewise linear through 3-5 control points: at most 3 interior kinks
        kinks = (row[2:] - 2 * row[1:-1] + row[:-2]).abs() > 1e-2
        assert int(kinks.sum()) <= 3
    with pytest.raises(InvalidParameterError, match="bands"):
        mel_filter_augment(mels, 6.0, bands=(1, 4))


def test_mel_gain_and_mixup_match_waveform_versions() -> None:
    torch.manual_seed(0)
    fe = PasstFrontend().eval()
    a, b = 0.1 * torch.randn(2, 16000)
    ma, mb = fe(torch.stack([a, b]))[:, 0]
    # +6 dB on the waveform == +6 dB on the power mels
    g = 10 ** (6 / 20)
    torch.manual_seed(1)
    rolled = mel_gain(ma[None].expand(4, -1, -1).clone(), 6.0)
    # mel_gain draws its gain uniformly; check that one exact gain maps like the waveform
    from audioforge.tagging.data import _from_power, _to_power

    np.testing.assert_allclose(_from_power(_to_power(ma) * g**2), fe((g * a)[None])[0, 0], atol=2e-3)
    assert rolled.shape == (4, 128, ma.shape[-1])
    # mixup of two clips: targets mix with the same lambda >= 0.5; mel mixing = power mixing
    x = torch.stack([ma, mb])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    torch.manual_seed(3)
    xm, ym = mixup(x, y, alpha=0.3, domain="mel")
    lam = ym.max(dim=1).values
    assert torch.all(lam >= 0.5) and torch.allclose(ym.sum(1), torch.ones(2))
    for i in range(2):
        if ym[i, i] < 1.0:  # mixed with the other clip
            other = 1 - i
            expect = _from_power(ym[i, i] * _to_power(x[i]) + ym[i, other] * _to_power(x[other]))
            torch.testing.assert_close(xm[i], expect)
    xw, yw = mixup(torch.stack([a, b]), y, alpha=0.3, domain="wave")
    assert xw.shape == (2, 16000) and torch.allclose(yw.sum(1), torch.ones(2))
    same, same_y = mixup(x, y, alpha=0.0)
    assert same is x and same_y is y
    with pytest.raises(InvalidParameterError):
        mixup(x, y, domain="fft")


def test_spec_augment_masks_with_zeros() -> None:
    torch.manual_seed(0)
    x = torch.ones(8, 128, 300)
    out = spec_augment(x, freqm=48, timem=100)
    assert out.shape == x.shape and (out == 0).any() and (out == 1).any()
    assert torch.equal(spec_augment(x, freqm=0, timem=0), x)


def test_lr_schedule_shape() -> None:
    kw = {"warmup_epochs": 5, "decay_start": 50, "decay_end": 100, "last_lr_factor": 0.01}
    assert lr_factor(0, **kw) == pytest.approx(math.exp(-5))
    assert lr_factor(2.5, **kw) == pytest.approx(math.exp(-5 * 0.25))
    assert lr_factor(5, **kw) == 1.0 and lr_factor(49.9, **kw) == 1.0
    assert lr_factor(75, **kw) == pytest.approx(1 - 0.5 * 0.99)
    assert lr_factor(100, **kw) == pytest.approx(0.01) and lr_factor(500, **kw) == pytest.approx(0.01)


def test_lr_schedule_warm_restart_against_interpolated_knots() -> None:
    restarts = check_restarts([{"epoch": 100, "lr_factor": 0.3, "decay_start": 105, "decay_end": 130},
                               {"epoch": 140, "lr_factor": 0.1, "warmup_epochs": 0, "decay_start": 140,
                                "decay_end": 150}], decay_end=100)
    kw = {"warmup_epochs": 5, "decay_start": 50, "decay_end": 100, "last_lr_factor": 0.01, "restarts": restarts}
    # the multiplier after epoch 5 is piecewise linear through these knots (restart warm-up of 1 epoch by default)
    knots = [(5, 1.0), (50, 1.0), (100, 0.01), (101, 0.3), (105, 0.3), (130, 0.01), (139.999, 0.01), (140, 0.1),
             (150, 0.01), (200, 0.01)]
    xs, ys = zip(*knots, strict=True)
    for e in np.linspace(5, 199, 777):
        assert lr_factor(float(e), **kw) == pytest.approx(float(np.interp(e, xs, ys)), abs=1e-3), e
    assert lr_factor(100.5, **kw) == pytest.approx(0.155)  # halfway up the restart's warm-up
    plain = {k: v for k, v in kw.items() if k != "restarts"}
    assert all(lr_factor(e, **kw) == lr_factor(e, **plain) for e in (0, 2.5, 49, 75, 99.9))  # before: unchanged


def test_warm_restart_errors() -> None:
    good = {"epoch": 30, "lr_factor": 0.3, "decay_start": 35, "decay_end": 50}
    assert check_restarts(None, decay_end=30) == [] and check_restarts([], decay_end=30) == []
    assert check_restarts([good], decay_end=30)[0]["warmup_epochs"] == 1.0
    cases = [({"epoch": 30}, "missing keys"), ({**good, "peak": 1}, "unknown keys"),
             ({**good, "epoch": 20}, "before the previous cycle's decay ends"),
             ({**good, "lr_factor": 0}, "lr_factor must be > 0"), ({**good, "decay_start": 30.5}, "decay_start"),
             ({**good, "decay_end": 35}, "decay_end"), ({**good, "lr_factor": "0.3"}, "finite number"),
             ({**good, "epoch": float("nan")}, "finite number")]
    for bad, match in cases:
        with pytest.raises(InvalidParameterError, match=match):
            check_restarts([bad], decay_end=30)
    with pytest.raises(InvalidParameterError, match="before the previous cycle"):  # overlapping restarts
        check_restarts([good, {**good, "epoch": 45, "decay_start": 46, "decay_end": 60}], decay_end=30)
    with pytest.raises(InvalidParameterError, match="must be a list"):
        check_restarts({"epoch": 30}, decay_end=30)
    with pytest.raises(InvalidParameterError, match="restarts"):
        load_config({"manifest": "m", "out_dir": "o", "decay_end": 30, "restarts": [{"epoch": 10}]})


def test_prior_bias_against_float64_reference() -> None:
    t = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0]], dtype=np.float32)
    p = np.array([3 / 4, 2 / 4, 1e-4])  # the absent class is clipped to the floor
    np.testing.assert_allclose(prior_bias(t), np.log(p / (1 - p)))
    w = np.array([1.0, 1.0, 2.0, 0.0])  # the sampler's draw: clip 2 twice as often, clip 3 never
    pw = np.array([2 / 4, 3 / 4, 1e-4])
    np.testing.assert_allclose(prior_bias(t, w), np.log(pw / (1 - pw)))
    single = np.eye(3)[[0, 0, 1, 2]]
    np.testing.assert_allclose(np.exp(prior_bias(single, multi_label=False)), [0.5, 0.25, 0.25])
    for bad in (np.zeros((0, 3)), np.zeros(3)):
        with pytest.raises(InvalidParameterError, match="targets"):
            prior_bias(bad)
    with pytest.raises(InvalidParameterError, match="weights"):
        prior_bias(t, np.zeros(4))
    with pytest.raises(InvalidParameterError, match="weights"):
        prior_bias(t, np.ones(3))


def test_head_bias_prior_sets_the_untrained_output(corpus: Path, tmp_path: Path) -> None:
    cfg = load_config(tiny_config(corpus, tmp_path / "run", head_bias="prior", weighted_sampler=False))
    dm, module = _build(cfg)
    targets = np.stack([np.isin(dm.labels, e["labels"]) for e in dm.train_manifest]).astype(np.float64)
    prior = np.clip(targets.mean(0), 1e-4, 1 - 1e-4)
    bias = module.model.head[-1].bias.detach().double().numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), prior, rtol=1e-5)
    _, plain = _build(load_config(tiny_config(corpus, tmp_path / "run2")))
    assert not plain.model.head[-1].bias.detach().any()  # the official zero initialisation stays the default
    with pytest.raises(InvalidParameterError, match="head_bias"):
        _build(load_config(tiny_config(corpus, tmp_path / "run3", head_bias="uniform")))


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="not found"):
        load_config(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{nope", encoding="utf-8")
    with pytest.raises(InvalidParameterError, match="not valid JSON"):
        load_config(tmp_path / "bad.json")
    with pytest.raises(InvalidParameterError, match="unknown training config keys"):
        load_config({"manifest": "m", "out_dir": "o", "learning_rate": 1})
    with pytest.raises(InvalidParameterError, match="needs"):
        load_config({"manifest": "m"})
    with pytest.raises(InvalidParameterError, match="precision"):
        load_config({"manifest": "m", "out_dir": "o", "precision": "fp8"})
    with pytest.raises(InvalidParameterError, match="filter_db"):
        load_config({"manifest": "m", "out_dir": "o", "filter_db": -3})
    (tmp_path / "rel.json").write_text(json.dumps({"manifest": "c/manifest.jsonl", "out_dir": "run"}), "utf-8")
    cfg = load_config(tmp_path / "rel.json")
    assert Path(cfg.manifest) == tmp_path / "c" / "manifest.jsonl" and Path(cfg.out_dir) == tmp_path / "run"


# ------------------------------------------------------------------------------------------------------- training


def _epoch_losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [r["train_loss_epoch"] for r in rows if "train_loss_epoch" in r]


@pytest.mark.slow
def test_loss_goes_down_and_bundle_is_written(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    bundle = train_tagger(tiny_config(corpus, out, max_epochs=6, swa=True, swa_start=3, swa_every=1, filter_db=2.0))
    losses = _epoch_losses(out)
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0], losses
    assert (out / "bundle" / "config.json").is_file() and (out / "bundle" / "model.safetensors").is_file()
    assert bundle.labels == LABELS and bundle.options["multi_label"] is True
    assert bundle.metrics["swa_epochs_averaged"] == 3
    assert 0.0 <= bundle.metrics["test_mAP"] <= 1.0
    assert bundle.metrics["steps"] == 6 * 3  # 18 training clips, batch 6
    import matplotlib.image

    assert matplotlib.image.imread(out / "training.png").ndim == 3  # the curves, drawn after training
    with pytest.raises(InvalidParameterError, match=r"train_log\.jsonl"):
        plot_training(tmp_path / "nothing-here")


@pytest.mark.slow
def test_resume_continues_step_count(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = train_tagger(tiny_config(corpus, out, max_epochs=1, val_split=None))
    assert first.metrics["steps"] == 3 and (out / "checkpoints" / "last.ckpt").is_file()
    second = train_tagger(tiny_config(corpus, out, max_epochs=2, val_split=None))
    assert second.metrics["steps"] == 6 and second.metrics["epochs"] == 2
    fresh = train_tagger(tiny_config(corpus, tmp_path / "other", max_epochs=1, val_split=None, resume=False))
    assert fresh.metrics["steps"] == 3


@pytest.mark.slow
def test_extend_a_finished_run_with_a_warm_restart(corpus: Path, tmp_path: Path) -> None:
    """A finished run, copied into a new folder and resumed with a restart and more epochs, continues its step count,
    follows the restart's learning rate, and keeps writing ``last.ckpt`` (not ``last-v1.ckpt`` beside the copy)."""
    base = {"max_epochs": 2, "val_split": None, "decay_start": 1, "decay_end": 2}
    train_tagger(tiny_config(corpus, tmp_path / "first", **base))
    (tmp_path / "ext" / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "first" / "checkpoints" / "last.ckpt", tmp_path / "ext" / "checkpoints" / "last.ckpt")
    restart = {"epoch": 2, "lr_factor": 0.5, "warmup_epochs": 0, "decay_start": 2, "decay_end": 4}
    ext = train_tagger(tiny_config(corpus, tmp_path / "ext", **{**base, "max_epochs": 3, "restarts": [restart]}))
    assert ext.metrics["steps"] == 9 and ext.metrics["epochs"] == 3
    names = sorted(p.name for p in (tmp_path / "ext" / "checkpoints").iterdir())
    assert names == ["epoch=2-step=9.ckpt", "last.ckpt"], names
    state = torch.load(tmp_path / "ext" / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["epoch"] == 2 and state["global_step"] == 9
    # after step 9 (epoch 3.0): halfway down the restart's decay from 0.5 to 0.01 of lr 1e-3
    last_lr = state["lr_schedulers"][0]["_last_lr"]
    assert last_lr == pytest.approx([1e-3 * (0.5 - 0.5 * 0.49)] * 2)
    assert ext.options["training"]["restarts"] == [{**restart, "epoch": 2.0, "lr_factor": 0.5,
                                                    "warmup_epochs": 0.0, "decay_start": 2.0, "decay_end": 4.0}]


def test_every_epoch_leaves_a_checkpoint_to_resume_from(tmp_path: Path) -> None:
    """An interrupted run resumes from its last finished epoch: ``last.ckpt`` exists after each epoch, not only at
    the end of training (Lightning skips ``save_last`` at epoch end when no regular checkpoint was written)."""
    import lightning.pytorch as pl

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.lin(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    seen: list[int | None] = []

    class Probe(pl.Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            last = tmp_path / "ckpt" / "last.ckpt"
            seen.append(torch.load(last, weights_only=False)["epoch"] if last.is_file() else None)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = pl.Trainer(max_epochs=3, callbacks=[epoch_checkpoint(tmp_path / "ckpt"), Probe()], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(Tiny(), train_dataloaders=data)
    assert seen == [None, 0, 1]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["epoch=2-step=6.ckpt", "last.ckpt"]


def test_waveform_mode_bf16_and_accumulation(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    bundle = train_tagger(tiny_config(corpus, out, features="wave", max_epochs=1, precision="bf16-mixed",
                                      accumulate_grad_batches=3, mixup_alpha=0.3, val_split=None, filter_db=4.0))
    assert bundle.metrics["steps"] == 1  # 3 batches accumulated into one optimizer step
    for v in bundle.state_dict.values():
        assert v.dtype == torch.float32 and torch.isfinite(v).all()


def test_module_forward_both_modes() -> None:
    from audioforge.tagging import preset_config

    cfg = preset_config("passt_mini", num_classes=3)
    wave = TaggingModule(cfg, {}, features="wave").eval()
    mel = TaggingModule(cfg, {}, features="mel").eval()
    mel.model.load_state_dict(wave.model.state_dict())
    x = 0.1 * torch.randn(2, 32000)
    feats = PasstFrontend().eval()(x)[:, 0]
    torch.testing.assert_close(wave(x), mel(feats), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_ddp_two_cpu_processes(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cfg = tiny_config(corpus, out, max_epochs=1, strategy="ddp", devices=2, batch_size=3)
    path = tmp_path / "ddp.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "audioforge.tagging.train", str(path)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    # 18 training clips split over 2 ranks: 9 per rank, batch 3 -> 3 optimizer steps per epoch on each rank
    assert metrics["steps"] == 3
    assert (out / "bundle" / "model.safetensors").is_file()
    assert "test_mAP" in json.loads((out / "bundle" / "config.json").read_text())["metrics"]


@pytest.mark.slow
def test_fine_tune_from_a_bundle(corpus: Path, tmp_path: Path) -> None:
    """``init_from`` starts a fresh run from a bundle's weights: all of them when the labels are the same, all but
    the classifier for another label set; a bundle of another architecture or task is refused with the report."""
    from audioforge.bundle import Bundle
    from audioforge.errors import CheckpointError

    first = train_tagger(tiny_config(corpus, tmp_path / "a", max_epochs=1, val_split=None))
    source = first.path
    assert source is not None
    cfg = load_config(tiny_config(corpus, tmp_path / "b", init_from=str(source), head_bias="prior"))
    _, module = _build(cfg)
    got = module.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in first.state_dict.items())  # head kept: no prior bias over it
    assert module.init_report["head"] == "kept"

    relabelled = load_config(tiny_config(corpus, tmp_path / "c", init_from=str(source), labels=LABELS[::-1]))
    _, other = _build(relabelled)
    head = {"head.1.weight", "head.1.bias", "head_dist.weight", "head_dist.bias"}
    got = other.model.state_dict()
    assert other.init_report["head"] == "re-initialised"
    assert all(torch.equal(got[k], v) for k, v in first.state_dict.items() if k not in head)
    assert not torch.equal(got["head.1.weight"], first.state_dict["head.1.weight"])

    (tmp_path / "ft.json").write_text(json.dumps(tiny_config(corpus, tmp_path / "ft", init_from="a/bundle",
                                                             max_epochs=1, val_split=None)), "utf-8")
    assert load_config(tmp_path / "ft.json").init_from == str(tmp_path / "a" / "bundle")  # relative to the config
    tuned = train_tagger(tmp_path / "ft.json")
    assert tuned.metrics["init_from"]["head"] == "kept" and tuned.metrics["steps"] == 3  # a fresh schedule
    (tmp_path / "ft.json").write_text(json.dumps(tiny_config(corpus, tmp_path / "ft", init_from="a/bundle",
                                                             max_epochs=2, val_split=None)), "utf-8")
    resumed = train_tagger(tmp_path / "ft.json")  # weights from its checkpoint; the provenance survives the resume
    assert resumed.metrics["steps"] == 6 and resumed.metrics["init_from"] == tuned.metrics["init_from"]

    wide = load_config(tiny_config(corpus, tmp_path / "d", init_from=str(source), preset="passt_tiny"))
    with pytest.raises(CheckpointError, match="does not fit"):
        _build(wide)
    asr = Bundle(task="asr", architecture="u2", hyperparameters={}, state_dict={"w": torch.zeros(1)})
    asr.save(tmp_path / "asr")
    with pytest.raises(CheckpointError, match="not a tagging one"):
        _build(load_config(tiny_config(corpus, tmp_path / "e", init_from=str(tmp_path / "asr"))))


def test_module_entry_point_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from audioforge.tagging.train import main

    assert main(["--help"]) == 0 and "usage" in capsys.readouterr().err
    assert main([]) == 2
    assert main([str(tmp_path / "missing.json")]) == 2
    assert "training config not found" in capsys.readouterr().err  # a message, not a traceback
