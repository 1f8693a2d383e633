"""Feature benchmark: audioforge against librosa, nnAudio and kaldi-native-fbank, measured in one run.

Threads are pinned to one (torch, BLAS/OpenMP) so the numbers compare implementations, not thread pools. Each case
reports the median of repeated calls; the ratio column is peer time / audioforge time (> 1: audioforge is faster).
Run with ``python benchmarks/features.py`` or ``audioforge bench features``.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["Result", "run"]

SEED = dict(sr=16000, n_fft=800, win_length=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0, norm="slaney")
PASST = dict(sr=32000, n_fft=1024, win_length=800, hop_length=320, n_mels=128, fmin=0.0, fmax=None, norm="slaney")


@dataclass
class Result:
    """One measured case: times in microseconds per call."""

    section: str
    case: str
    impl: str
    median_us: float
    p99_us: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    vs: str = "audioforge"  # the audioforge row a peer is compared with


def _time(fn: Callable[[], Any], *, min_time: float = 0.3, min_calls: int = 5, max_calls: int = 20000,
          warmup: int = 3) -> list[float]:
    """Per-call times in us: warm up, then call until ``min_time`` seconds and ``min_calls`` calls have passed."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    t_end = time.perf_counter() + min_time
    while (len(times) < min_calls or time.perf_counter() < t_end) and len(times) < max_calls:
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return times


def _p99(times: list[float]) -> float:
    return float(np.percentile(times, 99))


def _pin_threads() -> Any:
    import torch

    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with librosa's scikit-learn
        return None


def _signal(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = max(1, int(seconds * sr))
    t = np.arange(n) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _batch_mel(results: list[Result], name: str, cfg: dict[str, Any], seconds: list[float], min_time: float) -> None:
    import librosa
    import torch

    from .. import features as af

    rng = np.random.default_rng(0)
    nn_cls = None
    try:
        from nnAudio.features import MelSpectrogram as NnMel

        nn_cls = NnMel
    except Exception:  # nnAudio is an optional peer; any import failure just drops its rows
        nn_cls = None
    for sec in seconds:
        y = _signal(sec, cfg["sr"], rng)
        yt = torch.from_numpy(y)[None]
        case = f"{name} {sec:g} s"
        ours = _time(lambda y=y: af.melspectrogram(y, **cfg), min_time=min_time)
        ours_t = _time(lambda yt=yt: af.melspectrogram(yt, **cfg), min_time=min_time)
        lib = _time(lambda y=y: librosa.feature.melspectrogram(y=y, **cfg), min_time=min_time)
        results += [Result(f"batch mel ({name})", case, "audioforge (numpy in/out)", statistics.median(ours)),
                    Result(f"batch mel ({name})", case, "audioforge (torch in/out)", statistics.median(ours_t)),
                    Result(f"batch mel ({name})", case, "librosa", statistics.median(lib),
                           vs="audioforge (numpy in/out)")]
        if nn_cls is not None:
            layer = nn_cls(sr=cfg["sr"], n_fft=cfg["n_fft"], win_length=cfg["win_length"], n_mels=cfg["n_mels"],
                           hop_length=cfg["hop_length"], window="hann", center=True, pad_mode="constant", power=2.0,
                           htk=False, fmin=cfg["fmin"], fmax=cfg["fmax"], norm=1, trainable_mel=False,
                           trainable_STFT=False, verbose=False)
            with torch.inference_mode():
                nn_t = _time(lambda layer=layer, yt=yt: layer(yt), min_time=min_time)
            results.append(Result(f"batch mel ({name})", case, "nnAudio (torch in/out)", statistics.median(nn_t),
                                  vs="audioforge (torch in/out)"))


def _batch_fbank(results: list[Result], seconds: list[float], min_time: float) -> None:
    import kaldi_native_fbank as knf

    from ..features.kaldi import kaldi_fbank

    rng = np.random.default_rng(1)
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = 16000
    opts.mel_opts.num_bins = 80
    opts.energy_floor = 0.0

    def knf_whole(x: np.ndarray) -> np.ndarray:
        fb = knf.OnlineFbank(opts)
        fb.accept_waveform(16000, x)
        fb.input_finished()
        return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])

    for sec in seconds:
        x = _signal(sec, 16000, rng) * 32768.0
        case = f"WeNet fbank 80 {sec:g} s"
        ours = _time(lambda x=x: kaldi_fbank(x, num_mel_bins=80, energy_floor=0.0, dither=0.0), min_time=min_time)
        peer = _time(lambda x=x: knf_whole(x), min_time=min_time)
        results += [Result("batch fbank (WeNet)", case, "audioforge", statistics.median(ours)),
                    Result("batch fbank (WeNet)", case, "kaldi-native-fbank", statistics.median(peer))]


