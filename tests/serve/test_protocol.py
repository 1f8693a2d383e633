from __future__ import annotations

import json

import numpy as np
import pytest

from audioforge.asr.streaming import RecognitionResult, WordPiece
from audioforge.errors import AudioForgeError, InvalidParameterError
from audioforge.serve.protocol import (
    AudioChunk,
    End,
    Limits,
    ProtocolError,
    ProtocolMachine,
    Start,
    State,
    failed,
    final_result,
    partial_result,
    server_ready,
    speech_end,
)


def started(**limits: object) -> ProtocolMachine:
    machine = ProtocolMachine(Limits(**limits))  # type: ignore[arg-type]
    machine.on_text('{"signal": "start"}')
    return machine


def test_happy_sequence() -> None:
    machine = ProtocolMachine()
    assert machine.state is State.IDLE
    start = machine.on_text(json.dumps({"signal": "start", "nbest": 3, "continuous_decoding": True}))
    assert start == Start(nbest=3, continuous_decoding=True)
    assert machine.state is State.STARTED
    chunk = machine.on_binary(np.arange(8000, dtype="<i2").tobytes())
    assert isinstance(chunk, AudioChunk) and chunk.pcm.dtype == np.dtype("<i2") and chunk.pcm[5] == 5
    assert machine.samples == 8000 and machine.audio_s == 0.5
    assert isinstance(machine.on_text('{"signal": "end"}'), End)
    assert machine.state is State.ENDED


def test_start_defaults_optional_and_unknown_fields() -> None:
    start = ProtocolMachine().on_text(
        json.dumps({"signal": "start", "enable_timestamp": True, "sample_rate": 16000, "hotwords": ["ab"], "x": 1})
    )
    assert isinstance(start, Start)
    assert start.nbest == 1 and start.continuous_decoding is False
    assert start.hotwords == ("ab",) and start.ignored == ("enable_timestamp", "x")


def test_nbest_is_capped() -> None:
    start = ProtocolMachine(Limits(max_nbest=5)).on_text('{"signal": "start", "nbest": 50}')
    assert isinstance(start, Start) and start.nbest == 5


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "malformed JSON"),
        ("", "malformed JSON"),
        ("[1, 2]", "JSON object"),
        ('"start"', "JSON object"),
        ("42", "JSON object"),
        ('{"nbest": 1}', "no 'signal'"),
        ('{"signal": "stop"}', "unknown signal"),
        ('{"signal": null}', "unknown signal"),
        ('{"signal": "end"}', "send 'start' first"),
        ('{"signal": "start", "nbest": "2"}', "'nbest'"),
        ('{"signal": "start", "nbest": 0}', "'nbest'"),
        ('{"signal": "start", "nbest": true}', "'nbest'"),
        ('{"signal": "start", "continuous_decoding": "yes"}', "continuous_decoding"),
        ('{"signal": "start", "sample_rate": 8000}', "16000 Hz"),
        ('{"signal": "start", "hotwords": "abc"}', "hotwords"),
        ('{"signal": "start", "hotwords": [""]}', "hotwords"),
    ],
)
def test_bad_text_in_idle_keeps_state(text: str, needle: str) -> None:
    machine = ProtocolMachine()
    with pytest.raises(ProtocolError, match=needle) as info:
        machine.on_text(text)
    assert not info.value.closes
    assert isinstance(info.value, AudioForgeError)
    assert machine.state is State.IDLE


def test_deeply_nested_json_is_an_error() -> None:
    machine = ProtocolMachine()
    with pytest.raises(ProtocolError):
        machine.on_text("[" * 100000)
    assert machine.state is State.IDLE


def test_start_twice() -> None:
    machine = started()
    with pytest.raises(ProtocolError, match="utterance is open") as info:
        machine.on_text('{"signal": "start"}')
    assert not info.value.closes and machine.state is State.STARTED


def test_binary_before_start_and_after_end() -> None:
    machine = ProtocolMachine()
    with pytest.raises(ProtocolError, match="send 'start' first"):
        machine.on_binary(b"\0\0")
    machine.on_text('{"signal": "start"}')
    machine.on_text('{"signal": "end"}')
    with pytest.raises(ProtocolError, match="while ended"):
        machine.on_binary(b"\0\0")
    with pytest.raises(ProtocolError, match="new connection"):
        machine.on_text('{"signal": "start"}')


def test_odd_length_frame_is_dropped() -> None:
    machine = started()
    with pytest.raises(ProtocolError, match="even number") as info:
        machine.on_binary(b"\0\0\0")
    assert not info.value.closes and machine.samples == 0 and machine.state is State.STARTED
    machine.on_binary(b"\0\0")
    assert machine.samples == 1


def test_oversized_frames() -> None:
    machine = started(max_message_bytes=1000)
    with pytest.raises(ProtocolError, match="exceeds the limit of 1000") as info:
        machine.on_binary(bytes(1002))
    assert not info.value.closes and machine.samples == 0
    machine.on_binary(bytes(1000))
    with pytest.raises(ProtocolError, match="text message"):
        machine.on_text(json.dumps({"signal": "end", "pad": "x" * 1000}))
    assert machine.state is State.STARTED


def test_utterance_limit_closes() -> None:
    machine = started(max_utterance_s=1.0)
    machine.on_binary(bytes(16000))
    machine.on_binary(bytes(16000))  # exactly 1 s
    with pytest.raises(ProtocolError, match="exceeds the limit of 1 s") as info:
        machine.on_binary(bytes(2))
    assert info.value.closes and machine.samples == 16000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_message_bytes": 0},
        {"max_nbest": 1.5},
        {"max_connections": True},
        {"max_utterance_s": 0},
        {"idle_timeout_s": float("inf")},
        {"shutdown_grace_s": -1},
    ],
)
def test_limits_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_reply_layout() -> None:
    assert json.loads(server_ready()) == {"status": "ok", "type": "server_ready"}
    assert json.loads(speech_end()) == {"status": "ok", "type": "speech_end"}
    assert json.loads(failed("bad")) == {"status": "failed", "message": "bad"}
    res = RecognitionResult(
        "ab c",
        nbest=[("ab c", -1.0), ("ab", -2.0), ("a", -3.0)],
        words=[WordPiece("ab", 0.04, 0.2), WordPiece("c", 0.32, 0.4444)],
        final=True,
    )
    partial = json.loads(partial_result(res, 2))
    assert partial["status"] == "ok" and partial["type"] == "partial_result"
    assert isinstance(partial["nbest"], str)
    assert json.loads(partial["nbest"]) == [{"sentence": "ab c"}, {"sentence": "ab"}]
    final = json.loads(final_result(res, 5))
    assert final["type"] == "final_result"
    entries = json.loads(final["nbest"])
    assert [e["sentence"] for e in entries] == ["ab c", "ab", "a"]
    assert entries[0]["word_pieces"] == [
        {"word": "ab", "start": 40, "end": 200},
        {"word": "c", "start": 320, "end": 444},
    ]
    assert entries[1]["word_pieces"] == [] and entries[2]["word_pieces"] == []
    empty = json.loads(json.loads(final_result(RecognitionResult("", final=True)))["nbest"])
    assert empty == [{"sentence": "", "word_pieces": []}]
    unicode = json.loads(partial_result(RecognitionResult("你好", nbest=[("你好", 0.0)])))
    assert json.loads(unicode["nbest"])[0]["sentence"] == "你好"
