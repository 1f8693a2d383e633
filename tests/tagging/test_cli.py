"""``audioforge tag`` and ``audioforge tagging ...`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from audioforge.audio import save
from audioforge.cli import app
from audioforge.errors import AudioFileError, CheckpointError, InvalidParameterError, ManifestError

from .test_export import tiny_bundle
from .test_strong_labels import strong_corpus  # noqa: F401 - fixture
from .test_train import make_tone_corpus

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle().save(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone_corpus(tmp_path_factory.mktemp("tones"), clips=8)


def test_tag_prints_top_k_and_draws_timeline(bundle_dir: Path, tmp_path: Path) -> None:
    wav = tmp_path / "clip.wav"
    save(wav, (0.1 * np.sin(2 * np.pi * 440 * np.arange(44100 * 4) / 44100)).astype(np.float32), 44100)
    png = tmp_path / "timeline.png"
    res = runner.invoke(app, ["tag", str(wav), "--bundle", str(bundle_dir), "--top-k", "3", "--timeline", str(png),
                              "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["tags"]) == 3 and all(0.0 <= t["score"] <= 1.0 for t in out["tags"])
    scores = [t["score"] for t in out["tags"]]
    assert scores == sorted(scores, reverse=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(app, ["tag", str(wav), "--bundle", str(bundle_dir)])
    assert res.exit_code == 0 and "score" in res.stdout


def test_tag_errors(bundle_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["tag", str(tmp_path / "missing.wav"), "--bundle", str(bundle_dir)])
    assert isinstance(res.exception, AudioFileError)
    wav = tmp_path / "nan.wav"
    import soundfile as sf

    y = np.zeros(8000, dtype=np.float32)
    y[10] = np.nan
    sf.write(wav, y, 16000, subtype="FLOAT")
    res = runner.invoke(app, ["tag", str(wav), "--bundle", str(bundle_dir)])
    assert res.exception is not None and "NaN" in str(res.exception)
    res = runner.invoke(app, ["tag", str(wav), "--bundle", str(tmp_path / "nope")])
    assert isinstance(res.exception, CheckpointError)


def test_evaluate_command(bundle_dir: Path, corpus: Path) -> None:
    res = runner.invoke(app, ["tagging", "evaluate", str(bundle_dir), str(corpus), "--split", "all", "--json",
                              "--clip-seconds", "2"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["clips"] == 8 and 0.0 <= out["mAP"] <= 1.0
    res = runner.invoke(app, ["tagging", "evaluate", str(bundle_dir), str(corpus), "--clip-seconds", "2",
                              "--per-class"])
    assert res.exit_code == 0 and "mAP" in res.stdout
    res = runner.invoke(app, ["tagging", "evaluate", str(bundle_dir), str(corpus), "--split", "dev"])
    assert isinstance(res.exception, ManifestError)
    # the tone corpus has no strong labels: --timeline says so
    res = runner.invoke(app, ["tagging", "evaluate", str(bundle_dir), str(corpus), "--clip-seconds", "2",
                              "--timeline"])
    assert isinstance(res.exception, ManifestError) and "strong labels" in str(res.exception)


def test_evaluate_timeline_command(bundle_dir: Path, strong_corpus: Path) -> None:  # noqa: F811
    res = runner.invoke(app, ["tagging", "evaluate", str(bundle_dir), str(strong_corpus), "--split", "all",
                              "--clip-seconds", "2", "--timeline", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert 0.0 <= out["segment_mAP"] <= 1.0 and out["segment_step_s"] == pytest.approx(0.1)


def test_export_command_errors(bundle_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["tagging", "export", str(bundle_dir), "--out", str(tmp_path), "--int8", "static"])
    assert isinstance(res.exception, InvalidParameterError) and "calibration" in str(res.exception)
    res = runner.invoke(app, ["tagging", "export", str(bundle_dir), "--out", str(tmp_path), "--int8", "int4"])
    assert isinstance(res.exception, InvalidParameterError)


def test_train_command_bad_config(tmp_path: Path) -> None:
    res = runner.invoke(app, ["tagging", "train", str(tmp_path / "none.json")])
    assert isinstance(res.exception, InvalidParameterError)


def test_help_lists_commands() -> None:
    res = runner.invoke(app, ["tagging", "--help"])
    assert res.exit_code == 0 and all(c in res.stdout for c in ("evaluate", "train", "export"))


def test_shipped_tagger_is_small_and_tags(tmp_path: Path) -> None:
    from audioforge.bundle import Bundle, available_bundles, shipped_bundles_dir

    if "tagger" not in available_bundles():
        pytest.skip("no tagger bundle shipped in this checkout")
    folder = shipped_bundles_dir() / "tagger"
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 20 * 2**20
    b = Bundle.load("tagger")
    assert b.task == "tagging" and len(b.labels) == 24
    assert "heldout_mAP_torch_fp32" in b.metrics
    wav = tmp_path / "beep.wav"
    t = np.arange(32000 * 3) / 32000
    save(wav, (0.3 * np.sin(2 * np.pi * 1000 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32), 32000)
    res = runner.invoke(app, ["tag", str(wav), "--top-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["tags"]) == 3
