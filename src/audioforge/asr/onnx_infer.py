"""Recognition on onnxruntime only (no torch import): :class:`OnnxRecognizer` over an exported folder.

The folder is what :func:`audioforge.asr.export.export_recognizer_onnx` writes (``encoder.onnx``, ``ctc.onnx``,
``decoder.onnx``, ``asr_config.json``). Features come from :class:`NumpyFbank`, a numpy re-implementation of the
Kaldi fbank WeNet uses (povey window, preemphasis 0.97, DC removal, snipped edges, power spectrum, Kaldi mel banks,
natural log floored at float32 epsilon; no dither, no energy), equal to :func:`audioforge.asr.frontend.compute_fbank`
to float32 rounding. Decoding (CTC prefix beam search, endpointing, rescoring) is the shared, torch-free code of
:mod:`audioforge.asr.streaming` and :mod:`audioforge.asr.search`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import validate_sample_rate
from ..deploy.runtime import OrtSession
from ..errors import CheckpointError, EmptyAudioError, InvalidParameterError, UnsupportedSampleRateError
from .lm import LM_FILE, NgramLM, TokenLM, fusion_lm
from .search import ContextGraph, Hypothesis, combine_rescoring_scores, ctc_prefix_beam_search, pad_hyps_with_sos
from .streaming import DecodingConfig, RecognitionResult, StreamingSession, as_float_chunk, hypothesis_to_result
from .tokenizer import Tokenizer, load_tokenizer

__all__ = ["NumpyFbank", "OnnxBackend", "OnnxRecognizer"]

_EPS = float(np.finfo(np.float32).eps)
_PCM_SCALE = 32768.0


def _mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


class NumpyFbank:
    """WeNet's Kaldi fbank in numpy, batch (:meth:`compute`) and streaming (:meth:`accept_waveform`).

    Parameters
    ----------
    num_mel_bins, frame_length, frame_shift, sample_rate
        As :class:`~audioforge.asr.frontend.FbankConfig` (``dither`` must be 0, ``energy_floor`` is unused).
    """

    def __init__(
        self,
        num_mel_bins: int = 80,
        frame_length: float = 25.0,
        frame_shift: float = 10.0,
        sample_rate: int = 16000,
        dither: float = 0.0,
        energy_floor: float = 0.0,
    ) -> None:
        if dither != 0.0:
            raise InvalidParameterError("NumpyFbank implements inference features only (dither=0)")
        self.size = int(sample_rate * 0.001 * frame_length)
        self.shift = int(sample_rate * 0.001 * frame_shift)
        self.n_fft = 1 << (self.size - 1).bit_length()
        n = np.arange(self.size, dtype=np.float64)
        self.window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / (self.size - 1))) ** 0.85
        nyquist = 0.5 * sample_rate
        mel_low, mel_high = float(_mel(20.0)), float(_mel(nyquist))
        delta = (mel_high - mel_low) / (num_mel_bins + 1)
        edges = mel_low + np.arange(num_mel_bins + 2, dtype=np.float64) * delta
        left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
        fft_mel = _mel((sample_rate / self.n_fft) * np.arange(self.n_fft // 2, dtype=np.float64))[None, :]
        up = (fft_mel - left) / (center - left)
        down = (right - fft_mel) / (right - center)
        banks = np.where((fft_mel > left) & (fft_mel < right), np.where(fft_mel <= center, up, down), 0.0)
        self.banks = np.concatenate([banks, np.zeros((num_mel_bins, 1))], axis=1).T.astype(np.float32)
        self.dim = num_mel_bins
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self._pending = np.zeros(0, dtype=np.float32)
        self.num_frames_ready = 0

    def frames(self, samples: np.ndarray) -> np.ndarray:
        """Features of every complete frame of ``samples`` (already scaled) -> ``(k, bins)``."""
        k = 0 if samples.shape[0] < self.size else 1 + (samples.shape[0] - self.size) // self.shift
        if k == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        idx = np.arange(k)[:, None] * self.shift + np.arange(self.size)[None, :]
        x = samples[idx].astype(np.float32)
        x = x - x.mean(axis=1, keepdims=True)
        prev = np.concatenate([x[:, :1], x[:, :-1]], axis=1)
        x = (x - np.float32(0.97) * prev) * self.window.astype(np.float32)
        spec = np.fft.rfft(x, n=self.n_fft, axis=1)
        power = (spec.real**2 + spec.imag**2).astype(np.float32)
        return np.log(np.maximum(power @ self.banks, _EPS)).astype(np.float32)

    def compute(self, waveform: np.ndarray) -> np.ndarray:
        """Fbank of a float waveform in [-1, 1]."""
        return self.frames(np.asarray(waveform, dtype=np.float32) * np.float32(_PCM_SCALE))

    def accept_waveform(self, chunk: np.ndarray) -> np.ndarray:
        """Append float samples; return the newly completed frames."""
        data = np.concatenate([self._pending, np.asarray(chunk, dtype=np.float32) * np.float32(_PCM_SCALE)])
        out = self.frames(data)
        used = out.shape[0] * self.shift
        self._pending = data[used:]
        self.num_frames_ready += out.shape[0]
        return out


def _resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """soxr "HQ" resampling, as :func:`audioforge.audio.resample` (whose input check imports torch)."""
    import soxr

    return np.asarray(soxr.resample(samples, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


class OnnxBackend:
    """Encoder/CTC/decoder sessions with WeNet's fixed-size cache protocol (see :mod:`audioforge.asr.export`)."""

    def __init__(self, encoder: OrtSession, ctc: OrtSession, decoder: OrtSession, meta: dict[str, Any]) -> None:
        self.encoder, self.ctc, self.decoder = encoder, ctc, decoder
        self.meta = meta
        self.subsampling_rate = int(meta["subsampling_rate"])
        self.right_context = int(meta["right_context"])
        self.chunk_size = int(meta["chunk_size"])
        self.required = self.chunk_size * int(meta["left_chunks"])
        self.sos, self.eos = int(meta["sos"]), int(meta["eos"])
        self.bidirectional = bool(int(meta["is_bidirectional_decoder"]))
        att = next(s for s in encoder.inputs if s.name == "att_cache")
        cnn = next(s for s in encoder.inputs if s.name == "cnn_cache")
        d_k2 = att.shape[3]
        self.att_shape = (int(meta["num_blocks"]), int(meta["head"]), self.required, int(d_k2))
        self.cnn_shape = (int(meta["num_blocks"]), 1, int(meta["output_size"]), int(cnn.shape[3]))
        self.reset()

    def reset(self) -> None:
        """Zero caches, offset 0, no stored output."""
        self.att_cache = np.zeros(self.att_shape, dtype=np.float32)
        self.cnn_cache = np.zeros(self.cnn_shape, dtype=np.float32)
        self.offset = 0
        self.outputs: list[np.ndarray] = []

    def forward_chunk(self, feats: np.ndarray) -> np.ndarray:
        """One window of features -> CTC log-probs ``(k, vocab)``."""
        mask = np.ones((1, 1, self.required + self.chunk_size), dtype=bool)
        mask[:, :, : max(self.required - self.offset, 0)] = False
        out = self.encoder.run(
            {
                "chunk": np.ascontiguousarray(feats[None], dtype=np.float32),
                "offset": np.array(self.offset, dtype=np.int64),
                "required_cache_size": np.array(self.required, dtype=np.int64),
                "att_cache": self.att_cache,
                "cnn_cache": self.cnn_cache,
                "att_mask": mask,  # longer than cache + a short last chunk: the attention uses its first columns
            }
        )
        ys = out["output"]
        self.att_cache, self.cnn_cache = out["r_att_cache"], out["r_cnn_cache"]
        self.offset += ys.shape[1]
        self.outputs.append(ys)
        return self.ctc.run({"hidden": ys})["probs"][0]

    def encoder_output(self) -> np.ndarray:
        """The segment's encoder output ``(1, T, d)``."""
        if not self.outputs:
            return np.zeros((1, 0, self.cnn_shape[2]), dtype=np.float32)
        return np.concatenate(self.outputs, axis=1)

    def rescore(self, hyps: Sequence[Hypothesis], ctc_weight: float, reverse_weight: float) -> list[Hypothesis]:
        """Attention rescoring with ``decoder.onnx``."""
        if not hyps:
            return []
        rows, lens = pad_hyps_with_sos([h.tokens for h in hyps], self.sos, self.eos)
        out = self.decoder.run(
            {
                "hyps": rows,
                "hyps_lens": lens,
                "encoder_out": self.encoder_output(),
                "reverse_weight": np.array(reverse_weight, dtype=np.float32),
            }
        )
        rw = reverse_weight if self.bidirectional else 0.0
        return combine_rescoring_scores(hyps, out["score"], out["r_score"], ctc_weight=ctc_weight, reverse_weight=rw)


