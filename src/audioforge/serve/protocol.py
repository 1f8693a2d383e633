"""WeNet's WebSocket recognition protocol: message parsing, validation, the per-connection state machine, replies.

Client messages
---------------
- text ``{"signal": "start", "nbest": N, "continuous_decoding": bool}``; optional ``"hotwords"`` (list of strings)
  and ``"sample_rate"`` (must be 16000 when given); other keys (WeNet clients send e.g. ``"enable_timestamp"``)
  are ignored;
- binary frames: 16 kHz mono int16 little-endian PCM (WeNet's client sends 0.5 s per frame);
- text ``{"signal": "end"}``.

Server messages
---------------
``{"status": "ok", "type": "server_ready"}`` after a start; ``partial_result`` and ``final_result`` whose
``"nbest"`` is a JSON *string* of ``[{"sentence": ...}]`` (the final adds ``"word_pieces": [{"word", "start",
"end"}]`` in milliseconds from the stream's start); ``{"status": "ok", "type": "speech_end"}`` when the recognition
is over (after ``end``, or at the first endpoint without continuous decoding); errors are
``{"status": "failed", "message": ...}``.

States
------
``idle`` --start--> ``started`` --(audio)*--> --end--> ``ended``. The server closes the connection after
``speech_end`` (as WeNet's does).

Error handling (where this server differs from WeNet's)
-------------------------------------------------------
WeNet's server answers every protocol error with a failed message and closes the connection. Here an error that
leaves the stream consistent only drops the offending message and keeps the connection (and an open utterance)
usable: malformed JSON, a text frame that is not an object, a missing or unknown signal, invalid start options,
audio before start, start twice, end before start, an odd-length or oversized frame. WeNet clients stop reading at a
failed message anyway, so they see no difference; other clients may correct themselves and go on. Errors raised with
``closes=True`` end the connection: too long an utterance (what arrived within the limit is finalized first), too
many errors on one connection. See :class:`ProtocolError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from ..errors import AudioForgeError, InvalidParameterError

__all__ = [
    "SAMPLE_RATE",
    "AudioChunk",
    "End",
    "Limits",
    "ProtocolError",
    "ProtocolMachine",
    "Start",
    "State",
    "failed",
    "final_result",
    "nbest_payload",
    "partial_result",
    "server_ready",
    "speech_end",
]

SAMPLE_RATE = 16000
_BYTES_PER_SAMPLE = 2


class ProtocolError(AudioForgeError, ValueError):
    """A client message that breaks the protocol or a limit.

    Parameters
    ----------
    message
        Sent to the client as ``{"status": "failed", "message": message}``.
    closes
        False: the message is dropped and the connection stays usable. True: the server finalizes an open utterance
        (final result, speech end) and closes the connection.
    """

    def __init__(self, message: str, *, closes: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.closes = closes


@dataclass
class Limits:
    """Per-connection and per-request limits of the server.

    Attributes
    ----------
    max_message_bytes
        Largest text or binary WebSocket message accepted (larger ones get a failed message and are dropped; the
        transport itself closes the connection, code 1009, above ``4 * max_message_bytes``).
    max_utterance_s
        Most seconds of audio one connection may send; past it the audio received is finalized and the connection
        closed.
    idle_timeout_s
        Seconds without a client message before the server gives up on a connection (an open utterance is
        finalized first).
    max_nbest
        Larger ``nbest`` requests are capped to this.
    max_connections
        Concurrent WebSocket connections; more are refused with a failed message (close code 1013).
    max_errors
        Recoverable protocol errors tolerated per connection before it is closed (code 1008).
    max_upload_bytes
        Largest ``POST /transcribe`` body.
    shutdown_grace_s
        On shutdown, seconds open utterances may go on (clients may still send audio and ``end``) before the server
        finalizes them itself.
    """

    max_message_bytes: int = 256 * 1024
    max_utterance_s: float = 600.0
    idle_timeout_s: float = 30.0
    max_nbest: int = 10
    max_connections: int = 64
    max_errors: int = 32
    max_upload_bytes: int = 64 * 1024 * 1024
    shutdown_grace_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_nbest", "max_connections", "max_errors", "max_upload_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("max_utterance_s", "idle_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InvalidParameterError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        grace = self.shutdown_grace_s
        if not (isinstance(grace, (int, float)) and math.isfinite(grace) and grace >= 0):
            raise InvalidParameterError(f"shutdown_grace_s must be a finite number of seconds >= 0, got {grace!r}")

    @property
    def max_utterance_samples(self) -> int:
        """``max_utterance_s`` in 16 kHz samples."""
        return int(self.max_utterance_s * SAMPLE_RATE)


class State(str, Enum):
    """Where a connection is in the protocol."""

    IDLE = "idle"
    STARTED = "started"
    ENDED = "ended"


@dataclass(frozen=True)
class Start:
    """A valid start signal."""

    nbest: int = 1
    continuous_decoding: bool = False
    hotwords: tuple[str, ...] | None = None
    ignored: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class AudioChunk:
    """A valid binary frame: int16 samples."""

    pcm: np.ndarray


@dataclass(frozen=True)
class End:
    """The end signal."""


_KNOWN_START_KEYS = {"signal", "nbest", "continuous_decoding", "hotwords", "sample_rate"}


class ProtocolMachine:
    """The state machine of one connection: validates each client message against the state and the limits.

    :meth:`on_text` and :meth:`on_binary` return the event (:class:`Start`, :class:`End`, :class:`AudioChunk`) and
    advance the state, or raise :class:`ProtocolError` leaving the state unchanged.

    Parameters
    ----------
    limits
        The server's limits.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.state = State.IDLE
        self.samples = 0
        self.options: Start | None = None

    @property
    def audio_s(self) -> float:
        """Seconds of audio accepted so far."""
        return self.samples / SAMPLE_RATE

    def on_text(self, text: str) -> Start | End:
        """Validate a text frame; a start moves ``idle -> started``, an end ``started -> ended``."""
        size = len(text.encode("utf-8", errors="surrogatepass"))
        if size > self.limits.max_message_bytes:
            raise ProtocolError(f"text message of {size} bytes exceeds the limit of {self.limits.max_message_bytes}")
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ProtocolError(f"malformed JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ProtocolError(f"a text message must be a JSON object with a 'signal', got {type(obj).__name__}")
        if "signal" not in obj:
            raise ProtocolError("the message has no 'signal' (expected 'start' or 'end')")
        signal = obj["signal"]
        if signal == "start":
            return self._start(obj)
        if signal == "end":
            if self.state is not State.STARTED:
                raise ProtocolError(f"'end' received while {self.state.value}; send 'start' first")
            self.state = State.ENDED
            return End()
        raise ProtocolError(f"unknown signal {signal!r}; expected 'start' or 'end'")

    def _start(self, obj: dict[str, Any]) -> Start:
        if self.state is State.STARTED:
            raise ProtocolError("'start' received while an utterance is open; send 'end' first")
        if self.state is State.ENDED:
            raise ProtocolError("the recognition is over; open a new connection")
        nbest = obj.get("nbest", 1)
        if isinstance(nbest, bool) or not isinstance(nbest, int) or nbest < 1:
            raise ProtocolError(f"'nbest' must be an integer >= 1, got {nbest!r}")
        continuous = obj.get("continuous_decoding", False)
        if not isinstance(continuous, bool):
            raise ProtocolError(f"'continuous_decoding' must be a boolean, got {continuous!r}")
        rate = obj.get("sample_rate", SAMPLE_RATE)
        if isinstance(rate, bool) or rate != SAMPLE_RATE:
            raise ProtocolError(f"only {SAMPLE_RATE} Hz PCM is accepted, got sample_rate={rate!r}")
        hotwords = obj.get("hotwords")
        if hotwords is not None:
            if not isinstance(hotwords, list) or not all(isinstance(w, str) and w.strip() for w in hotwords):
                raise ProtocolError("'hotwords' must be a list of non-empty strings")
            hotwords = tuple(hotwords)
        ignored = tuple(sorted(k for k in obj if k not in _KNOWN_START_KEYS))
        start = Start(min(nbest, self.limits.max_nbest), continuous, hotwords, ignored)
        self.state = State.STARTED
        self.options = start
        return start

    def on_binary(self, data: bytes) -> AudioChunk:
        """Validate a binary frame of int16 PCM (only while ``started``)."""
        size = len(data)
        if self.state is not State.STARTED:
            raise ProtocolError(f"audio received while {self.state.value}; send 'start' first")
        if size > self.limits.max_message_bytes:
            raise ProtocolError(
                f"binary message of {size} bytes exceeds the limit of {self.limits.max_message_bytes}; "
                "send smaller chunks (0.5 s = 16000 bytes)"
            )
        if size % _BYTES_PER_SAMPLE:
            raise ProtocolError(f"binary message of {size} bytes: 16-bit PCM needs an even number of bytes")
        n = size // _BYTES_PER_SAMPLE
        if self.samples + n > self.limits.max_utterance_samples:
            raise ProtocolError(
                f"the utterance exceeds the limit of {self.limits.max_utterance_s:g} s; "
                f"the first {self.audio_s:g} s are finalized",
                closes=True,
            )
        self.samples += n
        return AudioChunk(np.frombuffer(data, dtype="<i2"))

    def finish(self) -> None:
        """Mark the recognition over (after ``speech_end``)."""
        self.state = State.ENDED


# ---------------------------------------------------------------------------------------------------- replies


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False)


