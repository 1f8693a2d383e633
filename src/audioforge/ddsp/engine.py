"""A block-based real-time DDSP engine: 16 kHz PCM blocks in, the same melody played by the model out.

Per block (default 320 samples = 20 ms): the block is appended to an input history; every 250 Hz frame whose analysis
windows are complete gets YIN f0 + confidence (1024-sample window, integration window centred on the frame) and
A-weighted loudness (512-point window centred on the frame), computed on a short lookback slice of the history with
exactly the samples the offline :func:`~audioforge.ddsp.pitch.yin_f0` and
:func:`~audioforge.ddsp.loudness.compute_loudness` would use (:func:`yin_frames`, :func:`loudness_frames`); the
controls are post-processed causally (:func:`postprocess_controls`: note detection, f0 held through unvoiced frames,
manual shifts, non-note frames lowered); the decoder steps with its carried GRU state and the harmonic + noise
synthesizers continue with their carried phase and noise tail. Output is queued and returned ``block_size`` samples
at a time.

A frame needs 712 samples after its centre (the YIN window), so the output runs :attr:`DDSPEngine.delay_samples`
behind the input; :attr:`DDSPEngine.latency_ms` adds the block itself (64 ms at 20 ms blocks). With the same noise,
the whole output equals the offline rendering of :func:`offline_controls` delayed by ``delay_samples``
(:func:`render_file` removes the delay), see ``tests/ddsp/test_ddsp_engine.py``.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import torch

from ..audio import validate_audio
from ..errors import InvalidAudioError, InvalidParameterError
from .data import HOP, SR
from .decoders import RnnFcDecoder, scale_inputs
from .loudness import a_weighting_db, compute_loudness, loudness_reference_db
from .model import DDSPAutoencoder, DDSPState
from .pitch import yin_f0

__all__ = [
    "DDSPEngine",
    "loudness_frames",
    "offline_controls",
    "postprocess_controls",
    "render_file",
    "render_offline",
    "yin_frames",
]

YIN_FRAME = 1024
YIN_FMIN = 40.0
_TAU_MAX = min(math.ceil(SR / YIN_FMIN), YIN_FRAME // 2)
YIN_LEFT = (YIN_FRAME - _TAU_MAX) // 2  # samples of the YIN frame before its centre (312)
YIN_RIGHT = YIN_FRAME - YIN_LEFT  # samples from the centre to the end of the YIN frame (712)
LOUD_HALF = 256  # compute_loudness: 512-point frames centred on i * hop
LOOKBACK_FRAMES = -(-max(YIN_LEFT, LOUD_HALF) // HOP)  # 5 frames of history before the first new frame
_YIN_W = YIN_FRAME - _TAU_MAX
_YIN_FFT = 1 << (YIN_FRAME + _YIN_W - 1).bit_length()
_TAU_MIN = max(2, math.floor(SR / 2000.0))
_LOUD_WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(2 * LOUD_HALF) / (2 * LOUD_HALF))
_LOUD_WEIGHT = 10.0 ** (a_weighting_db(np.arange(LOUD_HALF + 1) * SR / (2 * LOUD_HALF)) / 10.0)
_LOUD_REF = loudness_reference_db(2 * LOUD_HALF)


def yin_frames(frames: np.ndarray, *, threshold: float = 0.1, silence_db: float = -60.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """YIN f0 and confidence of ``(k, 1024)`` float64 frames, numerically the per-frame computation of
    :func:`~audioforge.ddsp.pitch.yin_f0` with its defaults (fmin 40 Hz, fmax 2 kHz), for only the frames needed.
    """
    lags = np.arange(_TAU_MAX + 1)
    a = np.fft.rfft(frames[:, :_YIN_W], n=_YIN_FFT)
    b = np.fft.rfft(frames, n=_YIN_FFT)
    corr = np.fft.irfft(np.conj(a) * b, n=_YIN_FFT)[:, : _TAU_MAX + 1]
    sq = np.pad(np.cumsum(frames**2, axis=-1), ((0, 0), (1, 0)))
    energy = sq[:, lags + _YIN_W] - sq[:, lags]
    diff = np.maximum(energy[:, :1] + energy - 2.0 * corr, 0.0)
    cum = np.cumsum(diff[:, 1:], axis=-1)
    safe = cum > 1e-12 * (energy[:, :1] + 1e-30)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = np.where(safe, diff[:, 1:] * lags[1:] / np.where(safe, cum, 1.0), 1.0)
    seg = cmnd[:, _TAU_MIN: _TAU_MAX + 1]
    inner = seg[:, 1:-1]
    trough = (inner <= seg[:, :-2]) & (inner < seg[:, 2:]) & (inner < threshold)
    best = np.where(trough.any(-1), np.argmax(trough, axis=-1) + 1, np.argmin(seg, axis=-1))
    best = np.clip(best, 1, seg.shape[-1] - 2)
    rows = np.arange(seg.shape[0])
    left, mid, right = seg[rows, best - 1], seg[rows, best], seg[rows, best + 1]
    denom = left - 2.0 * mid + right
    ok = np.abs(denom) > 1e-12
    shift = np.clip(np.where(ok, 0.5 * (left - right) / np.where(ok, denom, 1.0), 0.0), -1.0, 1.0)
    f0 = SR / (best + _TAU_MIN + shift)
    conf = np.clip(1.0 - mid, 0.0, 1.0)
    silent = 10.0 * np.log10(np.maximum((frames**2).mean(-1), 1e-20)) < silence_db
    return np.where(silent, 0.0, f0), np.where(silent, 0.0, conf)


def loudness_frames(frames: np.ndarray) -> np.ndarray:
    """A-weighted loudness (dB) of ``(k, 512)`` frames centred on their frame instants, as ``compute_loudness``."""
    spec = np.fft.rfft(frames * _LOUD_WINDOW, axis=-1)
    power = (spec.real**2 + spec.imag**2) / _LOUD_WINDOW.sum() ** 2
    db = 10.0 * np.log10(np.maximum((power * _LOUD_WEIGHT).mean(-1), 1e-20)) - _LOUD_REF
    return np.maximum(db, -80.0)


def postprocess_controls(
    f0_raw: np.ndarray,
    confidence: np.ndarray,
    loudness_db: np.ndarray,
    *,
    last_f0: float,
    confidence_threshold: float = 0.6,
    pitch_shift: float = 0.0,
    loudness_shift: float = 0.0,
    quiet_db: float = 10.0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Causal per-frame control processing shared by the engine and :func:`offline_controls`.

    A frame is a note when its confidence reaches ``confidence_threshold`` and its loudness exceeds -60 dB; other
    frames keep the last note's f0 (``last_f0`` before the first note) and are lowered by ``quiet_db``. Then f0 is
    shifted by ``pitch_shift`` semitones and loudness by ``loudness_shift`` dB (clipped to [-80, 0]).

    Returns
    -------
    f0_hz, loudness_db, last_f0
        Controls and the held f0 to pass to the next call.
    """
    note = (confidence >= confidence_threshold) & (loudness_db > -60.0) & (f0_raw > 0)
    f0 = np.empty(f0_raw.shape[0], dtype=np.float64)
    held = float(last_f0)
    for i in range(f0_raw.shape[0]):  # a few frames per block: a plain loop is cheapest
        if note[i]:
            held = float(f0_raw[i])
        f0[i] = held
    f0 = f0 * 2.0 ** (pitch_shift / 12.0)
    ld = np.where(note, loudness_db, loudness_db - quiet_db) + loudness_shift
    return f0.astype(np.float32), np.clip(ld, -80.0, 0.0).astype(np.float32), held


