"""``audioforge transcribe``, ``audioforge export asr``, ``audioforge asr train|evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audioforge.cli import app
from audioforge.corpora.manifest import Manifest
from audioforge.errors import CheckpointError, InvalidParameterError

from .test_data import tone_manifest  # noqa: F401  (fixture)
from .test_evaluate import tiny_bundle  # noqa: F401  (fixture)

runner = CliRunner()


@pytest.fixture(scope="module")
def wav(tone_manifest: Path) -> Path:  # noqa: F811
    m = Manifest.load(tone_manifest)
    return m.audio_path(m[0])


def test_transcribe_text_json_stream(tiny_bundle: Path, wav: Path) -> None:  # noqa: F811
    res = runner.invoke(app, ["transcribe", str(wav), "--bundle", str(tiny_bundle)])
    assert res.exit_code == 0, res.output
    assert len(res.output.splitlines()) == 1
    res = runner.invoke(app, ["transcribe", str(wav), "--bundle", str(tiny_bundle), "--json"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    doc = json.loads("\n".join(lines[:-1]))
    assert set(doc) >= {"text", "nbest", "words", "timings"} and doc["text"] == lines[-1].strip()
    assert doc["timings"]["rtf"] > 0
    res = runner.invoke(app, ["transcribe", str(wav), "--bundle", str(tiny_bundle), "--stream"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert any("partial" in line for line in lines) and "final" in lines[-2]
    res = runner.invoke(app, ["transcribe", str(wav), "--bundle", str(tiny_bundle), "--stream", "--json"])
    events = json.loads("\n".join(res.output.splitlines()[:-1]))
    assert events[-1]["type"] == "final" and events[0]["audio_s"] > 0


def test_transcribe_onnx_backend(tiny_bundle: Path, wav: Path, tmp_path: Path) -> None:  # noqa: F811
    res = runner.invoke(app, ["export", "asr", str(tiny_bundle), "--out", str(tmp_path / "exp"), "--int8", "dynamic"])
    assert res.exit_code == 0, res.output
    assert "int8 model" in res.output and (tmp_path / "exp" / "int8" / "encoder.onnx").is_file()
    res = runner.invoke(app, ["transcribe", str(wav), "--bundle", str(tmp_path / "exp" / "int8"), "--backend", "onnx"])
    assert res.exit_code == 0, res.output


def test_cli_errors(tiny_bundle: Path, wav: Path, tone_manifest: Path, tmp_path: Path) -> None:  # noqa: F811
    res = runner.invoke(app, ["transcribe", str(wav), "--bundle", str(tiny_bundle), "--backend", "tflite"])
    assert isinstance(res.exception, InvalidParameterError)
    res = runner.invoke(app, ["transcribe", str(wav), "--bundle", str(tmp_path / "none")])
    assert isinstance(res.exception, CheckpointError)
    res = runner.invoke(app, ["export", "asr", str(tiny_bundle), "--out", str(tmp_path / "x"), "--int8", "static"])
    assert isinstance(res.exception, InvalidParameterError) and "calibration" in str(res.exception)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    res = runner.invoke(app, ["asr", "train", str(bad)])
    assert isinstance(res.exception, InvalidParameterError)
    good = tmp_path / "ft.json"
    good.write_text(json.dumps({"work_dir": str(tmp_path / "ft"), "train_manifest": str(tone_manifest)}))
    res = runner.invoke(app, ["asr", "train", str(good), "--init-from", "tagger"])  # a tagging bundle
    assert isinstance(res.exception, CheckpointError) and "not an ASR one" in str(res.exception)
    res = runner.invoke(app, ["asr", "train", str(good), "--init-from", str(tmp_path / "nothing-here")])
    assert isinstance(res.exception, CheckpointError)


def test_asr_evaluate_command(tiny_bundle: Path, tone_manifest: Path) -> None:  # noqa: F811
    res = runner.invoke(app, ["asr", "evaluate", str(tiny_bundle), str(tone_manifest), "--no-pocketsphinx",
                              "--max-utterances", "1"])
    assert res.exit_code == 0, res.output
    assert "u2 full context" in res.output and "u2 streaming chunk 16" in res.output
    res = runner.invoke(app, ["asr", "evaluate", str(tiny_bundle), str(tone_manifest), "--no-pocketsphinx",
                              "--max-utterances", "1", "--json"])
    assert json.loads(res.output)[0]["system"] == "u2 full context"
    res = runner.invoke(app, ["asr", "evaluate", str(tiny_bundle), str(tone_manifest), "--no-pocketsphinx",
                              "--max-utterances", "2", "--by", "split", "--json"])
    rows = json.loads(res.output)
    assert [r["by_split"]["test"]["utterances"] for r in rows] == [2, 2]
    res = runner.invoke(app, ["asr", "evaluate", str(tiny_bundle), str(tone_manifest), "--no-pocketsphinx",
                              "--max-utterances", "2", "--by", "split"])
    assert "| split | utterances | u2 full context CER / WER % |" in res.output


def test_shipped_recognizer_is_small_and_transcribes_a_held_out_voice(tmp_path: Path) -> None:
    from audioforge.asr.evaluate import error_rates
    from audioforge.asr.lm import LM_FILE
    from audioforge.audio import save
    from audioforge.bundle import Bundle, available_bundles, shipped_bundles_dir
    from audioforge.cli.demo import DEMO_SENTENCE
    from audioforge.corpora.tts import synthesize_one

    if "asr" not in available_bundles():
        pytest.skip("no ASR bundle shipped in this checkout")
    folder = shipped_bundles_dir() / "asr"
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 20e6  # the recipe's ship check, language model included
    b = Bundle.load("asr")
    assert b.task == "asr" and LM_FILE in b.extra_files
    assert {"u2 full context", "u2 streaming chunk 16"} <= set(b.metrics["test"])
    wav = save(tmp_path / "kal.wav", synthesize_one(DEMO_SENTENCE, "flite-kal"), 16000)
    res = runner.invoke(app, ["transcribe", str(wav), "--stream"])
    assert res.exit_code == 0, res.output
    assert error_rates([DEMO_SENTENCE], [res.output.splitlines()[-1]])["cer"] < 35.0
