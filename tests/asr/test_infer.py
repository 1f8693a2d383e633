from __future__ import annotations

import numpy as np
import pytest
import torch

from audioforge.asr.frontend import compute_fbank
from audioforge.asr.infer import Recognizer
from audioforge.asr.search import ctc_prefix_beam_search
from audioforge.asr.streaming import DecodingConfig, Endpointer
from audioforge.asr.tokenizer import CharTokenizer
from audioforge.errors import (
    AudioForgeError,
    AudioShapeError,
    EmptyAudioError,
    InvalidParameterError,
    NonFiniteAudioError,
    UnsupportedSampleRateError,
)

from .conftest import tiny_model

SYMBOLS = ["<blank>", "<unk>", *"abcdefghijklmnopqrstuvwxyz", "▁", "<sos/eos>"]


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    model = tiny_model(vocab_size=len(SYMBOLS))
    # bias the CTC away from blank so a random model emits tokens
    with torch.no_grad():
        model.ctc.ctc_lo.bias[0] -= 3.0
    cfg = DecodingConfig(chunk_size=4, num_left_chunks=2, beam_size=4, nbest=4, reverse_weight=0.3)
    return Recognizer(model, CharTokenizer(SYMBOLS), config=cfg)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)


def run_stream(rec: Recognizer, audio: np.ndarray, sizes: list[int]):
    session = rec.stream()
    partials = []
    pos = 0
    i = 0
    while pos < audio.shape[0]:
        size = sizes[i % len(sizes)]
        partials += session.accept_waveform(audio[pos : pos + size])
        pos += size
        i += 1
    final = session.finalize()
    return session, partials, final


@pytest.mark.parametrize("sizes", [[16000 * 3], [160], [1, 999, 3333, 5], [6400]])
def test_stream_equals_offline_chunk_by_chunk(recognizer: Recognizer, sizes: list[int]) -> None:
    audio = noise(1.3)
    session, partials, final = run_stream(recognizer, audio, sizes)
    cfg = recognizer.config
    feats = compute_fbank(audio)
    with torch.no_grad():
        ref_out, _ = recognizer.model.encoder.forward_chunk_by_chunk(feats.unsqueeze(0), cfg.chunk_size, 2)
    got = session.backend.encoder_output()
    assert got.shape == ref_out.shape
    torch.testing.assert_close(got, ref_out, rtol=0, atol=1e-4)
    offline = recognizer.transcribe(audio, 16000, simulate_streaming=True)
    assert final.final and final.endpoint_rule == "end" and final.text
    assert final.text == offline.text and final.tokens == offline.tokens
    assert [t for t, _ in final.nbest] == [t for t, _ in offline.nbest]
    assert np.allclose([s for _, s in final.nbest], [s for _, s in offline.nbest], atol=1e-3)
    assert len(partials) == ref_out.shape[1] // cfg.chunk_size
    # partial results are the CTC prefix beam best so far
    logp = recognizer.model.ctc_log_softmax(ref_out)[0]
    n = partials[-1].end / recognizer.frame_s
    best = ctc_prefix_beam_search(logp[: round(n)], cfg.beam_size)[0]
    assert partials[-1].tokens == list(best.tokens)


def test_transcribe_result_fields_and_resampling(recognizer: Recognizer) -> None:
    audio = noise(1.0, 1)
    res = recognizer.transcribe(audio, 16000)
    assert isinstance(res.text, str) and res.final
    assert res.nbest and res.nbest[0][0] == res.text
    assert set(res.timings) == {"audio_s", "compute_s", "rtf"} and res.timings["audio_s"] == pytest.approx(1.0)
    for w in res.words:
        assert 0 <= w.start < w.end <= res.end + 1e-6
    pcm16 = (audio * 20000).astype(np.int16)
    assert isinstance(recognizer.transcribe(pcm16, 16000).text, str)
    res8 = recognizer.transcribe(audio[::2].copy(), 8000)
    assert res8.timings["audio_s"] == pytest.approx(1.0, abs=0.01)
    assert recognizer.transcribe(audio[:500], 16000).text == ""


