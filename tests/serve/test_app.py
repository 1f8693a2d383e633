from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from audioforge.asr.infer import Recognizer
from audioforge.errors import AudioForgeError, CheckpointError
from audioforge.serve.app import create_app, open_session
from audioforge.serve.client import StreamResult, stream_pcm
from audioforge.serve.protocol import Limits, Start, final_result, partial_result

from .conftest import RunningServer, pcm16, tiny_recognizer

CHUNK = 8000  # samples per message (0.5 s, as WeNet's client)


def reference(server: RunningServer, pcm: np.ndarray, nbest: int = 1, continuous: bool = False) -> list[dict]:
    """The messages the recogniser's own streaming session gives for ``pcm`` in 0.5 s chunks (in the pool)."""

    def run() -> list[dict]:
        session = open_session(server.service.recognizer, Start(nbest, continuous))
        out: list[str] = []
        for pos in range(0, pcm.shape[0], CHUNK):
            for res in session.accept_waveform(pcm[pos : pos + CHUNK]):
                if res.final:
                    out.append(final_result(res, nbest))
                elif res.text:
                    out.append(partial_result(res, nbest))
            if session.finished:
                return [json.loads(m) for m in out]
        out.append(final_result(session.finalize(), nbest))
        return [json.loads(m) for m in out]

    return server.service.executor.submit(run).result()


def results_of(result: StreamResult) -> list[dict]:
    return [r.data for r in result.replies if r.type in ("partial_result", "final_result")]


def stream(server: RunningServer, pcm: np.ndarray, **kwargs: Any) -> StreamResult:
    kwargs.setdefault("realtime", False)
    return asyncio.run(stream_pcm(server.url, pcm, timeout_s=60, **kwargs))


async def converse(
    url: str, sends: list[str | bytes], replies: int = 1000, *, wait_close: bool = True
) -> tuple[list[dict], int | None]:
    """Send each message, read ``replies`` messages (fewer if the server closes), wait for the close."""
    got: list[dict] = []
    async with connect(url, proxy=None, max_size=None) as ws:
        for message in sends:
            await ws.send(message)
        try:
            while len(got) < replies:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
            if wait_close:
                await asyncio.wait_for(ws.wait_closed(), 10)
        except Exception:  # closed
            pass
        return got, ws.close_code


def http(url: str, data: bytes | None = None) -> tuple[int, Any, str]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            body = response.read()
            kind = response.headers.get("content-type", "")
            return response.status, json.loads(body) if "json" in kind else body.decode(), kind
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), ""


START = json.dumps({"signal": "start", "nbest": 1, "continuous_decoding": False})
END = json.dumps({"signal": "end"})


# ------------------------------------------------------------------------------------------------ happy paths


def test_happy_path_equals_offline_streaming(server: RunningServer, recognizer: Recognizer) -> None:
    pcm = pcm16(3.0, seed=1)
    got = stream(server, pcm, nbest=3)
    assert got.replies[0].data == {"status": "ok", "type": "server_ready"}
    assert got.replies[-1].data == {"status": "ok", "type": "speech_end"}
    assert got.close_code == 1000 and not got.errors
    assert len(got.partials) >= 5 and len(got.finals) == 1 and got.replies[-2].type == "final_result"
    assert results_of(got) == reference(server, pcm, nbest=3)
    final = got.finals[0].nbest
    assert len(final) == 3 and all("word_pieces" in e for e in final)
    assert final[0]["word_pieces"] and all(w["end"] >= w["start"] >= 0 for w in final[0]["word_pieces"])
    offline = recognizer.transcribe(pcm, 16000, simulate_streaming=True)
    assert final[0]["sentence"] == offline.text and offline.text


@pytest.mark.parametrize("nbest", [1, 2, 4])
def test_nbest_count(server: RunningServer, nbest: int) -> None:
    got = stream(server, pcm16(1.5, seed=2), nbest=nbest)
    assert got.partials and all(len(p.nbest) == nbest for p in got.partials)
    assert len(got.finals[0].nbest) == nbest


