"""The recognition server: a FastAPI app speaking WeNet's WebSocket protocol at ``/``, plus HTTP endpoints.

- ``ws://HOST:PORT/``: WeNet's streaming protocol (:mod:`audioforge.serve.protocol`), one recogniser session per
  connection; decoding runs in a bounded thread pool (one torch thread per worker) so the event loop stays free and
  many streams progress together;
- ``GET /health``: ``{"status": "ok", ...}`` with the open streams and whether the server is draining;
- ``POST /transcribe``: one-shot recognition of a wav/flac/ogg body, or of raw int16 PCM with ``?sample_rate=R``;
- ``/web``: a static folder (``--static DIR``, else the repository's ``web/`` when it exists); ``GET /`` redirects
  there when it is mounted;
- graceful shutdown: :class:`Server` (a ``uvicorn.Server``) first stops listening, lets open utterances go on for
  :attr:`Limits.shutdown_grace_s`, then finalizes the rest (final result, speech end) before uvicorn closes the
  connections. The lifespan shutdown drains too, for other ASGI servers.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import io
import logging
import mimetypes
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Request, WebSocket

from ..errors import AudioForgeError, InvalidParameterError
from .protocol import (
    SAMPLE_RATE,
    AudioChunk,
    End,
    Limits,
    ProtocolError,
    ProtocolMachine,
    Start,
    State,
    failed,
    final_result,
    nbest_payload,
    partial_result,
    server_ready,
    speech_end,
)

# The browser page loads ES modules and onnxruntime-web's WebAssembly; browsers refuse them under the generic
# types some systems' mime tables give these extensions.
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/wasm", ".wasm")

__all__ = [
    "RecognizerService",
    "Server",
    "create_app",
    "default_static_dir",
    "load_recognizer",
    "open_session",
    "run_server",
    "session_config",
]

log = logging.getLogger("audioforge.serve")

# WebSocket close codes (RFC 6455)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013


def default_static_dir() -> Path | None:
    """The repository's ``web/`` folder when audioforge runs from a checkout that has one, else None."""
    candidate = Path(__file__).resolve().parents[3] / "web"
    return candidate if candidate.is_dir() else None


def load_recognizer(source: Any) -> Any:
    """A recogniser from an object with ``stream()``, a zero-argument factory, a Bundle, or a bundle name/path."""
    if hasattr(source, "stream") and hasattr(source, "transcribe"):
        return source
    from ..bundle import Bundle

    if isinstance(source, (Bundle, str, os.PathLike)):
        from ..asr.infer import Recognizer

        return Recognizer.from_bundle(source)
    if callable(source):
        rec = source()
        if not (hasattr(rec, "stream") and hasattr(rec, "transcribe")):
            raise InvalidParameterError(f"the recognizer factory returned {type(rec).__name__}, not a recogniser")
        return rec
    raise InvalidParameterError(
        f"expected a Recognizer/OnnxRecognizer, a factory, a Bundle or a bundle path, got {type(source).__name__}"
    )


def session_config(config: Any, start: Start) -> Any:
    """The decoding settings of a connection: the server's, with the client's ``continuous_decoding``.

    The n-best list rescored is the server's ``nbest`` or the client's, whichever is larger.
    """
    return dataclasses.replace(
        config, continuous_decoding=start.continuous_decoding, nbest=max(config.nbest, start.nbest)
    )


def open_session(recognizer: Any, start: Start) -> Any:
    """A streaming session of ``recognizer`` with the connection's settings (the model is shared, not copied)."""
    view = copy.copy(recognizer)
    view.config = session_config(recognizer.config, start)
    hotwords = list(start.hotwords) if start.hotwords is not None else None
    return view.stream(SAMPLE_RATE, hotwords=hotwords)


def _worker_init() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # the onnxruntime backend runs without torch
        pass


