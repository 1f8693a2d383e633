"""ASR evaluation: text normalisation, CER/WER, full-context and streaming scoring, the pocketsphinx peer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audioforge.asr.evaluate import (
    EvaluationResult,
    PocketsphinxRecognizer,
    error_rates,
    error_rates_by,
    evaluate_bundle,
    evaluate_transcriber,
    format_breakdown,
    format_table,
    normalize_text,
)
from audioforge.asr.infer import Recognizer
from audioforge.asr.tokenizer import CharTokenizer
from audioforge.bundle import Bundle
from audioforge.errors import InvalidParameterError

from .conftest import tiny_model
from .test_data import tone_manifest  # noqa: F401  (fixture)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny U2 bundle (vocabulary: 26 letters and the word boundary)."""
    tok = CharTokenizer.build(["abcdefghijklmnopqrstuvwxyz z"])
    rec = Recognizer(tiny_model(seed=1), tok)
    return rec.to_bundle().save(tmp_path_factory.mktemp("bundle") / "asr")


def test_normalize_text() -> None:
    assert normalize_text("  Hello, World!  It's 3 o'clock. ") == "hello world it's 3 o'clock"
    assert normalize_text("") == ""


def test_error_rates() -> None:
    r = error_rates(["the cat sat", "a dog"], ["the cat sat", "a dog"])
    assert r == {"cer": 0.0, "wer": 0.0}
    r = error_rates(["abcd"], ["abce"])
    assert r["cer"] == pytest.approx(25.0) and r["wer"] == pytest.approx(100.0)
    assert error_rates(["The cat."], ["the cat"])["wer"] == 0.0
    assert error_rates(["a b"], [""])["wer"] == pytest.approx(100.0)
    with pytest.raises(InvalidParameterError, match="hypotheses"):
        error_rates(["a"], [])
    with pytest.raises(InvalidParameterError, match="non-empty reference"):
        error_rates([""], ["a"])


def test_evaluate_transcriber_and_table(tone_manifest: Path) -> None:  # noqa: F811
    from audioforge.corpora.manifest import Manifest

    texts = iter([e["txt"] for e in Manifest.load(tone_manifest) if e["split"] == "test"])  # manifest order
    res = evaluate_transcriber(lambda x: next(texts), tone_manifest, system="oracle", split="test")
    assert res.cer == 0.0 and res.wer == 0.0 and res.utterances == 4 and res.audio_s > 0
    res2 = evaluate_transcriber(lambda x: "", tone_manifest, system="silent", max_utterances=2)
    assert res2.wer == 100.0 and res2.utterances == 2
    table = format_table([res, res2])
    assert "| oracle | 4 |" in table and "100.00" in table
    assert set(res.to_dict()) >= {"cer", "wer", "rtf", "system"} and "hypotheses" not in res.to_dict()
    with pytest.raises(InvalidParameterError, match="max_utterances"):
        evaluate_transcriber(lambda x: "", tone_manifest, system="x", max_utterances=0)


def test_pocketsphinx_peer() -> None:
    ps = PocketsphinxRecognizer()
    assert isinstance(ps.transcribe_pcm(np.zeros(16000, dtype=np.float32)), str)


def test_evaluate_bundle(tiny_bundle: Path, tone_manifest: Path) -> None:  # noqa: F811
    results = evaluate_bundle(Bundle.load(tiny_bundle), tone_manifest, split="test", max_utterances=2)
    names = [r.system for r in results]
    assert names == ["u2 full context", "u2 streaming chunk 16", "pocketsphinx 5 (en-us)"]
    assert all(isinstance(r, EvaluationResult) and r.utterances == 2 and r.cer >= 0 for r in results)
    only = evaluate_bundle(tiny_bundle, tone_manifest, split=None, full_context=False, pocketsphinx=False,
                           chunk_size=4, max_utterances=1)
    assert [r.system for r in only] == ["u2 streaming chunk 4"]
    with pytest.raises(InvalidParameterError, match="nothing to evaluate"):
        evaluate_bundle(tiny_bundle, tone_manifest, full_context=False, streaming=False, pocketsphinx=False)
    with pytest.raises(InvalidParameterError, match="chunk_size"):
        evaluate_bundle(tiny_bundle, tone_manifest, chunk_size=0)


def _levenshtein(a: list[str], b: list[str]) -> int:
    """Plain dynamic-programming edit distance (the reference for the grouped scores)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def test_error_rates_by_voice_against_edit_distances(tmp_path: Path) -> None:
    from audioforge.corpora.manifest import Manifest

    rows = [("u1", "kal", "the cat sat", "the cat sad"), ("u2", "kal", "a dog ran", "a dog ran"),
            ("u3", "m1", "hello world", "yellow word"), ("u4", None, "one two", "one"),
            ("u5", "m1", "skip me", "skip me")]
    entries = [{"key": k, "wav": f"{k}.wav", "txt": ref, "duration": 1.0, "split": "test",
                **({"voice": v} if v else {})} for k, v, ref, _ in rows]
    path = Manifest(entries, root=tmp_path).save(tmp_path / "m.jsonl")
    scored = rows[:4]  # u5 was not scored (e.g. max_utterances): it must not count
    res = EvaluationResult("sys", 0.0, 0.0, len(scored), 4.0, 1.0, {k: hyp for k, _, _, hyp in scored})
    got = error_rates_by(res, path, "voice", split="test")
    assert list(got) == ["(none)", "kal", "m1"]
    for group in got:
        members = [(ref, hyp) for _, v, ref, hyp in scored if (v or "(none)") == group]
        chars = sum(_levenshtein(list(r), list(h)) for r, h in members) / sum(len(r) for r, _ in members)
        words = sum(_levenshtein(r.split(), h.split()) for r, h in members) / sum(len(r.split()) for r, _ in members)
        assert got[group]["cer"] == pytest.approx(100 * chars) and got[group]["wer"] == pytest.approx(100 * words)
        assert got[group]["utterances"] == len(members)
    table = format_breakdown({"sys": got, "other": {"kal": got["kal"]}}, "voice")
    assert table.splitlines()[0] == "| voice | utterances | sys CER / WER % | other CER / WER % |"
    assert f"| kal | 2 | {got['kal']['cer']:.2f} / {got['kal']['wer']:.2f} |" in table
    assert table.splitlines()[-1] == f"| m1 | 1 | {got['m1']['cer']:.2f} / 100.00 |  |"  # m1: absent from "other"
    with pytest.raises(InvalidParameterError, match="no hypotheses"):
        error_rates_by(EvaluationResult("bare", 0, 0, 0, 0, 0), path, "voice")
    with pytest.raises(InvalidParameterError, match="missing from the manifest"):
        error_rates_by(EvaluationResult("x", 0, 0, 1, 1, 1, {"zz": "a"}), path, "voice")