@pytest.fixture(scope="module")
def endpointing() -> Iterator[RunningServer]:
    """A recogniser whose segments end every second (WeNet's rule 3), to exercise endpoints."""
    rec = tiny_recognizer(rule3_max_utterance_s=1.0)
    running = RunningServer(create_app(rec, workers=2, static_dir=None))
    yield running
    running.stop()


def test_continuous_decoding_across_endpoints(endpointing: RunningServer) -> None:
    pcm = pcm16(3.4, seed=3)
    got = stream(endpointing, pcm, nbest=2, continuous_decoding=True)
    assert len(got.finals) >= 3 and got.speech_end and got.close_code == 1000
    assert results_of(got) == reference(endpointing, pcm, nbest=2, continuous=True)
    assert [r.type for r in got.replies].count("speech_end") == 1 and got.replies[-1].type == "speech_end"
    starts = [f.nbest[0]["word_pieces"][0]["start"] for f in got.finals if f.nbest[0]["word_pieces"]]
    assert starts == sorted(starts) and starts[-1] >= 2000  # word times count from the stream's start


def test_without_continuous_decoding_the_first_endpoint_ends(endpointing: RunningServer) -> None:
    pcm = pcm16(3.4, seed=3)
    got = stream(endpointing, pcm, realtime=True, chunk_s=0.25)
    assert len(got.finals) == 1 and got.speech_end and got.replies[-1].type == "speech_end"
    assert results_of(got) == reference(endpointing, pcm)[: len(results_of(got))]
    assert len(got.send_times) < pcm.shape[0] / 4000  # the client stopped sending when the server closed


def test_concurrent_streams_do_not_mix(server: RunningServer) -> None:
    pcms = [pcm16(1.0 + 0.3 * i, seed=100 + i) for i in range(8)]

    async def all_streams() -> list[StreamResult]:
        return await asyncio.gather(*(stream_pcm(server.url, p, realtime=True, nbest=2, timeout_s=60) for p in pcms))

    results = asyncio.run(all_streams())
    for pcm, got in zip(pcms, results, strict=True):
        assert not got.errors and got.speech_end
        assert results_of(got) == reference(server, pcm, nbest=2)
    assert len({g.final_text for g in results}) == len(pcms)


# ------------------------------------------------------------------------------------------------ malformed input


def test_every_malformed_case_keeps_the_connection(server: RunningServer) -> None:
    pcm = pcm16(1.0, seed=4)
    sends: list[str | bytes] = [
        "{bad json",
        "[1, 2, 3]",
        pcm.tobytes()[:CHUNK],  # binary before start
        END,  # end before start
        json.dumps({"signal": "pause"}),
        json.dumps({"nbest": 1}),
        json.dumps({"signal": "start", "nbest": "three"}),
        START,
        START,  # start twice
        b"\x01\x02\x03",  # odd length
        bytes(server.service.limits.max_message_bytes + 2),  # oversized
        pcm[:CHUNK].tobytes(),
        pcm[CHUNK:].tobytes(),
        END,
    ]
    expected = reference(server, pcm)
    other = pcm16(1.5, seed=5)

    async def both() -> tuple[tuple[list[dict], int | None], StreamResult]:
        return await asyncio.gather(
            converse(server.url, sends),
            stream_pcm(server.url, other, realtime=False, timeout_s=60),
        )

    (replies, code), normal = asyncio.run(both())
    fails = [r["message"] for r in replies if r["status"] == "failed"]
    needles = [
        "malformed JSON",
        "JSON object",
        "send 'start' first",
        "send 'start' first",
        "unknown signal",
        "no 'signal'",
        "'nbest'",
        "utterance is open",
        "even number",
        "exceeds the limit",
    ]
    assert len(fails) == len(needles), replies
    for needle, message in zip(needles, fails, strict=True):
        assert needle in message
    ok = [r for r in replies if r["status"] == "ok"]
    assert ok[0] == {"status": "ok", "type": "server_ready"}
    assert ok[1:-1] == expected and ok[-1]["type"] == "speech_end"
    assert code == 1000
    # the stream beside it was not disturbed
    assert not normal.errors and results_of(normal) == reference(server, other)


