"""Load test of ``audioforge serve``: N concurrent real-time WeNet-protocol streams on 127.0.0.1.

    python benchmarks/serve_load.py --streams 16 --seconds 8

The server runs as a subprocess (``audioforge serve`` on a free loopback port) with the shipped ``asr`` bundle when
there is one, else a randomly initialised U2++ conformer (``--model tiny|small``; its text is meaningless but its
compute is real). Every stream sends a different signal (seeded noise, or with ``--manifest`` held-out speech,
utterance after utterance) as 0.5 s int16 messages paced in real time, with continuous decoding; stream starts are
spread over one message period. Each stream's results are compared with the recogniser's own streaming output for
the same audio and chunking, computed here beforehand: a missing result counts as lost, a different one as mixed
up. Partial-result latency is the time from sending the message that completed a decoding
chunk to receiving that chunk's partial result. Bounded: fixed audio per stream and a global deadline; the server is
stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioforge.asr.infer import Recognizer
from audioforge.asr.model import build_u2_model
from audioforge.asr.streaming import DecodingConfig
from audioforge.asr.tokenizer import CharTokenizer
from audioforge.bundle import available_bundles
from audioforge.serve.app import open_session
from audioforge.serve.client import StreamResult, stream_pcm
from audioforge.serve.protocol import Start, final_result, partial_result

SR = 16000
SYMBOLS = ["<blank>", "<unk>", *"abcdefghijklmnopqrstuvwxyz", "'", "▁", "<sos/eos>"]
SIZES = {  # output_size, heads, linear_units, encoder blocks, decoder blocks
    "tiny": (64, 4, 128, 2, 1),
    "small": (144, 4, 576, 6, 2),
}


def random_recognizer(size: str, seed: int = 0) -> Recognizer:
    """A randomly initialised U2++ conformer (CTC biased away from blank so that it emits text)."""
    d, heads, units, blocks, dec_blocks = SIZES[size]
    torch.manual_seed(seed)
    config = {
        "input_dim": 80,
        "vocab_size": len(SYMBOLS),
        "encoder": "conformer",
        "encoder_conf": {
            "output_size": d,
            "attention_heads": heads,
            "linear_units": units,
            "num_blocks": blocks,
            "dropout_rate": 0.0,
            "positional_dropout_rate": 0.0,
            "input_layer": "conv2d",
            "pos_enc_layer_type": "rel_pos",
            "use_dynamic_chunk": True,
            "causal": True,
            "cnn_module_norm": "layer_norm",
            "cnn_module_kernel": 15,
        },
        "decoder": "bitransformer",
        "decoder_conf": {"num_blocks": dec_blocks, "r_num_blocks": dec_blocks, "linear_units": units},
        "model_conf": {"ctc_weight": 0.3, "reverse_weight": 0.3},
    }
    model = build_u2_model(config).eval()
    with torch.no_grad():
        model.ctc.ctc_lo.bias[0] -= 3.0
    decoding = DecodingConfig(chunk_size=16, num_left_chunks=4, beam_size=10, nbest=10, reverse_weight=0.3)
    return Recognizer(model, CharTokenizer(SYMBOLS), config=decoding)


def utterance(seconds: float, seed: int) -> np.ndarray:
    """Seeded amplitude-modulated noise as int16 PCM (a different signal per stream)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    envelope = 0.3 + 0.7 * np.abs(np.sin(np.pi * np.arange(n) / SR * rng.uniform(2.0, 5.0)))
    return np.clip(4000 * envelope * rng.standard_normal(n), -32768, 32767).astype(np.int16)


def speech_streams(manifest: str, count: int, seconds: float) -> list[np.ndarray]:
    """``count`` int16 streams of ``seconds`` each, from a manifest's ``test`` split: utterance after utterance (each
    stream starts at a different one), so that a trained model decodes real speech."""
    from audioforge.asr.data import load_manifest
    from audioforge.audio import load

    m = load_manifest(manifest, split="test")
    entries = list(m)
    if not entries:
        raise SystemExit(f"{manifest} has no test utterances")
    n = int(seconds * SR)
    cache: dict[int, np.ndarray] = {}
    streams = []
    for s in range(count):
        parts, have, k = [], 0, s
        while have < n:
            j = k % len(entries)
            if j not in cache:
                cache[j] = load(m.audio_path(entries[j]), sr=SR)[0]
            parts.append(cache[j])
            have += cache[j].shape[0]
            k += count
        pcm = np.concatenate(parts)[:n]
        streams.append(np.clip(np.round(pcm * 32768.0), -32768, 32767).astype(np.int16))
    return streams