class RecognizerService:
    """What the app shares between connections: the recogniser, the limits, the worker pool, the open streams.

    Parameters
    ----------
    recognizer
        A :class:`~audioforge.asr.infer.Recognizer` or :class:`~audioforge.asr.onnx_infer.OnnxRecognizer` (used from
        several threads at once; each connection has its own session and caches).
    limits
        Server limits.
    workers
        Decoding threads (default: the number of CPU cores, at most 8).
    """

    def __init__(self, recognizer: Any, limits: Limits | None = None, workers: int | None = None) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise InvalidParameterError(f"workers must be an integer >= 1, got {workers!r}")
        self.recognizer = recognizer
        self.limits = limits or Limits()
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="asr-decode", initializer=_worker_init)
        self.connections: set[_Connection] = set()
        self.draining = False
        self._drain_event: asyncio.Event | None = None
        self._force_event: asyncio.Event | None = None
        self.started = time.time()
        self.served = 0

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._drain_event is None or self._force_event is None:
            self._drain_event, self._force_event = asyncio.Event(), asyncio.Event()
            if self.draining:
                self._drain_event.set()
        return self._drain_event, self._force_event

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the decoding pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def warm_up(self) -> None:
        """Decode a second of silence once per worker, so the first clients do not pay for lazy initialisation."""

        def work() -> None:
            session = open_session(self.recognizer, Start())
            session.accept_waveform(np.zeros(SAMPLE_RATE, dtype=np.int16))
            session.finalize()

        try:
            await asyncio.gather(*(self.run(work) for _ in range(self.workers)))
        except Exception:
            log.exception("warm-up decoding failed")

    async def drain(self, grace_s: float | None = None, timeout_s: float = 60.0) -> None:
        """Refuse new utterances, let open ones go on for ``grace_s``, then finalize them; wait until all closed."""
        drain, force = self._events()
        self.draining = True
        drain.set()
        grace = self.limits.shutdown_grace_s if grace_s is None else grace_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        force.set()
        deadline = loop.time() + timeout_s
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)

    def close(self) -> None:
        """Stop the worker pool (after :meth:`drain`)."""
        self.executor.shutdown(wait=False, cancel_futures=True)


class _ClientGoneError(Exception):
    """The client went away."""