def test_oversized_frame_gets_a_failed_message(server: RunningServer) -> None:
    big = bytes(server.service.limits.max_message_bytes + 2)
    replies, code = asyncio.run(converse(server.url, [START, big], 2, wait_close=False))
    assert code is None  # still open
    assert replies[1]["status"] == "failed" and "exceeds the limit" in replies[1]["message"]


def test_frame_above_the_transport_limit_closes_only_its_stream(server: RunningServer) -> None:
    huge = bytes(4 * server.service.limits.max_message_bytes + 2)
    _, code = asyncio.run(converse(server.url, [START, huge], 5))
    assert code == 1009
    assert stream(server, pcm16(0.7, seed=6)).speech_end


@pytest.fixture(scope="module")
def limited() -> Iterator[RunningServer]:
    limits = Limits(max_utterance_s=1.0, idle_timeout_s=0.5, max_errors=3, max_connections=2)
    running = RunningServer(create_app(tiny_recognizer(), limits=limits, workers=1, static_dir=None))
    yield running
    running.stop()


def test_utterance_length_limit(limited: RunningServer) -> None:
    pcm = pcm16(1.5, seed=7)
    got = stream(limited, pcm)
    assert len(got.errors) == 1 and "exceeds the limit of 1 s" in got.errors[0]
    assert results_of(got) == reference(limited, pcm[:16000])
    assert got.replies[-1].type == "speech_end" and got.close_code == 1008


def test_idle_timeout_finalizes(limited: RunningServer) -> None:
    pcm = pcm16(1.0, seed=8)
    replies, code = asyncio.run(converse(limited.url, [START, pcm.tobytes()], 50))
    assert [r["status"] for r in replies].count("failed") == 1 and "no message for" in replies[-3]["message"]
    assert [r for r in replies if r["status"] == "ok"][1:-1] == reference(limited, pcm)
    assert replies[-1]["type"] == "speech_end" and code == 1000


def test_too_many_errors_close(limited: RunningServer) -> None:
    replies, code = asyncio.run(converse(limited.url, ["x", "y", "z"], 10))
    assert len(replies) == 4 and "3 protocol errors" in replies[-1]["message"] and code == 1008


def test_connection_limit(limited: RunningServer) -> None:
    async def run() -> tuple[list[dict], int | None]:
        async with connect(limited.url, proxy=None), connect(limited.url, proxy=None):
            await asyncio.sleep(0.1)
            return await converse(limited.url, [], 1)

    replies, code = asyncio.run(run())
    assert "busy" in replies[0]["message"] and code == 1013


# ------------------------------------------------------------------------------------------------ HTTP


def test_health_and_index(server: RunningServer) -> None:
    status, body, _ = http(server.http + "/health")
    assert status == 200 and body["status"] == "ok" and body["recognizer"] == "Recognizer"
    status, body, _ = http(server.http + "/")
    assert status == 200 and body["websocket"] == "/"


def test_transcribe_one_shot(server: RunningServer, recognizer: Recognizer) -> None:
    pcm = pcm16(1.2, seed=9)
    expected = recognizer.transcribe(pcm, 16000)
    buf = io.BytesIO()
    sf.write(buf, pcm, 16000, format="WAV", subtype="PCM_16")
    status, body, _ = http(server.http + "/transcribe?nbest=2", buf.getvalue())
    assert status == 200 and body["status"] == "ok"
    assert body["text"] == expected.text and len(body["nbest"]) == 2 and body["nbest"][0]["sentence"] == expected.text
    assert body["words"] and {"word", "start", "end"} <= set(body["words"][0])
    assert body["timings"]["audio_s"] == pytest.approx(1.2)
    flac = io.BytesIO()
    sf.write(flac, pcm, 16000, format="FLAC")
    assert http(server.http + "/transcribe", flac.getvalue())[1]["text"] == expected.text
    status, body, _ = http(server.http + "/transcribe?sample_rate=16000", pcm.tobytes())
    assert status == 200 and body["text"] == expected.text
    # errors
    assert http(server.http + "/transcribe", b"")[0] == 400
    status, body, _ = http(server.http + "/transcribe", b"not audio at all")
    assert status == 400 and "sample_rate" in body["message"]
    assert http(server.http + "/transcribe?sample_rate=16000", b"\0\0\0")[0] == 400
    assert http(server.http + "/transcribe?sample_rate=5", pcm.tobytes())[0] == 400