def _streaming(results: list[Result], min_time: float) -> None:
    import kaldi_native_fbank as knf

    from ..features.kaldi_stream import OnlineKaldiFbank
    from ..features.streaming import StreamingMelSpectrogram

    rng = np.random.default_rng(2)
    hop = SEED["hop_length"]
    cfg = {k: v for k, v in SEED.items()}
    sm = StreamingMelSpectrogram(**cfg)
    audio = _signal(30.0, 16000, rng)
    pos = [0]

    def mel_step() -> None:
        i = pos[0]
        sm.accept_waveform(audio[i : i + hop])
        pos[0] = (i + hop) % (audio.size - hop)

    t = _time(mel_step, min_time=max(min_time, 0.5), min_calls=2000, warmup=50)
    results.append(Result("streaming (one hop in, one frame out)", "mel 16k/800/200/80", "audioforge",
                          statistics.median(t), _p99(t)))

    fbank_hop = 160
    x = audio * 32768.0
    of = OnlineKaldiFbank(num_mel_bins=80, energy_floor=0.0, dither=0.0)
    pos2 = [0]

    def fbank_step() -> None:
        i = pos2[0]
        of.accept_waveform(x[i : i + fbank_hop])
        pos2[0] = (i + fbank_hop) % (x.size - fbank_hop)

    t = _time(fbank_step, min_time=max(min_time, 0.5), min_calls=2000, warmup=50)
    results.append(Result("streaming (one hop in, one frame out)", "fbank 80 (WeNet)", "audioforge",
                          statistics.median(t), _p99(t)))

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    opts.energy_floor = 0.0
    fb = knf.OnlineFbank(opts)
    state = {"pos": 0, "read": 0}

    def knf_step() -> None:
        i = state["pos"]
        fb.accept_waveform(16000, x[i : i + fbank_hop])
        n = fb.num_frames_ready
        while state["read"] < n:
            fb.get_frame(state["read"])
            state["read"] += 1
        state["pos"] = (i + fbank_hop) % (x.size - fbank_hop)

    t = _time(knf_step, min_time=max(min_time, 0.5), min_calls=2000, warmup=50)
    results.append(Result("streaming (one hop in, one frame out)", "fbank 80 (WeNet)", "kaldi-native-fbank",
                          statistics.median(t), _p99(t)))


def _many_streams(results: list[Result], min_time: float, n_streams: int = 64) -> None:
    import torch

    from ..features.kaldi_stream import BatchedOnlineKaldiFbank
    from ..features.streaming import BatchedStreamingMelSpectrogram

    rng = np.random.default_rng(3)
    hop = SEED["hop_length"]
    bm = BatchedStreamingMelSpectrogram(n_streams, **SEED)
    chunk = torch.from_numpy((0.1 * rng.standard_normal((n_streams, hop))).astype(np.float32))
    t = _time(lambda: bm.accept_waveform(chunk), min_time=max(min_time, 0.5), min_calls=300, warmup=20)
    results.append(Result(f"{n_streams} streams stepped together", "mel, per stream", "audioforge",
                          statistics.median(t) / n_streams, _p99(t) / n_streams, {"per_call_us": statistics.median(t)}))
    bf = BatchedOnlineKaldiFbank(n_streams, num_mel_bins=80, energy_floor=0.0, dither=0.0)
    fchunk = torch.from_numpy((3000 * rng.standard_normal((n_streams, 160))).astype(np.float32))
    t = _time(lambda: bf.accept_waveform(fchunk), min_time=max(min_time, 0.5), min_calls=300, warmup=20)
    results.append(Result(f"{n_streams} streams stepped together", "fbank 80, per stream", "audioforge",
                          statistics.median(t) / n_streams, _p99(t) / n_streams, {"per_call_us": statistics.median(t)}))