class _Connection:
    """One WebSocket connection running the protocol."""

    def __init__(self, service: RecognizerService, websocket: Any) -> None:
        self.service = service
        self.ws = websocket
        self.machine = ProtocolMachine(service.limits)
        self.session: Any = None
        self.nbest = 1
        self.errors = 0

    async def send(self, text: str) -> None:
        try:
            await self.ws.send_text(text)
        except Exception as exc:  # the client disconnected; starlette/uvicorn raise several types
            raise _ClientGoneError from exc

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        try:
            await self.ws.close(code, reason)
        except Exception:  # already closed by the client
            pass

    async def _next(self, drain: asyncio.Event, force: asyncio.Event) -> dict[str, Any] | str:
        """The next ASGI message, or ``"idle"`` / ``"drain"`` when the connection should stop waiting."""
        stop = force if self.machine.state is State.STARTED else drain
        if stop.is_set():
            return "drain"
        receive = asyncio.ensure_future(self.ws.receive())
        waiter = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait(
                {receive, waiter}, timeout=self.service.limits.idle_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if receive in done:
            return receive.result()
        receive.cancel()
        return "drain" if stop.is_set() else "idle"

    async def run(self) -> None:
        drain, force = self.service._events()
        try:
            while True:
                msg = await self._next(drain, force)
                if msg == "drain":
                    await self._stop("the server is shutting down", CLOSE_GOING_AWAY, report=False)
                    return
                if msg == "idle":
                    limit = self.service.limits.idle_timeout_s
                    await self._stop(f"no message for {limit:g} s; closing the connection", CLOSE_NORMAL)
                    return
                assert isinstance(msg, dict)
                if msg["type"] == "websocket.disconnect":
                    return
                if await self._handle(msg):
                    return
        except _ClientGoneError:
            return

    async def _stop(self, message: str, code: int, *, report: bool = True) -> None:
        """Send a failed message (when ``report``), finalize an open utterance, close."""
        if report or self.machine.state is not State.STARTED:
            await self.send(failed(message))
        if self.machine.state is State.STARTED:
            await self._finish()
        await self.close(code)

    async def _finish(self) -> None:
        final = await self.service.run(self.session.finalize)
        await self.send(final_result(final, self.nbest))
        await self._speech_end()

    async def _speech_end(self) -> None:
        self.machine.finish()
        await self.send(speech_end())
        self.service.served += 1

    async def _handle(self, msg: dict[str, Any]) -> bool:
        """Handle one client message; True when the connection is over."""
        text, data = msg.get("text"), msg.get("bytes")
        try:
            if text is not None:
                event: Start | End | AudioChunk = self.machine.on_text(text)
            elif data is not None:
                event = self.machine.on_binary(data)
            else:
                raise ProtocolError("empty WebSocket message")
            if isinstance(event, Start) and self.service.draining:
                self.machine.state = State.IDLE
                raise ProtocolError("the server is shutting down; no new utterances", closes=True)
        except ProtocolError as exc:
            if exc.closes:
                code = CLOSE_GOING_AWAY if self.service.draining else CLOSE_POLICY
                await self._stop(exc.message, code)
                return True
            await self.send(failed(exc.message))
            self.errors += 1
            if self.errors >= self.service.limits.max_errors:
                await self._stop(f"{self.errors} protocol errors on this connection; closing it", CLOSE_POLICY)
                return True
            return False
        try:
            if isinstance(event, Start):
                self.nbest = event.nbest
                self.session = await self.service.run(open_session, self.service.recognizer, event)
                await self.send(server_ready())
                return False
            if isinstance(event, AudioChunk):
                results = await self.service.run(self.session.accept_waveform, event.pcm)
                for res in results:
                    if res.final:
                        await self.send(final_result(res, self.nbest))
                    elif res.text:  # as WeNet: partial results once something was decoded
                        await self.send(partial_result(res, self.nbest))
                if self.session.finished:  # an endpoint without continuous decoding ends the recognition
                    await self._speech_end()
                    await self.close(CLOSE_NORMAL)
                    return True
                return False
            await self._finish()
            await self.close(CLOSE_NORMAL)
            return True
        except _ClientGoneError:
            raise
        except Exception as exc:
            log.exception("decoding failed")
            kind = "" if isinstance(exc, AudioForgeError) else f"{type(exc).__name__}: "
            await self.send(failed(f"internal error: {kind}{exc}"))
            await self.close(CLOSE_INTERNAL)
            return True


def _result_json(result: Any, nbest: int) -> dict[str, Any]:
    entries = nbest_payload(result, nbest, final=True)
    return {
        "status": "ok",
        "text": result.text,
        "nbest": [
            {"sentence": entry["sentence"], "score": float(result.nbest[i][1]) if i < len(result.nbest) else None}
            for i, entry in enumerate(entries)
        ],
        "words": entries[0]["word_pieces"] if entries else [],
        "timings": {k: float(v) for k, v in result.timings.items()},
    }


def _decode_body(body: bytes, sample_rate: int | None) -> tuple[np.ndarray, int]:
    """Samples and rate of a one-shot request body (an audio file, or raw int16 PCM when ``sample_rate``)."""
    from ..errors import EmptyAudioError, InvalidAudioError

    if not body:
        raise EmptyAudioError("the request body is empty; POST a wav/flac file or raw PCM with ?sample_rate=")
    if sample_rate is None:
        import soundfile as sf

        try:
            data, rate = sf.read(io.BytesIO(body), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
            raise InvalidAudioError(
                f"cannot read the body as an audio file ({exc}); for raw 16-bit PCM add ?sample_rate=RATE"
            ) from None
        return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32), int(rate)
    if len(body) % 2:
        raise InvalidAudioError(f"raw PCM body of {len(body)} bytes: 16-bit PCM needs an even number of bytes")
    return np.frombuffer(body, dtype="<i2").astype(np.float32) / 32768.0, sample_rate


def create_app(
    recognizer: Any,
    *,
    limits: Limits | None = None,
    workers: int | None = None,
    static_dir: str | os.PathLike[str] | bool | None = True,
) -> Any:
    """The FastAPI application.

    Parameters
    ----------
    recognizer
        A recogniser (``Recognizer`` / ``OnnxRecognizer``), a zero-argument factory returning one, a
        :class:`~audioforge.bundle.Bundle`, or a bundle name or folder.
    limits
        Message, utterance, idle, connection and upload limits (:class:`~audioforge.serve.protocol.Limits`).
    workers
        Decoding threads.
    static_dir
        Folder served at ``/web``; True: :func:`default_static_dir` if it exists; None or False: none.

    Returns
    -------
    fastapi.FastAPI
        With ``app.state.service`` (:class:`RecognizerService`).
    """
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, RedirectResponse

    service = RecognizerService(load_recognizer(recognizer), limits, workers)
    if static_dir is True:
        static: Path | None = default_static_dir()
    elif static_dir is None or static_dir is False:
        static = None
    else:
        static = Path(static_dir)
        if not static.is_dir():
            raise InvalidParameterError(f"static folder {static} does not exist or is not a folder")

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await service.warm_up()
        try:
            yield
        finally:
            await service.drain()
            service.close()

    app = FastAPI(title="audioforge speech recognition", lifespan=lifespan)
    app.state.service = service
    app.state.static_dir = static

    @app.websocket("/")
    async def recognize(websocket: WebSocket) -> None:
        await websocket.accept()
        conn = _Connection(service, websocket)
        if service.draining:
            await conn.send(failed("the server is shutting down"))
            await conn.close(CLOSE_GOING_AWAY)
            return
        if len(service.connections) >= service.limits.max_connections:
            await conn.send(failed(f"the server is busy ({service.limits.max_connections} streams); try later"))
            await conn.close(CLOSE_TRY_LATER)
            return
        service.connections.add(conn)
        try:
            await conn.run()
        finally:
            service.connections.discard(conn)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "draining" if service.draining else "ok",
            "streams": len(service.connections),
            "utterances_served": service.served,
            "workers": service.workers,
            "recognizer": type(service.recognizer).__name__,
            "uptime_s": round(time.time() - service.started, 3),
        }

    @app.get("/", include_in_schema=False)
    async def index() -> Any:
        if static is not None:
            return RedirectResponse("/web/")
        return {"status": "ok", "websocket": "/", "endpoints": ["/health", "/transcribe"]}

    @app.post("/transcribe")
    async def transcribe(request: Request, sample_rate: int | None = None, nbest: int = 1) -> Any:
        lim = service.limits
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > lim.max_upload_bytes:
                return JSONResponse(
                    {"status": "failed", "message": f"the body exceeds {lim.max_upload_bytes} bytes"}, status_code=413
                )
            chunks.append(chunk)
        if nbest < 1:
            return JSONResponse({"status": "failed", "message": "nbest must be >= 1"}, status_code=400)
        if sample_rate is not None and not 1000 <= sample_rate <= 384000:
            msg = f"sample_rate must be in [1000, 384000], got {sample_rate}"
            return JSONResponse({"status": "failed", "message": msg}, status_code=400)
        try:
            samples, rate = _decode_body(b"".join(chunks), sample_rate)
            if samples.shape[0] / rate > lim.max_utterance_s:
                msg = f"the audio lasts {samples.shape[0] / rate:.1f} s; the limit is {lim.max_utterance_s:g} s"
                return JSONResponse({"status": "failed", "message": msg}, status_code=413)
            result = await service.run(service.recognizer.transcribe, samples, rate)
        except AudioForgeError as exc:
            return JSONResponse({"status": "failed", "message": str(exc)}, status_code=400)
        return _result_json(result, min(nbest, lim.max_nbest))

    if static is not None:
        from fastapi.staticfiles import StaticFiles

        app.mount("/web", StaticFiles(directory=str(static), html=True), name="web")
        # the page's instrument models: the shipped DDSP bundles' browser forms (web/models/manifest.json)
        bundles = Path(__file__).resolve().parent.parent / "assets" / "bundles"
        if bundles.is_dir():
            app.mount("/bundles", StaticFiles(directory=str(bundles)), name="bundles")
    return app


