"""Bundle: folder layout, atomic save, loading by path or shipped name, strict state_dict checks."""

from __future__ import annotations

import json

import pytest
import torch

from audioforge import bundle as bundle_module
from audioforge.bundle import Bundle, available_bundles, check_state_dict, state_dict_report
from audioforge.errors import CheckpointError, InvalidParameterError


def _bundle() -> Bundle:
    return Bundle(
        task="demo",
        architecture="linear",
        hyperparameters={"in_features": 3, "out_features": 2},
        state_dict={"weight": torch.randn(2, 3), "bias": torch.zeros(2)},
        frontend={"sample_rate": 16000},
        labels=["a", "b"],
        metrics={"accuracy": 0.5},
        options={"multi_label": False},
        extra_files={"README.txt": b"hello\n"},
    )


def test_round_trip(tmp_path):
    b = _bundle()
    folder = b.save(tmp_path / "demo")
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["format_version"] == 1 and config["task"] == "demo" and config["metrics"] == {"accuracy": 0.5}
    again = Bundle.load(folder)
    assert again.config() == b.config()
    assert again.extra_files == {"README.txt": b"hello\n"} and again.path == folder
    for k, v in b.state_dict.items():
        assert torch.equal(again.state_dict[k], v)
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temporary folder left behind


def test_save_refuses_to_clobber_and_overwrites_on_request(tmp_path):
    b = _bundle()
    b.save(tmp_path / "x")
    with pytest.raises(InvalidParameterError, match="overwrite=True"):
        b.save(tmp_path / "x")
    b.labels = ["c", "d"]
    b.save(tmp_path / "x", overwrite=True)
    assert Bundle.load(tmp_path / "x").labels == ["c", "d"]
    assert [p.name for p in tmp_path.iterdir()] == ["x"]


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    import safetensors.torch

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        _bundle().save(tmp_path / "y")
    assert list(tmp_path.iterdir()) == []


def test_shared_and_strided_tensors_are_saved(tmp_path):
    w = torch.randn(4, 3)
    b = Bundle(task="demo", architecture="x", hyperparameters={},
               state_dict={"a": w, "b": w, "c": torch.ones(3).expand(5, 3), "d": w.t()})
    again = Bundle.load(b.save(tmp_path / "z"))
    assert torch.equal(again.state_dict["c"], torch.ones(5, 3)) and torch.equal(again.state_dict["d"], w.t())


def test_bad_values(tmp_path):
    b = _bundle()
    b.extra_files = {"config.json": b"{}"}
    with pytest.raises(InvalidParameterError):
        b.save(tmp_path / "a")
    b = _bundle()
    b.metrics = {"x": float("nan")}
    with pytest.raises(InvalidParameterError, match="JSON"):
        b.save(tmp_path / "b")
    b = _bundle()
    b.options = {"when": object()}
    with pytest.raises(InvalidParameterError, match="JSON"):
        b.save(tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_load_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle_module, "shipped_bundles_dir", lambda: tmp_path / "no_assets")
    with pytest.raises(CheckpointError, match="shipped: none"):
        Bundle.load("tagger")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        Bundle.load(tmp_path / "empty")
    folder = _bundle().save(tmp_path / "ok")
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read the weights"):
        Bundle.load(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no model\.safetensors"):
        Bundle.load(folder)
    folder = _bundle().save(tmp_path / "v2")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["format_version"] = 2
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="format_version=2"):
        Bundle.load(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        Bundle.load(folder)
    with pytest.raises(CheckpointError, match="is a file"):
        Bundle.load(folder / "config.json")


def test_shipped_names(tmp_path, monkeypatch):
    root = tmp_path / "assets" / "bundles"
    _bundle().save(root / "demo_small")
    (root / "not_a_bundle").mkdir()
    monkeypatch.setattr(bundle_module, "shipped_bundles_dir", lambda: root)
    assert available_bundles() == ["demo_small"]
    assert Bundle.load("demo_small").labels == ["a", "b"]
    with pytest.raises(CheckpointError, match="shipped: demo_small"):
        Bundle.load("other")


def test_state_dict_checks():
    expected = {"a": (2, 3), "b": torch.zeros(4)}
    got = {"a": torch.zeros(3, 2), "c": torch.zeros(1)}
    report = state_dict_report(got, expected)
    assert report == {"missing": ["b"], "unexpected": ["c"], "mismatched": {"a": ((3, 2), (2, 3))}}
    with pytest.raises(CheckpointError) as info:
        check_state_dict(got, expected)
    msg = str(info.value)
    assert "missing keys (1): b" in msg and "unexpected keys (1): c" in msg and "a [3, 2] (expected [2, 3])" in msg
    check_state_dict({"a": torch.zeros(2, 3), "b": torch.ones(4)}, expected)
    b = _bundle()
    with pytest.raises(CheckpointError, match="missing keys"):
        b.check_state_dict({**{k: v.shape for k, v in b.state_dict.items()}, "extra": (1,)})


def test_saved_bundle_has_ordinary_permissions(tmp_path):
    import os
    import stat

    import torch

    from audioforge.bundle import Bundle

    b = Bundle(task="test", architecture="linear", hyperparameters={}, state_dict={"w": torch.zeros(2)})
    path = b.save(tmp_path / "b")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask
    for f in path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask
