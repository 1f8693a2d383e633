"""A small asyncio client of WeNet's WebSocket protocol (for the tests, the load benchmark, ``audioforge client``).

>>> result = asyncio.run(stream_pcm("ws://127.0.0.1:10086/", pcm16))  # doctest: +SKIP
>>> result.final_text  # doctest: +SKIP

It sends ``{"signal": "start", ...}``, waits for ``server_ready``, sends the PCM in chunks (0.5 s by default, as
WeNet's client) optionally paced in real time, sends ``{"signal": "end"}`` and collects every server message with its
arrival time until the server closes the connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidParameterError

__all__ = ["Reply", "StreamResult", "load_pcm16", "stream_pcm"]

SAMPLE_RATE = 16000


@dataclass
class Reply:
    """A server message and when it arrived (``time.perf_counter()``)."""

    time: float
    data: dict[str, Any]

    @property
    def type(self) -> str:
        """``server_ready``, ``partial_result``, ``final_result``, ``speech_end``, or ``failed``."""
        if self.data.get("status") != "ok":
            return "failed"
        return str(self.data.get("type"))

    @property
    def nbest(self) -> list[dict[str, Any]]:
        """The decoded n-best list of a partial or final result (``[]`` for other messages)."""
        raw = self.data.get("nbest")
        return json.loads(raw) if isinstance(raw, str) else []

    @property
    def text(self) -> str:
        """Best sentence of a result."""
        best = self.nbest
        return str(best[0]["sentence"]) if best else ""


@dataclass
class StreamResult:
    """Everything one stream exchanged.

    Attributes
    ----------
    replies
        Server messages in arrival order.
    send_times
        ``time.perf_counter()`` when each audio chunk was sent.
    chunk_samples
        Samples per chunk sent.
    close_code
        The WebSocket close code (None when the connection did not close cleanly).
    """

    replies: list[Reply] = field(default_factory=list)
    send_times: list[float] = field(default_factory=list)
    chunk_samples: int = 0
    close_code: int | None = None

    def of_type(self, kind: str) -> list[Reply]:
        """Replies of one type."""
        return [r for r in self.replies if r.type == kind]

    @property
    def partials(self) -> list[Reply]:
        """Partial results."""
        return self.of_type("partial_result")

    @property
    def finals(self) -> list[Reply]:
        """Final results."""
        return self.of_type("final_result")

    @property
    def errors(self) -> list[str]:
        """Messages of failed replies."""
        return [str(r.data.get("message")) for r in self.of_type("failed")]

    @property
    def speech_end(self) -> bool:
        """Whether the server reported the end of the recognition."""
        return bool(self.of_type("speech_end"))

    @property
    def final_text(self) -> str:
        """The final sentences joined by spaces."""
        return " ".join(t for t in (r.text for r in self.finals) if t)


def load_pcm16(path: str | os.PathLike[str]) -> np.ndarray:
    """An audio file as 16 kHz mono int16 samples (resampled when needed)."""
    from ..audio import float_to_pcm16, load

    y, _ = load(path, sr=SAMPLE_RATE, mono=True)
    return np.asarray(float_to_pcm16(y), dtype=np.int16)


def _as_pcm_bytes(pcm: Any) -> bytes:
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        return bytes(pcm)
    arr = np.asarray(pcm)
    if arr.dtype.kind == "f":
        arr = np.clip(np.round(arr * 32768.0), -32768, 32767)
    if arr.ndim != 1:
        raise InvalidParameterError(f"expected mono PCM (n,), got shape {arr.shape}")
    return arr.astype("<i2").tobytes()


async def stream_pcm(
    url: str,
    pcm: Any,
    *,
    chunk_s: float = 0.5,
    realtime: bool = True,
    nbest: int = 1,
    continuous_decoding: bool = False,
    start_options: dict[str, Any] | None = None,
    on_reply: Callable[[Reply], None] | None = None,
    timeout_s: float = 120.0,
) -> StreamResult:
    """Recognise ``pcm`` (16 kHz int16 samples, float samples in [-1, 1], or int16 bytes) over WeNet's protocol.

    Parameters
    ----------
    url
        The server, e.g. ``ws://127.0.0.1:10086/``.
    chunk_s
        Seconds of audio per binary message.
    realtime
        Pace the chunks in real time (chunk ``i`` sent ``i * chunk_s`` after the first); otherwise send at once.
    nbest, continuous_decoding, start_options
        The start message (``start_options`` adds or overrides fields).
    on_reply
        Called with each server message as it arrives.
    timeout_s
        Give up (and close) after this many seconds.

    Returns
    -------
    StreamResult
        The server's messages with arrival times and the chunks' send times.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    data = _as_pcm_bytes(pcm)
    step = max(2, round(chunk_s * SAMPLE_RATE) * 2)
    result = StreamResult(chunk_samples=step // 2)
    ready = asyncio.Event()

    async def reader(ws: Any) -> None:
        try:
            async for raw in ws:
                reply = Reply(time.perf_counter(), json.loads(raw) if isinstance(raw, str) else {"binary": len(raw)})
                result.replies.append(reply)
                if on_reply is not None:
                    on_reply(reply)
                ready.set()
        except ConnectionClosed:
            pass
        finally:
            ready.set()

    async def session() -> None:
        async with connect(url, proxy=None, max_size=None, open_timeout=min(10.0, timeout_s)) as ws:
            task = asyncio.create_task(reader(ws))
            start = {"signal": "start", "nbest": nbest, "continuous_decoding": continuous_decoding}
            start.update(start_options or {})
            try:
                await ws.send(json.dumps(start))
                await ready.wait()
                if result.replies and result.replies[0].type == "server_ready":
                    t0 = time.perf_counter()
                    for i, pos in enumerate(range(0, len(data), step)):
                        if realtime:
                            delay = t0 + i * chunk_s - time.perf_counter()
                            if delay > 0:
                                await asyncio.sleep(delay)
                        if task.done():
                            break
                        result.send_times.append(time.perf_counter())
                        await ws.send(data[pos : pos + step])
                    if not task.done():
                        await ws.send(json.dumps({"signal": "end"}))
                else:
                    await ws.close()  # the start was refused
            except ConnectionClosed:
                pass
            await task
            result.close_code = ws.close_code

    try:
        await asyncio.wait_for(session(), timeout_s)
    except asyncio.TimeoutError:
        result.close_code = None
    return result