def offline_controls(y: np.ndarray, *, initial_f0: float = 0.0, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """The controls the engine computes, from the whole 16 kHz signal at once (``n // 64 + 1`` frames)."""
    f0, conf = yin_f0(y, SR, frame_length=YIN_FRAME, fmin=YIN_FMIN)
    ld = compute_loudness(y, SR)
    f0c, ldc, _ = postprocess_controls(f0, conf, ld, last_f0=initial_f0, **kwargs)
    return f0c, ldc


def render_offline(model: DDSPAutoencoder, f0_hz: np.ndarray, loudness_db: np.ndarray, *, noise_seed: int = 0,
                   n_samples: int | None = None) -> np.ndarray:
    """Offline rendering with the engine's noise stream (``numpy`` PCG64 uniform in [-1, 1) from ``noise_seed``)."""
    n = f0_hz.shape[0] * HOP
    noise = np.random.default_rng(noise_seed).uniform(-1.0, 1.0, n).astype(np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(f0_hz)[None], torch.from_numpy(loudness_db)[None],
                    noise=torch.from_numpy(noise)[None])[0][0].numpy()
    return out[:n_samples] if n_samples is not None else out


class DDSPEngine:
    """Stateful block processor.

    Parameters
    ----------
    model
        A :class:`DDSPAutoencoder`, a DDSP bundle, a bundle folder or a shipped name (``"ddsp-sax"``).
    block_size
        Samples per block at 16 kHz (320 = 20 ms); any positive size.
    pitch_shift, loudness_shift
        Manual shifts (semitones, dB).
    confidence_threshold, quiet_db
        Note detection and the attenuation of non-note frames (:func:`postprocess_controls`).
    noise_seed
        Seed of the noise excitation (numpy PCG64, uniform in [-1, 1)).
    """

    def __init__(
        self,
        model: DDSPAutoencoder | Any,
        *,
        block_size: int = 320,
        pitch_shift: float = 0.0,
        loudness_shift: float = 0.0,
        confidence_threshold: float = 0.6,
        quiet_db: float = 10.0,
        noise_seed: int = 0,
    ) -> None:
        stats: dict[str, Any] = {}
        if not isinstance(model, DDSPAutoencoder):
            from .train import load_model

            model, bundle = load_model(model)
            stats = bundle.options.get("statistics", {})
        if model.sr != SR or model.hop != HOP:
            raise InvalidParameterError(
                f"the engine runs at {SR} Hz / hop {HOP}; this model has {model.sr} / {model.hop}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise InvalidParameterError(f"block_size={block_size!r}; use a positive number of samples (320 = 20 ms)")
        self.model = model.eval()
        self.block_size = block_size
        self.settings = {"pitch_shift": float(pitch_shift), "loudness_shift": float(loudness_shift),
                         "confidence_threshold": float(confidence_threshold), "quiet_db": float(quiet_db)}
        pitch_mean = stats.get("pitch_note", {}).get("mean")
        self.initial_f0 = float(440.0 * 2.0 ** ((pitch_mean - 69.0) / 12.0)) if pitch_mean is not None else 0.0
        self.noise_seed = int(noise_seed)
        self.delay_samples = self._delay()
        self.reset()

    def _delay(self) -> int:
        """Output delay that keeps the queue from running dry: the worst case over block phases."""
        worst = 0
        for k in range(1, HOP + 1):
            n = k * self.block_size
            ready = (n - YIN_RIGHT) // HOP + 1 if n >= YIN_RIGHT else 0
            worst = max(worst, n - ready * HOP)
        return worst

    @property
    def latency_ms(self) -> float:
        """Input-to-output latency: one block of buffering plus the analysis delay (64 ms at 20 ms blocks)."""
        return 1000.0 * (self.block_size + self.delay_samples) / SR

    def reset(self) -> None:
        """Forget all history (phase, GRU state, noise tail, input and output queues)."""
        pad = LOOKBACK_FRAMES * HOP
        self._history = np.zeros(pad, dtype=np.float32)  # global samples [-pad, n_in)
        self._history_start = -pad
        self._n_in = 0
        self._next_frame = 0
        self._out = np.zeros(self.delay_samples, dtype=np.float32)
        self._state: DDSPState | None = None
        self._last_f0 = self.initial_f0
        self._rng = np.random.default_rng(self.noise_seed)
        self.block_times: list[float] = []

    def _slice(self, start: int, stop: int) -> np.ndarray:
        a, b = start - self._history_start, stop - self._history_start
        return self._history[a:b]

    def process_block(self, pcm: np.ndarray) -> np.ndarray:
        """Process one block of ``block_size`` float samples at 16 kHz; returns ``block_size`` output samples.

        Raises
        ------
        InvalidAudioError
            A block of the wrong length, dtype or shape, or with NaN / infinite samples.
        """
        t0 = time.perf_counter()
        x = np.asarray(pcm)
        validate_audio(x, name="pcm", allow_multichannel=False)
        if x.shape[0] != self.block_size:
            raise InvalidAudioError(f"block has {x.shape[0]} samples; this engine takes {self.block_size}")
        self._history = np.concatenate([self._history, x.astype(np.float32)])
        self._n_in += self.block_size
        last = (self._n_in - YIN_RIGHT) // HOP if self._n_in >= YIN_RIGHT else -1
        if last >= self._next_frame:
            first = self._next_frame
            snippet = self._slice(first * HOP - YIN_LEFT, last * HOP + YIN_RIGHT).astype(np.float64)
            views = np.lib.stride_tricks.sliding_window_view(snippet, YIN_FRAME)[::HOP]
            f0, conf = yin_frames(views)
            off = YIN_LEFT - LOUD_HALF
            lviews = np.lib.stride_tricks.sliding_window_view(snippet[off:], 2 * LOUD_HALF)[::HOP][: f0.shape[0]]
            ld = loudness_frames(lviews)
            f0c, ldc, self._last_f0 = postprocess_controls(f0, conf, ld, last_f0=self._last_f0, **self.settings)
            count = f0c.shape[0]
            noise = self._rng.uniform(-1.0, 1.0, count * HOP).astype(np.float32)
            with torch.no_grad():
                audio = self._synthesize(torch.from_numpy(f0c)[None], torch.from_numpy(ldc)[None],
                                         torch.from_numpy(noise)[None])
            self._out = np.concatenate([self._out, audio[0].numpy().astype(np.float32)])
            self._next_frame = last + 1
            keep_from = (self._next_frame - LOOKBACK_FRAMES) * HOP  # history needed by the next frame
            cut = keep_from - self._history_start
            if cut > 0:
                self._history = self._history[cut:]
                self._history_start = keep_from
        out, self._out = self._out[: self.block_size], self._out[self.block_size:]
        self.block_times.append(time.perf_counter() - t0)
        return out

    def _synthesize(self, f0: torch.Tensor, ld: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Decoder step + synthesis with the carried state (inputs already validated: the GRU is called directly)."""
        dec = self.model.decoder
        if not isinstance(dec, RnnFcDecoder):
            audio, _, self._state = self.model.stream(f0, ld, self._state, noise=noise)
            return audio
        f0_in, ld_in = scale_inputs(f0, ld)
        f = dec.f0_mlp(f0_in.unsqueeze(-1))
        lo = dec.loudness_mlp(ld_in.unsqueeze(-1))
        h, dec_state = dec.gru(torch.cat([f, lo], dim=-1), None if self._state is None else self._state.decoder)
        raw = dec.dense(dec.out_mlp(torch.cat([h, f, lo], dim=-1)))
        controls = self.model.controls(f0, dec.split_outputs(raw))
        audio, _, (hs, ns, rs) = self.model.synthesize(controls, noise=noise, state=self._state)
        self._state = DDSPState(decoder=dec_state, harmonic=hs, noise=ns, reverb=rs)
        return audio

    def warmup(self, blocks: int = 10) -> None:
        """Run a few blocks of a test tone (first calls are much slower), then :meth:`reset`."""
        t = np.arange(blocks * self.block_size) / SR
        y = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
        for i in range(blocks):
            self.process_block(y[i * self.block_size: (i + 1) * self.block_size])
        self.reset()


def render_file(engine: DDSPEngine, audio: np.ndarray | str | os.PathLike[str], *, sr: int = SR) -> np.ndarray:
    """Stream a whole signal (or file) through ``engine`` block by block and return the output aligned with the input.

    ``sr`` is the rate of array input (ignored for files). The input is resampled to 16 kHz, padded with zeros to
    flush the engine, and the engine's delay is removed, so the result (as long as the 16 kHz input) equals
    ``render_offline(model, *offline_controls(y))`` with the same noise.
    """
    from .transfer import load_input

    y = load_input(audio, sr if not isinstance(audio, (str, os.PathLike)) else None)
    engine.reset()
    total = y.shape[0] + engine.delay_samples + engine.block_size
    n_blocks = -(-total // engine.block_size)
    padded = np.zeros(n_blocks * engine.block_size, dtype=np.float32)
    padded[: y.shape[0]] = y
    out = [engine.process_block(padded[i * engine.block_size: (i + 1) * engine.block_size]) for i in range(n_blocks)]
    return np.concatenate(out)[engine.delay_samples: engine.delay_samples + y.shape[0]]
