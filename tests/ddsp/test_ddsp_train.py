"""Training: data cache, statistics, loss decreasing, checkpoint + resume, the bundle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audioforge.ddsp.data import (
    DDSPDataModule,
    before_onset,
    build_cache,
    compute_statistics,
    hold_f0,
    load_cache,
    map_quantiles,
)
from audioforge.ddsp.losses import multiscale_spectral_loss
from audioforge.ddsp.train import DDSPLightning, load_config, load_model, train_ddsp
from audioforge.errors import InvalidParameterError, ManifestError

SR = 16000


def _write_melody(folder: Path, name: str, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    frames = n // 64 + 1
    notes = 220.0 * 2.0 ** (rng.integers(0, 12, size=8) / 12.0)
    f0 = np.repeat(notes, -(-frames // 8))[:frames].astype(np.float32)
    f0[: frames // 10] = 0.0  # a rest
    f0_s = np.interp(np.arange(n) / 64.0, np.arange(frames), f0)
    phase = 2 * np.pi * np.cumsum(f0_s) / SR
    y = sum(0.2 / k * np.sin(k * phase) for k in range(1, 6)) * (f0_s > 0)
    sf.write(str(folder / f"{name}.wav"), y.astype(np.float32), SR, subtype="PCM_16")
    np.save(folder / f"{name}.f0.npy", f0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("recordings")
    for i in range(3):
        _write_melody(src, f"clip{i}", 2.1, i)
    return build_cache(src, tmp_path_factory.mktemp("cache") / "c", example_frames=250)


def test_hold_f0_and_quantiles() -> None:
    f0 = np.array([0, 0, 200, 0, 0, 300, 0], dtype=np.float32)
    np.testing.assert_array_equal(hold_f0(f0), [200, 200, 200, 200, 200, 300, 300])
    np.testing.assert_array_equal(hold_f0(f0, max_gap=1), [200, 200, 200, 200, 0, 300, 300])
    assert not hold_f0(np.zeros(4)).any()
    # lead: the last `lead` frames of a gap take the coming note's f0; leading frames likewise
    np.testing.assert_array_equal(hold_f0(f0, lead=1), [200, 200, 200, 200, 300, 300, 300])
    np.testing.assert_array_equal(hold_f0(f0, lead=5), [200, 200, 200, 300, 300, 300, 300])
    np.testing.assert_array_equal(hold_f0(np.zeros(3), lead=2), [0, 0, 0])
    mask, nxt = before_onset(f0 > 0, 1)
    np.testing.assert_array_equal(mask, [0, 1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(nxt[[1, 4, 6]], [2, 5, 6])
    with pytest.raises(InvalidParameterError, match="lead"):
        hold_f0(f0, lead=-1)
    with pytest.raises(InvalidParameterError, match="lead"):
        hold_f0(np.zeros(4), lead=2.5)
    with pytest.raises(InvalidParameterError, match="frames"):
        before_onset(f0 > 0, -1)
    with pytest.raises(InvalidParameterError, match="1-D"):
        before_onset(np.zeros((2, 3), dtype=bool), 1)
    mask, nxt = before_onset(np.zeros(0, dtype=bool), 3)
    assert mask.shape == nxt.shape == (0,)
    src = np.linspace(-60, -20, 11)
    tgt = np.linspace(-40, -10, 11)
    np.testing.assert_allclose(map_quantiles(np.array([-60.0, -40.0, -20.0]), src, tgt), [-40, -25, -10], atol=1e-5)


def test_cache_and_statistics(tiny_cache: Path) -> None:
    data = load_cache(tiny_cache)
    assert data["audio"].shape == (6, 250 * 64) and data["f0_hz"].shape == (6, 250)
    assert (data["f0_hz"][:] > 0).all()  # held through the rest
    stats = data["meta"]["statistics"]
    assert 57 <= stats["pitch_note"]["mean"] <= 69
    q = stats["quantiles"]
    assert len(q["levels"]) == len(q["loudness_db"]) == 256 and np.all(np.diff(q["loudness_db"]) >= 0)
    # a second build with the same settings is reused as is
    mtime = (tiny_cache / "cache.json").stat().st_mtime
    assert build_cache(Path(data["meta"]["source"]), tiny_cache, example_frames=250) == tiny_cache
    assert (tiny_cache / "cache.json").stat().st_mtime == mtime
    with pytest.raises(InvalidParameterError):
        compute_statistics(np.zeros(10), np.zeros(10), np.zeros(10, bool))


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(ManifestError):
        build_cache(tmp_path, tmp_path / "c")
    with pytest.raises(InvalidParameterError):
        load_config({"train_cache": "x", "nonsense": 1})


def test_loss_decreases(tiny_cache: Path) -> None:
    torch.manual_seed(0)
    dm = DDSPDataModule(tiny_cache, batch_size=2, crop_frames=48)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    module = DDSPLightning("tiny", lr=3e-3)
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    gen = torch.Generator()
    losses = []
    for _ in range(10):
        audio = module.model(batch["f0_hz"], batch["loudness_db"], generator=gen.manual_seed(0))[0]
        loss = multiscale_spectral_loss(audio, batch["audio"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.9 * losses[0]


def test_train_checkpoint_resume_bundle(tiny_cache: Path, tmp_path: Path) -> None:
    cfg = {"train_cache": str(tiny_cache), "val_cache": str(tiny_cache), "work_dir": str(tmp_path / "run"),
           "bundle_dir": str(tmp_path / "bundle"), "batch_size": 2, "crop_frames": 64, "max_steps": 3,
           "checkpoint_every": 2, "eval_examples": 1, "instrument": "test", "threads": 1}
    first = train_ddsp(cfg)
    assert first.metrics["steps"] == 3 and not first.options["training"]["resumed"]
    assert (tmp_path / "run" / "last.ckpt").is_file()
    second = train_ddsp({**cfg, "max_steps": 5})
    assert second.metrics["steps"] == 5 and second.options["training"]["resumed"]
    for key in ("loudness_l1_db", "spectral_distance", "train_minutes"):
        assert np.isfinite(second.metrics[key])
    model, bundle = load_model(tmp_path / "bundle")
    assert bundle.task == "ddsp" and bundle.options["statistics"]["quantiles"]["levels"][-1] == 1.0
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in bundle.state_dict.values())


def test_cache_without_score_uses_tracker(tmp_path: Path) -> None:
    src = tmp_path / "rec"
    src.mkdir()
    _write_melody(src, "a", 2.1, 5)
    (src / "a.f0.npy").unlink()  # a plain recording: f0 from the tracker
    data = load_cache(build_cache(src, tmp_path / "c", example_frames=250, f0_method="yin"))
    assert data["meta"]["n_examples"] == 2
    assert 57 <= data["meta"]["statistics"]["pitch_note"]["mean"] <= 69
    assert 0.5 < data["note"][:].mean() <= 1.0
