"""Language models in bundles and exports: estimation in the recogniser's units, fusion tuning, ``audioforge asr lm``,
and the onnxruntime recogniser decoding with the same model as torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from audioforge.asr.evaluate import evaluate_transcriber
from audioforge.asr.infer import Recognizer
from audioforge.asr.lm import LM_FILE, NgramLM
from audioforge.asr.lm_fusion import attach_lm, estimate_token_lm, tune_lm_fusion
from audioforge.bundle import Bundle
from audioforge.cli import app
from audioforge.corpora.manifest import Manifest
from audioforge.errors import InvalidParameterError

from .test_data import WORDS, tone_manifest  # noqa: F401  (fixture)
from .test_evaluate import tiny_bundle  # noqa: F401  (fixture)

runner = CliRunner()


def sentences(n: int = 200, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 5)))) for _ in range(n)]


def test_estimate_in_the_tokenizers_units(tiny_bundle: Path) -> None:  # noqa: F811
    tok = Recognizer.from_bundle(tiny_bundle).tokenizer
    lm, counts = estimate_token_lm(tok, [*sentences(), "caf\u00e9 au lait"], 4)
    assert counts["skipped"] == 1 and counts["sentences"] == 200  # the unknown character drops its sentence
    assert set(lm.vocab) == {s for s in tok.symbols if not s.startswith("<")}  # unseen letters keep some mass
    assert "▁" in lm.vocab and lm.order == 4
    with pytest.raises(InvalidParameterError, match="no usable sentence"):
        estimate_token_lm(tok, ["\u00e9\u00e9"], 3)


def test_tuning_grid_and_its_no_lm_point(tiny_bundle: Path, tone_manifest: Path) -> None:  # noqa: F811
    m = Manifest.load(tone_manifest)
    m = Manifest(list(m)[:3], root=m.root)
    rec = Recognizer.from_bundle(tiny_bundle, chunk_size=4, beam_size=3, nbest=3)
    with pytest.raises(InvalidParameterError, match="no language model"):
        tune_lm_fusion(rec, m)
    rec.lm, _ = estimate_token_lm(rec.tokenizer, sentences(), 3)
    with pytest.raises(InvalidParameterError, match="empty"):
        tune_lm_fusion(rec, Manifest([], root=m.root))
    with pytest.raises(InvalidParameterError, match="weights >= 0"):
        tune_lm_fusion(rec, m, weights=[-0.5])
    best, points = tune_lm_fusion(rec, m, weights=[0.0, 0.5, 1.0], bonuses=[0.0, 2.0])
    assert [(p.weight, p.bonus) for p in points] == [(0.0, 0.0), (0.5, 0.0), (0.5, 2.0), (1.0, 0.0), (1.0, 2.0)]
    assert (best.cer, best.wer) == min((p.cer, p.wer) for p in points)
    # the weight-0 point is the recogniser without the model, transcribing the usual way
    plain = Recognizer.from_bundle(tiny_bundle, chunk_size=4, beam_size=3, nbest=3)
    ref = evaluate_transcriber(lambda x: plain.transcribe(x, 16000, simulate_streaming=True).text, m, system="ref")
    assert (points[0].cer, points[0].wer) == pytest.approx((ref.cer, ref.wer))


def test_asr_lm_command_writes_a_bundle_that_decodes_with_it(tiny_bundle: Path, tone_manifest: Path,  # noqa: F811
                                                             tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("\n".join(s.upper() + "!" for s in sentences()) + "\n", encoding="utf-8")
    out = tmp_path / "with_lm"
    res = runner.invoke(app, ["asr", "lm", str(tiny_bundle), str(text), "--out", str(out), "--order", "3",
                              "--min-counts", "1,1,2", "--tune", str(tone_manifest), "--tune-split", "test",
                              "--tune-utterances", "2"])
    assert res.exit_code == 0, res.output
    assert "best: weight" in res.output and (out / LM_FILE).is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["options"]["lm"]["order"] == 3 and cfg["options"]["lm"]["sentences"] == 200
    rec = Recognizer.from_bundle(out)
    assert rec.lm is not None and rec.config.lm_weight == cfg["options"]["decoding"]["lm_weight"]
    # the text went through the transcript normaliser (upper case and "!" gone): only known symbols
    assert set(rec.lm.vocab) <= set(rec.tokenizer.symbols)
    res = runner.invoke(app, ["asr", "lm", str(tiny_bundle), str(text), "--out", str(out), "--min-counts", "x"])
    assert isinstance(res.exception, InvalidParameterError) and "--min-counts" in str(res.exception)
    res = runner.invoke(app, ["asr", "lm", str(tiny_bundle), str(tmp_path / "none.txt"), "--out", str(out)])
    assert isinstance(res.exception, InvalidParameterError) and "none.txt" in str(res.exception)


def test_onnx_export_carries_the_lm_and_decodes_like_torch(tiny_bundle: Path, tone_manifest: Path,  # noqa: F811
                                                           tmp_path: Path) -> None:
    from audioforge.asr.export import export_recognizer_onnx
    from audioforge.asr.onnx_infer import OnnxRecognizer

    rec = Recognizer.from_bundle(tiny_bundle, chunk_size=4)
    lm, _ = estimate_token_lm(rec.tokenizer, sentences(), 3)
    b = attach_lm(Bundle.load(tiny_bundle), lm, weight=1.5, bonus=1.0, out=tmp_path / "b")
    rec = Recognizer.from_bundle(b.path, chunk_size=4, num_left_chunks=2)
    export_recognizer_onnx(rec, tmp_path / "exp")
    assert (tmp_path / "exp" / LM_FILE).is_file()
    onnx = OnnxRecognizer(tmp_path / "exp")
    assert onnx.lm is not None and onnx.fusion() is not None and onnx.config.lm_weight == 1.5
    m = Manifest.load(tone_manifest)
    for e in list(m)[:3]:
        from audioforge.audio import load

        audio, sr = load(m.audio_path(e))
        a = rec.transcribe(audio, sr, simulate_streaming=True)
        o = onnx.transcribe(audio, sr)
        assert o.text == a.text and [t for t, _ in o.nbest] == [t for t, _ in a.nbest]
    # exporting a bundle without a model removes a stale one
    export_recognizer_onnx(Recognizer.from_bundle(tiny_bundle, chunk_size=4, num_left_chunks=2), tmp_path / "exp")
    assert not (tmp_path / "exp" / LM_FILE).exists() and OnnxRecognizer(tmp_path / "exp").lm is None
    with pytest.raises(InvalidParameterError, match="ASR bundle"):
        attach_lm(Bundle("tagging", "x", {}, {}), NgramLM.estimate([["a"]], 1), weight=1.0, bonus=0.0)
