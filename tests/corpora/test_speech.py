"""The synthetic speech corpus: voices, batch synthesis, manifests, durations, labels, determinism, held-out splits,
resume, the LibriSpeech layout and its loader, missing tools, and intelligibility (pocketsphinx WER)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioforge.corpora import speech, tts
from audioforge.corpora.manifest import Manifest
from audioforge.corpora.text import normalize_text, sentence_pool
from audioforge.errors import InvalidParameterError, MissingToolError

MISSING = [t for t in ("espeak-ng", "flite", "festival") if shutil.which(t) is None]
needs_tools = pytest.mark.skipif(
    bool(MISSING), reason=f"TTS tools not installed: {MISSING} (apt-get install -y espeak-ng flite festival "
    "festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)"
)
pytestmark = [pytest.mark.tools, needs_tools]

TXT_RE = re.compile(r"[a-z]+(?:'[a-z]+)*(?: [a-z]+(?:'[a-z]+)*)*")
SMALL = {"hours": 0.012, "seed": 7, "sources": ("fortune", "templates"), "progress": False}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("speech") / "c"
    return out, speech.generate_speech_corpus(out, workers=2, **SMALL)


# --------------------------------------------------------------------------------------------------------------------
# voices and synthesis
# --------------------------------------------------------------------------------------------------------------------
def test_voice_catalogue() -> None:
    engines = {v.engine for v in tts.VOICES.values()}
    assert engines == set(tts.ENGINES) == {"espeak-ng", "flite", "festival", "piper", "kokoro", "kokoro-blend"}
    assert len(tts.VOICES) >= 100
    assert set(speech._SEC_PER_WORD) == set(tts.ENGINES)  # every engine can be planned
    for name, v in tts.VOICES.items():
        assert v.name == name and v.gender in ("male", "female")
    assert {v.model for v in tts.voices_by_engine(["flite"])} == {"kal16", "awb", "rms", "slt"}
    assert {v.speaker for v in tts.voices_by_engine(["festival"])} == {"kal", "ked", "slt"}
    with pytest.raises(InvalidParameterError, match="unknown voice"):
        tts.get_voice("nobody")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voice_split_holds_out_whole_speakers(seed: int) -> None:
    train, test = tts.voice_split(seed)
    assert train and test and not set(train) & set(test)
    assert set(train) | set(test) == {v.name for v in tts.voices_by_engine(tts.CLASSIC_ENGINES)}
    speakers = lambda names: {tts.VOICES[n].speaker for n in names}  # noqa: E731
    assert not speakers(train) & speakers(test)
    for names in (train, test):
        assert {"espeak-ng", "flite", "festival"} <= {tts.VOICES[n].engine for n in names}
        assert {"male", "female"} <= {tts.VOICES[n].gender for n in names if tts.VOICES[n].engine == "espeak-ng"}
    assert tts.voice_split(seed) == (train, test)


@pytest.mark.parametrize("voice", ["espeak-en-us-klatt4", "espeak-en-gb-scotland-f2", "flite-slt", "flite-kal",
                                   "festival-kal", "festival-slt"])
def test_synthesize_every_engine(voice: str) -> None:
    ys = tts.synthesize(["the cat sat on the mat.", "a second short sentence."], voice, sr=16000)
    assert len(ys) == 2
    for y in ys:
        assert y.dtype == np.float32 and y.ndim == 1
        assert 0.5 < len(y) / 16000 < 5.0
        assert 0.01 < np.abs(y).max() <= 0.9 + 1e-6  # not silent, not clipped (klatt voices are scaled down)
        assert np.sqrt(np.mean(y**2)) > 1e-3


def test_festival_runs_one_process_for_many_utterances() -> None:
    tts.synthesize(["warm up."], "festival-ked")
    pid = tts._festival_session("ked_diphone").proc.pid
    ys = tts.synthesize([f"sentence number {w}." for w in ("one", "two", "three", "four")], "festival-ked")
    assert len(ys) == 4 and tts._festival_session("ked_diphone").proc.pid == pid
    tts.close_sessions()
    assert not any(k[0] == os.getpid() for k in tts._SESSIONS)


def test_synthesis_is_deterministic() -> None:
    for voice in ("espeak-en-us-m3", "flite-awb", "festival-slt"):
        a = tts.synthesize_one("repeat after me.", voice)
        b = tts.synthesize_one("repeat after me.", voice)
        assert np.array_equal(a, b), voice


def test_missing_tool_names_the_apt_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from audioforge.corpora import tools

    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    with pytest.raises(MissingToolError, match=r"apt-get install -y flite"):
        tts.synthesize_one("hello there.", "flite-slt")
    with pytest.raises(MissingToolError, match=r"apt-get install -y espeak-ng"):
        tts.synthesize_one("hello there.", "espeak-en-us-m1")


# --------------------------------------------------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------------------------------------------------
def test_manifest_entries(corpus: tuple[Path, Manifest]) -> None:
    out, m = corpus
    assert Manifest.load(out).entries == m.entries
    m.validate(sample_rate=16000, require=("txt",))
    assert 0.6 * 0.012 * 3600 < m.total_duration < 1.6 * 0.012 * 3600
    for e in m:
        info = sf.info(str(m.audio_path(e)))
        assert info.channels == 1 and info.samplerate == 16000 and e["sr"] == 16000
        assert e["duration"] == pytest.approx(info.frames / 16000, abs=1e-3)
        assert 1.0 <= e["duration"] <= 15.0
        assert TXT_RE.fullmatch(e["txt"]) and normalize_text(e["text"]) == e["txt"]
        v = tts.VOICES[e["voice"]]
        assert (e["engine"], e["gender"], e["speaker"]) == (v.engine, v.gender, v.speaker)
        assert e["split"] in ("train", "test") and e["source"] in ("fortune", "templates")
        assert "level_db" in e["augment"]
        y, _ = sf.read(str(m.audio_path(e)), dtype="float32")
        assert np.sqrt(np.mean(y**2)) > 1e-3 and np.abs(y).max() < 1.0
    assert not list(out.rglob("*.tmp*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"]["utterances"] == len(m)
    assert set(summary["by_split"]) == {"train", "test"}


def test_held_out_voices_and_sentences(corpus: tuple[Path, Manifest]) -> None:
    _, m = corpus
    train, test = m.filter(split="train"), m.filter(split="test")
    assert len(train) and len(test)
    assert not {e["speaker"] for e in train} & {e["speaker"] for e in test}
    assert not {e["txt"] for e in train} & {e["txt"] for e in test}
    _, test_voices = tts.voice_split(SMALL["seed"], test_fraction=0.2)
    assert {e["voice"] for e in test} <= set(test_voices)


def test_deterministic_regardless_of_workers(corpus: tuple[Path, Manifest], tmp_path: Path) -> None:
    out, m = corpus
    m1 = speech.generate_speech_corpus(tmp_path / "c1", workers=1, **SMALL)
    assert m1.entries == m.entries
    for a, b in zip(m1, m, strict=True):
        assert (tmp_path / "c1" / a["wav"]).read_bytes() == (out / b["wav"]).read_bytes()


def test_resume_redoes_only_missing_files(corpus: tuple[Path, Manifest], tmp_path: Path) -> None:
    src, m = corpus
    out = tmp_path / "r"
    shutil.copytree(src, out)
    victim = out / m[1]["wav"]
    victim.unlink()
    (out / "manifest.jsonl").unlink()
    stray = victim.parent / f".{victim.name}.abc.tmp.wav"  # what an interrupted write leaves behind
    stray.write_bytes(b"RIFF")
    keep = out / m[0]["wav"]
    before = keep.stat().st_mtime_ns
    m2 = speech.generate_speech_corpus(out, workers=1, **SMALL)
    assert m2.entries == m.entries
    assert victim.read_bytes() == (src / m[1]["wav"]).read_bytes()
    assert keep.stat().st_mtime_ns == before
    assert all(not e["wav"].endswith(".tmp.wav") for e in m2)
    with pytest.raises(InvalidParameterError, match="other settings"):
        speech.generate_speech_corpus(out, workers=1, **{**SMALL, "seed": 8})


def test_more_hours_extend_the_same_plan() -> None:
    small = speech.plan_speech_corpus(hours=0.01, seed=3, sources=("fortune", "templates"))
    large = speech.plan_speech_corpus(hours=0.03, seed=3, sources=("fortune", "templates"))
    assert large[: len(small)] == small and len(large) > 2 * len(small)


def test_librispeech_layout_and_loader(tmp_path: Path) -> None:
    out = tmp_path / "ls"
    m = speech.generate_speech_corpus(out, hours=0.006, seed=1, workers=1, sources=("templates",), progress=False,
                                      librispeech_layout=True, engines=("flite", "espeak-ng"), augment=False)
    root = out / "LibriSpeech"
    assert (root / "SPEAKERS.TXT").is_file()
    for e in m:
        spk, chapter, _ = e["key"].split("-")
        assert e["wav"] == f"LibriSpeech/{e['split']}/{spk}/{chapter}/{e['key']}.flac"
        trans = (root / e["split"] / spk / chapter / f"{spk}-{chapter}.trans.txt").read_text().splitlines()
        assert f"{e['key']} {e['txt'].upper()}" in trans
        assert set(e["augment"]) <= {"level_db", "limited_db"}
    loaded = speech.load_librispeech(out)
    assert sorted(e["key"] for e in loaded) == sorted(e["key"] for e in m)
    by_key = {e["key"]: e for e in loaded}
    for e in m:
        got = by_key[e["key"]]
        assert got["txt"] == e["txt"] and got["split"] == e["split"] and got["gender"] == e["gender"]
        assert got["duration"] == pytest.approx(e["duration"], abs=1e-3)
        assert loaded.audio_path(got) == (out / e["wav"])
    loaded.validate(sample_rate=16000, require=("txt",))
    subset = speech.load_librispeech(root / "train")
    assert {e["split"] for e in subset} == {"train"} and len(subset) == len(m.filter(split="train"))
    assert speech.load_librispeech(root, lowercase=False)[0]["txt"].isupper()


def test_loader_errors(tmp_path: Path) -> None:
    from audioforge.errors import ManifestError

    with pytest.raises(ManifestError, match="not found"):
        speech.load_librispeech(tmp_path / "nothing")
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "84" / "121123"
    chapter.mkdir(parents=True)
    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n")
    with pytest.raises(ManifestError, match="no audio"):
        speech.load_librispeech(tmp_path)


def test_bad_parameters() -> None:
    with pytest.raises(InvalidParameterError):
        speech.plan_speech_corpus(hours=0)
    with pytest.raises(InvalidParameterError):
        speech.plan_speech_corpus(hours=1, test_fraction=1.5)
    with pytest.raises(InvalidParameterError):
        speech.plan_speech_corpus(hours=1, engines=("nope",))


# --------------------------------------------------------------------------------------------------------------------
# intelligibility
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_flite_and_festival_speech_is_intelligible_to_pocketsphinx() -> None:
    pocketsphinx = pytest.importorskip("pocketsphinx", reason="pip install pocketsphinx (ships its English model)")
    jiwer = pytest.importorskip("jiwer", reason="pip install jiwer")
    from audioforge.audio import float_to_pcm16

    model = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    vocab = {line.split(maxsplit=1)[0].split("(")[0] for line in model.open(encoding="utf-8", errors="replace")}
    pool = sentence_pool(0, sources=("fortune", "templates"), n_templates=2000)
    simple = [s for s in pool if 5 <= s.n_words <= 10 and all(w in vocab for w in s.txt.split())][:8]
    voices = ["flite-slt", "flite-kal", "flite-rms", "flite-awb", "festival-kal", "festival-ked", "festival-slt",
              "flite-slt"]
    decoder = pocketsphinx.Decoder()
    refs, hyps = [], []
    for sent, voice in zip(simple, voices, strict=True):
        pcm = float_to_pcm16(tts.synthesize_one(sent.spoken, voice, sr=16000))
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        refs.append(sent.txt)
        hyps.append(" ".join(re.sub(r"[^a-z' ]", " ", hyp.hypstr.lower()).split()) if hyp else "")
    wer = jiwer.wer(refs, hyps)
    assert wer < 0.5, list(zip(refs, hyps, strict=True))
