"""ASR training: WarmupLR, checkpoint averaging, train_asr (loss decreases, resume continues), DDP on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from audioforge.asr.infer import Recognizer
from audioforge.asr.train import (
    WarmupLR,
    average_checkpoints,
    best_checkpoints,
    build_tokenizer,
    read_metrics,
    train_asr,
)
from audioforge.bundle import Bundle
from audioforge.errors import CheckpointError, InvalidParameterError

from .test_data import tone_manifest  # noqa: F401  (fixture)

TINY_MODEL = {
    "encoder_conf": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 2,
                     "cnn_module_kernel": 8, "dropout_rate": 0.0, "positional_dropout_rate": 0.0, "max_len": 1000},
    "decoder_conf": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1, "r_num_blocks": 1,
                     "dropout_rate": 0.0, "positional_dropout_rate": 0.0},
}


def tiny_train_config(manifest: Path, work: Path, **trainer: Any) -> dict[str, Any]:
    return {
        "work_dir": str(work),
        "train_manifest": str(manifest),
        "train_split": "train",
        "valid_manifest": str(manifest),
        "valid_split": "test",
        "model": TINY_MODEL,
        "data": {"max_batch_seconds": 8.0, "speeds": [1.0], "dither": 0.0, "specaug": None},
        "optim": {"lr": 0.005, "warmup_steps": 5},
        "trainer": {"max_steps": 10, "val_every_n_steps": 5, "checkpoint_every_n_steps": 5, "save_top_k": 3,
                    "average_best": 2, "num_threads": 1, **trainer},
    }


def _val_losses(work: Path) -> list[tuple[int, float]]:
    return [(int(r["step"]), r["val_loss"]) for r in read_metrics(work) if "val_loss" in r]


def test_warmup_lr_schedule() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    sched = WarmupLR(opt, warmup_steps=4)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.25) and lrs[3] == pytest.approx(1.0)
    assert lrs[7] == pytest.approx((4 / 8) ** 0.5)
    with pytest.raises(InvalidParameterError):
        WarmupLR(opt, warmup_steps=0)


def test_average_checkpoints(tmp_path: Path) -> None:
    paths = []
    for i, v in enumerate((1.0, 3.0)):
        sd = {"model.w": torch.full((2,), v), "model.n": torch.tensor(7), "other.x": torch.zeros(1)}
        path = tmp_path / f"step{i:08d}-val_loss{10 - i:.5f}.ckpt"
        torch.save({"state_dict": sd}, path)
        paths.append(path)
    avg = average_checkpoints(paths)
    assert set(avg) == {"w", "n"} and torch.allclose(avg["w"], torch.full((2,), 2.0)) and avg["n"].item() == 7
    assert best_checkpoints(tmp_path, 1) == [paths[1]]
    with pytest.raises(CheckpointError):
        average_checkpoints([])
    torch.save({"state_dict": {"model.v": torch.zeros(1)}}, tmp_path / "odd.ckpt")
    with pytest.raises(CheckpointError, match="other weights"):
        average_checkpoints([paths[0], tmp_path / "odd.ckpt"])


def test_build_tokenizer() -> None:
    assert build_tokenizer(["ab c"], {"type": "char"}).vocab_size == 3 + 4
    bpe = build_tokenizer(["hello world", "help the world"] * 20, {"type": "bpe", "vocab_size": 20})
    assert bpe.decode(bpe.encode("hello world")) == "hello world"
    with pytest.raises(InvalidParameterError, match="unknown tokenizer"):
        build_tokenizer(["a"], {"type": "wordpiece"})
    with pytest.raises(InvalidParameterError, match="no transcripts"):
        build_tokenizer([" "], {"type": "char"})


def test_train_config_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="unknown training settings"):
        train_asr({"work_dir": str(tmp_path), "epochs": 3})
    with pytest.raises(InvalidParameterError, match="train_manifest"):
        train_asr({"work_dir": str(tmp_path)})
    with pytest.raises(InvalidParameterError, match="unknown trainer settings"):
        train_asr({"work_dir": str(tmp_path), "trainer": {"gpus": 1}})
    with pytest.raises(InvalidParameterError, match="precision"):
        train_asr({"work_dir": str(tmp_path), "trainer": {"precision": "fp8"}})


def test_bf16_autocast_loss_matches_float32() -> None:
    """The bf16-mixed training loss of a conformer stays within 2% of the float32 loss on the same batch."""
    from audioforge.asr.model import build_u2_model
    from audioforge.asr.train import DEFAULT_TRAIN_CONFIG, _merge

    torch.manual_seed(0)
    cfg = _merge(DEFAULT_TRAIN_CONFIG["model"], TINY_MODEL)
    model = build_u2_model({**cfg, "input_dim": 80, "vocab_size": 12}).eval()  # no dropout draws
    feats, lens = torch.randn(3, 120, 80), torch.tensor([120, 100, 77])
    tokens, tlens = torch.randint(1, 11, (3, 9)), torch.tensor([9, 7, 5])
    ref = model(feats, lens, tokens, tlens)["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(feats, lens, tokens, tlens)["loss"]
    assert low.dtype == torch.float32 and torch.isfinite(low)
    assert abs(float(low) - float(ref)) <= 0.02 * abs(float(ref)), (float(low), float(ref))


@pytest.mark.slow
def test_bf16_mixed_training_lowers_the_loss(tone_manifest: Path, tmp_path: Path) -> None:  # noqa: F811
    work = tmp_path / "bf16"
    bundle = train_asr(tiny_train_config(tone_manifest, work, max_steps=10, precision="bf16-mixed"))
    losses = _val_losses(work)
    assert losses[-1][1] < losses[0][1]
    assert all(v.dtype in (torch.float32, torch.int64) for v in bundle.state_dict.values())


def test_loss_decreases_resume_and_average(tone_manifest: Path, tmp_path: Path) -> None:  # noqa: F811
    work = tmp_path / "run"
    bundle = train_asr(tiny_train_config(tone_manifest, work, max_steps=10))
    first = _val_losses(work)
    assert [s for s, _ in first] == [4, 9]
    assert first[-1][1] < first[0][1]
    assert (work / "checkpoints" / "last.ckpt").is_file() and (work / "bundle" / "config.json").is_file()
    assert bundle.metrics["train_steps"] == 10 and len(bundle.metrics["averaged_checkpoints"]) == 2
    import matplotlib.image

    assert matplotlib.image.imread(work / "training.png").ndim == 3  # the curves, drawn after training
    # resume: the step counter continues from last.ckpt
    bundle = train_asr(tiny_train_config(tone_manifest, work, max_steps=20))
    steps = [s for s, _ in _val_losses(work)]
    assert steps[:2] == [4, 9] and max(steps) == 19 and bundle.metrics["train_steps"] == 20
    assert _val_losses(work)[-1][1] < first[0][1]
    rec = Recognizer.from_bundle(Bundle.load(work / "bundle"))
    assert rec.tokenizer.vocab_size == rec.model.vocab_size
    assert rec.model.encoder.global_cmvn is not None  # CMVN from the training data
    # averaging: the bundle holds the mean of the best checkpoints
    expected = average_checkpoints([work / "checkpoints" / n for n in bundle.metrics["averaged_checkpoints"]])
    key = "encoder.after_norm.weight"
    assert torch.allclose(bundle.state_dict[key], expected[key])


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tone_manifest: Path, tmp_path: Path) -> None:  # noqa: F811
    work = tmp_path / "ddp"
    bundle = train_asr(tiny_train_config(tone_manifest, work, max_steps=4, val_every_n_steps=2, devices=2,
                                         strategy="ddp_spawn", checkpoint_every_n_steps=2))
    assert bundle.metrics["train_steps"] == 4
    assert (work / "checkpoints" / "last.ckpt").is_file()


def test_extra_training_manifests_join_after_the_validation_split(tmp_path: Path) -> None:
    import json

    from audioforge.asr.train import _with_extra
    from audioforge.corpora.manifest import Manifest

    def write(folder: Path, rows: list[tuple[str, str]]) -> Path:
        folder.mkdir()
        path = folder / "manifest.jsonl"
        path.write_text("".join(json.dumps({"key": k, "wav": f"wav/{k}.wav", "txt": t, "split": "train"}) + "\n"
                                for k, t in rows))
        return path

    main = Manifest.load(write(tmp_path / "main", [(f"m{i}", f"sentence {i}") for i in range(10)]))
    train, valid = Manifest(main.entries[:8], root=main.root), Manifest(main.entries[8:], root=main.root)
    extra = write(tmp_path / "extra", [("x0", "sentence 0"), ("x1", "sentence 9"), ("x2", "a new one")])
    merged = _with_extra(train, valid, [extra], "train")
    assert [e["key"] for e in merged] == [f"m{i}" for i in range(8)] + ["x0", "x2"]  # x1 says a validation text
    assert merged.audio_path(merged[-1]) == tmp_path / "extra" / "wav" / "x2.wav"
    assert merged.audio_path(merged[0]) == tmp_path / "main" / "wav" / "m0.wav"
    assert _with_extra(train, valid, [], "train") is train


def test_missing_extra_training_manifest_is_named(tmp_path: Path) -> None:
    from audioforge.asr.train import _with_extra
    from audioforge.corpora.manifest import Manifest
    from audioforge.errors import ManifestError

    train = Manifest([{"key": "a", "wav": "a.wav", "txt": "a"}], root=tmp_path)
    with pytest.raises(ManifestError, match="nowhere"):
        _with_extra(train, Manifest([], root=tmp_path), [tmp_path / "nowhere" / "manifest.jsonl"], "train")


def test_init_from_bundle_fine_tunes_from_its_weights(tone_manifest: Path, tmp_path: Path) -> None:  # noqa: F811
    import json

    base = train_asr(tiny_train_config(tone_manifest, tmp_path / "base", max_steps=10))
    # lr 0: the fine-tuned bundle must hold exactly the base weights, tokenizer and CMVN (nothing re-initialised)
    cfg = tiny_train_config(tone_manifest, tmp_path / "tuned", max_steps=5)
    cfg["optim"] = {"lr": 0.0, "warmup_steps": 2, "weight_decay": 0.0}
    cfg["init_from"] = str(tmp_path / "base" / "bundle")
    tuned = train_asr(cfg)
    assert set(tuned.state_dict) == set(base.state_dict)
    for k, v in base.state_dict.items():
        assert torch.equal(tuned.state_dict[k], v), k
    assert tuned.labels == base.labels and tuned.hyperparameters["cmvn"] == base.hyperparameters["cmvn"]
    assert tuned.metrics["init_from"]["train_steps"] == 10 and tuned.metrics["train_steps"] == 5
    saved = json.loads((tmp_path / "tuned" / "global_cmvn.json").read_text())
    assert saved["mean_stat"] == pytest.approx(base.hyperparameters["cmvn"]["mean_stat"])
    # a real learning rate moves the weights; the first validation already sees the trained model
    cfg = tiny_train_config(tone_manifest, tmp_path / "moved", max_steps=5)
    cfg["optim"] = {"lr": 0.001, "warmup_steps": 2}
    cfg["init_from"] = str(tmp_path / "base" / "bundle")
    train_asr(cfg)
    scratch_first = _val_losses(tmp_path / "base")[0][1]
    assert _val_losses(tmp_path / "moved")[0][1] < scratch_first


def test_init_from_refuses_what_does_not_fit(tone_manifest: Path, tmp_path: Path) -> None:  # noqa: F811
    import json

    from audioforge.asr.train import prepare_init_from

    train_asr(tiny_train_config(tone_manifest, tmp_path / "base", max_steps=5))
    src = tmp_path / "base" / "bundle"
    with pytest.raises(CheckpointError, match="not an ASR one"):
        prepare_init_from("tagger", tmp_path / "w1")
    with pytest.raises(CheckpointError):
        prepare_init_from(tmp_path / "no-such-bundle", tmp_path / "w1")
    bigger = {"encoder_conf": {**TINY_MODEL["encoder_conf"], "num_blocks": 3}}
    with pytest.raises(InvalidParameterError, match=r"encoder_conf\.num_blocks: bundle 2, config 3"):
        prepare_init_from(src, tmp_path / "w2", model=bigger)
    # dropout rates and loss weights are training-time settings and may change
    _, mc, _, _ = prepare_init_from(src, tmp_path / "w3", model={"encoder_conf": {"dropout_rate": 0.3},
                                                                  "model_conf": {"ctc_weight": 0.5}})
    assert mc["encoder_conf"]["dropout_rate"] == 0.3 and mc["model_conf"]["ctc_weight"] == 0.5
    # a resumed run keeps the CMVN it started with (the bundle may have been replaced since)
    saved = json.loads((tmp_path / "w3" / "global_cmvn.json").read_text())
    saved["frame_num"] = 2 * saved["frame_num"]
    (tmp_path / "w3" / "global_cmvn.json").write_text(json.dumps(saved))
    assert prepare_init_from(src, tmp_path / "w3")[1]["cmvn"]["frame_num"] == saved["frame_num"]
    with pytest.raises(InvalidParameterError, match="symbols the bundle's tokenizer lacks"):
        prepare_init_from(src, tmp_path / "w4", train=[{"txt": "call 911 now"}])
    other = tmp_path / "w5"
    other.mkdir()
    (other / "tokenizer.json").write_text(build_tokenizer(["xyz"], {"type": "char"}).to_json())
    with pytest.raises(CheckpointError, match="another tokenizer"):
        prepare_init_from(src, other)