def test_bad_input_raises_audioforge_errors(recognizer: Recognizer) -> None:
    with pytest.raises(NonFiniteAudioError):
        recognizer.transcribe(np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000)
    with pytest.raises(EmptyAudioError):
        recognizer.transcribe(np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(UnsupportedSampleRateError):
        recognizer.transcribe(noise(0.1), 0)
    with pytest.raises(AudioShapeError):
        recognizer.transcribe(np.zeros((2, 1600), dtype=np.float32), 16000)
    with pytest.raises(UnsupportedSampleRateError):
        recognizer.stream(sr=8000)
    session = recognizer.stream()
    with pytest.raises(NonFiniteAudioError):
        session.accept_waveform(np.array([np.inf], dtype=np.float32))
    with pytest.raises(AudioForgeError):
        session.accept_waveform(b"\x00\x01\x02")
    assert session.accept_waveform(np.zeros(0, dtype=np.float32)) == []
    assert session.accept_waveform(np.zeros(800, dtype=np.int16).tobytes()) == []


def test_endpoint_rules_on_synthetic_posteriors() -> None:
    cfg = DecodingConfig(rule1_silence_s=5.0, rule2_trailing_silence_s=1.0, rule3_max_utterance_s=20.0)
    frame = 0.04
    ep = Endpointer(cfg, frame)
    assert ep.update(np.full(124, 0.95), decoded_something=False) is None  # 4.96 s
    assert ep.update(np.full(1, 0.95), decoded_something=False) == "rule1"
    ep.reset()
    assert ep.update(np.full(24, 0.95), decoded_something=True) is None
    assert ep.update(np.full(1, 0.99), decoded_something=True) == "rule2"
    ep.reset()
    ep.update(np.full(10, 0.95), True)
    assert ep.update(np.array([0.1]), True) is None  # speech resets the trailing silence
    assert ep.update(np.full(24, 0.95), True) is None
    assert ep.update(np.full(1, 0.95), True) == "rule2"
    ep.reset()
    assert ep.update(np.full(499, 0.5), True) is None  # never silent (0.5 < 0.8)
    assert ep.update(np.full(1, 0.5), True) == "rule3"
    with pytest.raises(InvalidParameterError):
        DecodingConfig(blank_threshold=1.5)


def silent_recognizer(**decoding) -> Recognizer:
    model = tiny_model(vocab_size=len(SYMBOLS))
    with torch.no_grad():
        model.ctc.ctc_lo.bias[0] += 100.0  # every frame is blank
    cfg = DecodingConfig(chunk_size=4, beam_size=3, **decoding)
    return Recognizer(model, CharTokenizer(SYMBOLS), config=cfg)


def test_rule1_endpoint_and_continuous_decoding_in_a_session() -> None:
    rec = silent_recognizer(rule1_silence_s=0.5)
    session = rec.stream()
    results = session.accept_waveform(np.zeros(int(16000 * 2.1), dtype=np.float32))
    finals = [r for r in results if r.final]
    assert len(finals) >= 3 and all(r.endpoint_rule == "rule1" for r in finals)
    assert finals[1].start == pytest.approx(finals[0].end, abs=0.2)
    assert len(session.finals) == len(finals)
    session.finalize()
    assert session.finals[-1].endpoint_rule == "end"
    # without continuous decoding the stream ends at the first endpoint
    rec2 = silent_recognizer(rule1_silence_s=0.5, continuous_decoding=False)
    s2 = rec2.stream()
    res = s2.accept_waveform(np.zeros(16000 * 2, dtype=np.float32))
    assert sum(r.final for r in res) == 1 and s2.finished
    with pytest.raises(InvalidParameterError):
        s2.accept_waveform(np.zeros(10, dtype=np.float32))


def test_rule3_max_length() -> None:
    rec = silent_recognizer(blank_threshold=0.999999, rule3_max_utterance_s=0.64)
    with torch.no_grad():
        rec.model.ctc.ctc_lo.bias[0] -= 100.0
    session = rec.stream()
    res = session.accept_waveform(noise(1.5))
    rules = [r.endpoint_rule for r in res if r.final]
    assert rules and set(rules) == {"rule3"}


def test_bundle_roundtrip(recognizer: Recognizer, tmp_path) -> None:
    path = recognizer.to_bundle(metrics={"cer": 1.0}).save(tmp_path / "asr")
    again = Recognizer.from_bundle(path)
    audio = noise(0.8, 3)
    assert again.transcribe(audio, 16000).nbest == recognizer.transcribe(audio, 16000).nbest
    assert again.config == recognizer.config