def expected_results(rec: Recognizer, pcm: np.ndarray, chunk: int) -> tuple[list[dict], list[int]]:
    """The result messages of ``rec``'s own streaming session, and for each the index of the message it follows."""
    session = open_session(rec, Start(1, True))  # continuous decoding, as the streams below ask for
    messages: list[dict] = []
    origin: list[int] = []
    for i, pos in enumerate(range(0, pcm.shape[0], chunk)):
        for res in session.accept_waveform(pcm[pos : pos + chunk]):
            if res.final:
                messages.append(json.loads(final_result(res)))
            elif res.text:
                messages.append(json.loads(partial_result(res)))
            else:  # the server sends nothing for an empty partial, so it has no latency to attribute
                continue
            origin.append(i)
        if session.finished:
            return messages, origin
    messages.append(json.loads(final_result(session.finalize())))
    origin.append(-1)  # after the end signal
    return messages, origin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(port: int, deadline: float, proc: subprocess.Popen[Any]) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            with opener.open(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not become healthy in time")


async def run_streams(url: str, pcms: list[np.ndarray], chunk_s: float, deadline_s: float) -> list[StreamResult]:
    async def one(i: int, pcm: np.ndarray) -> StreamResult:
        await asyncio.sleep(chunk_s * i / len(pcms))  # spread the starts over one message period
        return await stream_pcm(url, pcm, chunk_s=chunk_s, realtime=True, continuous_decoding=True,
                                timeout_s=deadline_s)

    return await asyncio.wait_for(asyncio.gather(*(one(i, p) for i, p in enumerate(pcms))), deadline_s + 5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0, help="audio per stream")
    parser.add_argument("--chunk-s", type=float, default=0.5, help="seconds of audio per message")
    parser.add_argument("--model", default="auto", help="auto ('asr' bundle, else tiny), tiny, small, or a bundle")
    parser.add_argument("--manifest", default=None,
                        help="stream the test split of this speech manifest (default: seeded noise)")
    parser.add_argument("--workers", type=int, default=0, help="server decoding threads (0: one per core)")
    parser.add_argument("--deadline", type=float, default=120.0, help="global time limit in seconds")
    parser.add_argument("--p95-ms", type=float, default=200.0, help="the floor to check")
    args = parser.parse_args(argv)
    if not 1 <= args.streams <= 256 or not 0 < args.seconds <= 120 or not 0 < args.deadline <= 900:
        parser.error("keep it bounded: 1-256 streams, up to 120 s of audio each, deadline up to 900 s")
    torch.set_num_threads(1)

    if args.model == "auto":
        args.model = "asr" if "asr" in available_bundles() else "tiny"
    if args.model in SIZES:
        rec = random_recognizer(args.model)
        described = f"randomly initialised U2++ conformer '{args.model}' {SIZES[args.model]} (no shipped bundle used)"
    else:
        rec = Recognizer.from_bundle(args.model)
        described = f"bundle {args.model}"
    params = sum(p.numel() for p in rec.model.parameters())
    chunk = int(args.chunk_s * SR)
    if args.manifest:
        pcms = speech_streams(args.manifest, args.streams, args.seconds)
    else:
        pcms = [utterance(args.seconds, 1000 + i) for i in range(args.streams)]
    t0 = time.perf_counter()
    expected = [expected_results(rec, p, chunk) for p in pcms]
    ref_rtf = (time.perf_counter() - t0) / (args.seconds * args.streams)

    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        bundle_dir = Path(tmp) / "bundle"
        rec.to_bundle().save(bundle_dir)
        port = free_port()
        cmd = [
            sys.executable, "-c", "from audioforge.cli import main; main()", "serve",
            "--host", "127.0.0.1", "--port", str(port), "--bundle", str(bundle_dir),
            "--log-level", "warning", "--max-connections", str(args.streams + 8),
        ]  # fmt: skip
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_healthy(port, time.monotonic() + 60, proc)
            t0 = time.perf_counter()
            results = asyncio.run(run_streams(f"ws://127.0.0.1:{port}/", pcms, args.chunk_s, args.deadline))
            wall = time.perf_counter() - t0
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    latencies: list[float] = []
    lost = mixed = failed = 0
    for got, (want, origin) in zip(results, expected, strict=True):
        received = [r for r in got.replies if r.type in ("partial_result", "final_result")]
        failed += len(got.errors) + (0 if got.speech_end else 1)
        lost += max(0, len(want) - len(received))
        mixed += sum(1 for r, w in zip(received, want, strict=False) if r.data != w)
        mixed += max(0, len(received) - len(want))
        for r, w, i in zip(received, want, origin, strict=False):
            if r.type == "partial_result" and r.data == w and 0 <= i < len(got.send_times):
                latencies.append(1000.0 * (r.time - got.send_times[i]))
    lat = np.asarray(latencies) if latencies else np.asarray([np.nan])
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    ok = lost == 0 and mixed == 0 and failed == 0 and p95 <= args.p95_ms
    print(f"model: {described}, {params / 1e6:.2f} M parameters, chunk_size {rec.config.chunk_size} frames")
    print(f"machine: {os.cpu_count()} CPU cores (shared); reference decoding RTF here {ref_rtf:.3f} (1 thread)")
    source = f"speech from {args.manifest}" if args.manifest else "seeded noise"
    print(f"streams: {args.streams} x {args.seconds:g} s real time ({source}), {args.chunk_s:g} s messages, "
          f"wall {wall:.1f} s")
    print(f"partial results timed: {len(latencies)}")
    print(f"partial latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {np.nanmax(lat):.1f}")
    print(f"lost results: {lost}  mixed-up results: {mixed}  failed/incomplete streams: {failed}")
    print(f"floor (p95 <= {args.p95_ms:g} ms, nothing lost or mixed): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    random.seed(0)
    raise SystemExit(main())