class OnnxRecognizer:
    """The streaming recogniser on onnxruntime: same API as :class:`~audioforge.asr.infer.Recognizer`.

    ``transcribe`` decodes chunk by chunk with the exported chunk size and left chunks (the only mode the exported
    encoder supports), so it equals ``Recognizer.transcribe(..., simulate_streaming=True)`` up to float rounding.

    Parameters
    ----------
    folder
        An export folder.
    intra_op_num_threads
        onnxruntime threads per session.
    **overrides
        Decoding settings to change (``chunk_size`` and ``num_left_chunks`` are fixed by the export).
    """

    def __init__(self, folder: str | os.PathLike[str], *, intra_op_num_threads: int = 1, **overrides: Any) -> None:
        root = Path(folder)
        cfg_path = root / "asr_config.json"
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{root} is not an ASR ONNX export: cannot read {cfg_path.name}: {exc}") from exc
        fixed = {"chunk_size", "num_left_chunks"} & set(overrides)
        if fixed:
            raise InvalidParameterError(f"{sorted(fixed)} are fixed by the export; export again to change them")
        self.tokenizer: Tokenizer = load_tokenizer(cfg["tokenizer"])
        self.frontend = dict(cfg["frontend"])
        self.config = DecodingConfig.from_dict({**cfg["decoding"], **overrides})
        self.meta = dict(cfg["metadata"])
        sessions = {
            name: OrtSession(root / f"{name}.onnx", intra_op_num_threads=intra_op_num_threads)
            for name in ("encoder", "ctc", "decoder")
        }
        self.backend_args = (sessions["encoder"], sessions["ctc"], sessions["decoder"], self.meta)
        self.sample_rate = int(self.frontend.get("sample_rate", 16000))
        self.frame_shift_s = float(self.frontend.get("frame_shift", 10.0)) / 1000.0
        self.frame_s = int(self.meta["subsampling_rate"]) * self.frame_shift_s
        self.lm = NgramLM.from_arpa(root / LM_FILE) if (root / LM_FILE).is_file() else None
        self._fusion: TokenLM | None = None

    def fusion(self) -> TokenLM | None:
        """The export's language model as the beam search uses it (None without one or with ``lm_weight == 0``)."""
        cfg = self.config
        self._fusion = fusion_lm(self.lm, self.tokenizer.symbols, cfg.lm_weight, cfg.lm_bonus, self._fusion)
        return self._fusion

    def _fbank(self) -> NumpyFbank:
        return NumpyFbank(**self.frontend)

    def context_graph(self, hotwords: Sequence[str] | None = None) -> ContextGraph | None:
        """The hotword trie (default: the configured hotwords), or None."""
        words = list(self.config.hotwords if hotwords is None else hotwords)
        if not words:
            return None
        return ContextGraph([self.tokenizer.encode(w) for w in words], self.config.hotword_score)

    def stream(self, sr: int = 16000, *, hotwords: Sequence[str] | None = None) -> StreamingSession:
        """A new streaming session (16 kHz PCM)."""
        rate = validate_sample_rate(sr)
        if rate != self.sample_rate:
            raise UnsupportedSampleRateError(f"streams must be {self.sample_rate} Hz PCM, got sr={rate}")
        return StreamingSession(
            OnnxBackend(*self.backend_args),
            self.tokenizer,
            self._fbank(),
            self.config,
            frame_shift_s=self.frame_shift_s,
            sample_rate=self.sample_rate,
            context_graph=self.context_graph(hotwords),
            rescore_reverse_weight=self.config.reverse_weight,
            lm=self.fusion(),
        )

    def transcribe(self, audio: Any, sr: int, *, hotwords: Sequence[str] | None = None) -> RecognitionResult:
        """Recognise a whole recording (resampled to 16 kHz) chunk by chunk, then rescore."""
        start = time.perf_counter()
        rate = validate_sample_rate(sr)
        samples = as_float_chunk(audio, "audio")
        if samples.shape[0] == 0:
            raise EmptyAudioError("audio has no samples")
        if rate != self.sample_rate:
            samples = _resample(samples, rate, self.sample_rate)
        feats = self._fbank().compute(samples)
        backend = OnnxBackend(*self.backend_args)
        rate_sub, context = backend.subsampling_rate, backend.right_context + 1
        window = (backend.chunk_size - 1) * rate_sub + context
        stride = backend.chunk_size * rate_sub
        logps = [
            backend.forward_chunk(feats[cur : cur + window]) for cur in range(0, feats.shape[0] - context + 1, stride)
        ]
        cfg = self.config
        if logps:
            logp = np.concatenate(logps)
            hyps = ctc_prefix_beam_search(
                logp, cfg.beam_size, nbest=cfg.nbest, context_graph=self.context_graph(hotwords), lm=self.fusion()
            )
            if cfg.rescoring and hyps:
                hyps = backend.rescore(hyps, cfg.ctc_weight, cfg.reverse_weight)
            result = hypothesis_to_result(hyps, self.tokenizer, frame_s=self.frame_s, final=True)
            result.end = logp.shape[0] * self.frame_s
        else:
            result = RecognitionResult("", final=True)
        result.endpoint_rule = "end"
        audio_s = samples.shape[0] / self.sample_rate
        compute = time.perf_counter() - start
        result.timings = {"audio_s": audio_s, "compute_s": compute, "rtf": compute / audio_s}
        return result