def _onnx_dft(results: list[Result], seconds: list[float], min_time: float) -> None:
    """Exported log-mel graphs in onnxruntime (one thread): the DFT as one dense matmul vs the factored two."""
    import tempfile

    import onnxruntime as ort
    import torch

    from ..features.onnx_export import export_feature_onnx
    from ..features.transforms import LogMel

    rng = np.random.default_rng(0)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory(prefix="af-bench-onnx-") as tmp:
        for name, cfg in (("seed 16k/800/200/80", SEED), ("PaSST 32k/1024/320/128", PASST)):
            kw = dict(cfg)
            sessions = {}
            for dft in ("factored", "matmul"):
                path = export_feature_onnx(LogMel(dft=dft, top_db=None, **kw), f"{tmp}/{dft}.onnx")
                sessions[dft] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            for sec in seconds:
                x = _signal(sec, cfg["sr"], rng)[None]
                case = f"{name} {sec:g} s"
                section = "exported log-mel in onnxruntime (DFT as matmuls)"
                module = LogMel(dft="fft", top_db=None, **kw)
                with torch.inference_mode():
                    torch_fft = _time(lambda m=module, x=x: m(torch.from_numpy(x)), min_time=min_time)
                ours = "audioforge onnx, factored DFT"
                for dft, label in (("factored", ours), ("matmul", "audioforge onnx, dense DFT matmul")):
                    sess = sessions[dft]
                    t = _time(lambda sess=sess, x=x: sess.run(None, {"waveform": x}), min_time=min_time)
                    results.append(Result(section, case, label, statistics.median(t), vs=ours))
                results.append(Result(section, case, "audioforge torch, FFT (reference)", statistics.median(torch_fft),
                                      vs=ours))


def run(*, quick: bool = False, json_path: str | None = None, sections: str = "abcdef") -> list[Result]:
    """Run the benchmark and print ratio tables; ``quick`` shortens every measurement (for smoke tests)."""
    from rich.console import Console

    from ..features import native

    limits = _pin_threads()
    min_time = 0.05 if quick else 0.4
    kernel = native.available()  # built before any timing
    seconds = [0.1, 1.0] if quick else [0.1, 1.0, 10.0, 60.0]
    results: list[Result] = []
    console = Console(width=130)
    steps = [
        ("a", "batch mel, seed configuration", lambda: _batch_mel(results, "seed 16k/800/200/80", SEED, seconds,
                                                                   min_time)),
        ("b", "batch mel, PaSST configuration", lambda: _batch_mel(results, "PaSST 32k/1024/320/128", PASST,
                                                                    seconds[:2] if quick else [1.0, 10.0], min_time)),
        ("c", "batch fbank, WeNet configuration", lambda: _batch_fbank(results, seconds, min_time)),
        ("d", "streaming, one hop in", lambda: _streaming(results, min_time)),
        ("e", "64 streams stepped together", lambda: _many_streams(results, min_time)),
        ("f", "exported graphs in onnxruntime", lambda: _onnx_dft(results, [1.0] if quick else [1.0, 10.0],
                                                                   min_time)),
    ]
    for key, label, fn in steps:
        if key in sections:
            with console.status(f"measuring {label} ..."):
                fn()
    del limits
    console.print(f"native mel kernel (float32 numpy/torch-in mel outside autograd): "
                  f"{'used' if kernel else 'not available here: numpy/torch path'}")
    _print(results, console)
    if json_path:
        import torch

        meta = {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
                "processor": platform.processor(), "threads": 1, "native_mel_kernel": kernel}
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump({"meta": meta, "results": [asdict(r) for r in results]}, fh, indent=1)
    return results


def _print(results: list[Result], console: Any) -> None:
    from rich.table import Table

    sections: dict[str, list[Result]] = {}
    for r in results:
        sections.setdefault(r.section, []).append(r)
    for section, rows in sections.items():
        table = Table(title=section)
        for col in ("case", "implementation", "median us", "p99 us", "peer / audioforge"):
            table.add_column(col, justify="right" if col != "case" and col != "implementation" else "left")
        ours = {(r.case, r.impl): r.median_us for r in rows if r.impl.startswith("audioforge")}
        for r in rows:
            ref = ours.get((r.case, r.vs))
            ratio = "" if r.impl == r.vs or ref is None else f"{r.median_us / ref:.1f}x"
            table.add_row(r.case, r.impl, f"{r.median_us:,.1f}", "" if r.p99_us is None else f"{r.p99_us:,.1f}", ratio)
        console.print(table)