class Server:
    """Run an app made by :func:`create_app` with uvicorn, draining open utterances on shutdown (SIGTERM, Ctrl+C).

    Parameters
    ----------
    app
        The application.
    host, port
        Where to listen (port 0: any free port, see :attr:`port` once started).
    log_level
        uvicorn's log level.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 10086, *, log_level: str = "info") -> None:
        import uvicorn

        service: RecognizerService = app.state.service

        class _Uvicorn(uvicorn.Server):
            async def shutdown(self, sockets: Any = None) -> None:
                for server in self.servers:
                    server.close()  # stop accepting before draining
                await service.drain()
                await super().shutdown(sockets)

        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            ws="websockets-sansio",
            ws_max_size=4 * service.limits.max_message_bytes,
            timeout_graceful_shutdown=10,
        )
        self.server = _Uvicorn(config)
        self.app = app

    @property
    def port(self) -> int:
        """The port listened on (after start-up)."""
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def started(self) -> bool:
        """Whether it is listening."""
        return bool(self.server.started)

    def run(self) -> None:
        """Serve until SIGTERM / SIGINT (blocking)."""
        self.server.run()

    async def serve(self) -> None:
        """Serve in the running event loop until :meth:`stop`."""
        await self.server.serve()

    def stop(self) -> None:
        """Ask the server to shut down gracefully (as SIGTERM)."""
        self.server.should_exit = True


def run_server(app: Any, host: str = "127.0.0.1", port: int = 10086, *, log_level: str = "info") -> None:
    """Serve ``app`` until SIGTERM / SIGINT, finishing open utterances first."""
    Server(app, host, port, log_level=log_level).run()