def test_static_mount(tmp_path: Path, recognizer: Recognizer) -> None:
    (tmp_path / "index.html").write_text("<h1>ddsp</h1>")
    (tmp_path / "app.js").write_text("console.log(1)")
    running = RunningServer(create_app(recognizer, workers=1, static_dir=tmp_path))
    try:
        assert http(running.http + "/web/")[1] == "<h1>ddsp</h1>"
        assert http(running.http + "/web/app.js")[1] == "console.log(1)"
        assert http(running.http + "/")[1] == "<h1>ddsp</h1>"  # redirected to /web/
        assert stream(running, pcm16(0.6)).speech_end  # the WebSocket at / still works
    finally:
        running.stop()
    with pytest.raises(AudioForgeError, match="does not exist"):
        create_app(recognizer, static_dir=tmp_path / "missing")


def test_page_models_manifest_points_at_served_bundles(recognizer: Recognizer) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    web = Path(__file__).resolve().parents[2] / "web"
    running = RunningServer(create_app(recognizer, workers=1, static_dir=web))
    try:
        status, entries, _ = http(running.http + "/web/models/manifest.json")
        assert status == 200 and {e["id"] for e in entries} >= {"sax", "violin", "flute"}
        for e in entries:
            for key in ("decoder", "controls"):
                with opener.open(running.http + e[key], timeout=10) as resp:
                    assert resp.status == 200 and len(resp.read()) > 100
        with opener.open(running.http + "/web/dsp/synth.js", timeout=10) as resp:
            assert resp.headers["content-type"].startswith("text/javascript")
    finally:
        running.stop()


# ------------------------------------------------------------------------------------------------ shutdown, CLI


def test_graceful_shutdown_finishes_open_utterances(recognizer: Recognizer) -> None:
    limits = Limits(shutdown_grace_s=0.3)
    running = RunningServer(create_app(recognizer, limits=limits, workers=1, static_dir=None))
    pcm = pcm16(1.0, seed=10)
    expected = reference(running, pcm)

    async def run() -> tuple[list[dict], int | None, list[dict]]:
        async with connect(running.url, proxy=None) as ws, connect(running.url, proxy=None) as idle:
            await ws.send(START)
            assert json.loads(await ws.recv())["type"] == "server_ready"
            await ws.send(pcm.tobytes())
            await asyncio.sleep(0.3)
            stopper = threading.Thread(target=running.stop)
            stopper.start()
            got = [json.loads(m) async for m in ws]
            idle_got = [json.loads(m) async for m in idle]
            await asyncio.to_thread(stopper.join)
            return got, ws.close_code, idle_got

    t0 = time.perf_counter()
    got, code, idle_got = asyncio.run(run())
    assert got[:-1] == expected and got[-1]["type"] == "speech_end" and code == 1001
    assert idle_got and "shutting down" in idle_got[0]["message"]
    assert time.perf_counter() - t0 < 15


def test_cli_bundle_resolution(tmp_path: Path, recognizer: Recognizer, monkeypatch: pytest.MonkeyPatch) -> None:
    import audioforge.bundle as bundle_module
    from audioforge.cli.serve import resolve_recognizer

    if "asr" in bundle_module.available_bundles():  # the shipped default recogniser
        assert isinstance(resolve_recognizer("asr"), Recognizer)
    monkeypatch.setattr(bundle_module, "shipped_bundles_dir", lambda: tmp_path / "no_assets")
    with pytest.raises(CheckpointError, match="--bundle"):
        resolve_recognizer("asr")
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=r"asr_config\.json"):
        resolve_recognizer(str(tmp_path), "onnx")
    with pytest.raises(AudioForgeError, match="--backend"):
        resolve_recognizer(str(tmp_path), "tensorflow")
    recognizer.to_bundle().save(tmp_path / "b")
    rec = resolve_recognizer(str(tmp_path / "b"))
    assert isinstance(rec, Recognizer) and rec.config == recognizer.config