def server_ready() -> str:
    """``{"status": "ok", "type": "server_ready"}``."""
    return _dumps({"status": "ok", "type": "server_ready"})


def speech_end() -> str:
    """``{"status": "ok", "type": "speech_end"}``."""
    return _dumps({"status": "ok", "type": "speech_end"})


def failed(message: str) -> str:
    """``{"status": "failed", "message": message}``."""
    return _dumps({"status": "failed", "message": message})


def _ms(seconds: float) -> int:
    return round(seconds * 1000.0)


def nbest_payload(result: Any, nbest: int, *, final: bool) -> list[dict[str, Any]]:
    """The n-best list of a :class:`~audioforge.asr.streaming.RecognitionResult` in WeNet's layout.

    Each entry has ``"sentence"``; final results add ``"word_pieces"`` (word, start and end in ms from the stream's
    start) for the best entry (the recogniser keeps word times of the best hypothesis only; the others get ``[]``).
    """
    sentences: Sequence[str] = [text for text, _ in result.nbest] or [result.text]
    entries: list[dict[str, Any]] = []
    for i, sentence in enumerate(sentences[: max(1, nbest)]):
        entry: dict[str, Any] = {"sentence": sentence}
        if final:
            words = result.words if i == 0 else []
            entry["word_pieces"] = [{"word": w.word, "start": _ms(w.start), "end": _ms(w.end)} for w in words]
        entries.append(entry)
    return entries


def partial_result(result: Any, nbest: int = 1) -> str:
    """A ``partial_result`` message (``"nbest"`` is a JSON string)."""
    payload = _dumps_list(nbest_payload(result, nbest, final=False))
    return _dumps({"status": "ok", "type": "partial_result", "nbest": payload})


def final_result(result: Any, nbest: int = 1) -> str:
    """A ``final_result`` message (``"nbest"`` is a JSON string with ``word_pieces``)."""
    payload = _dumps_list(nbest_payload(result, nbest, final=True))
    return _dumps({"status": "ok", "type": "final_result", "nbest": payload})


def _dumps_list(items: list[dict[str, Any]]) -> str:
    return json.dumps(items, ensure_ascii=False)
