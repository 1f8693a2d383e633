"""The streaming decoding loop shared by the torch and the onnxruntime recognisers (imports no torch).

A :class:`StreamingSession` turns PCM chunks of any size into fbank frames, cuts them into decoding windows of
``(chunk_size - 1) * subsampling_rate + right_context + 1`` frames advancing by ``chunk_size * subsampling_rate``
(the windows overlap by the subsampling's right context), runs a :class:`Backend` (encoder chunk with attention and
convolution caches, CTC log-posteriors), extends a CTC prefix beam search and reports a partial result per chunk.
Endpointing follows WeNet's three rules on CTC blank posteriors (:class:`Endpointer`); at an endpoint (and at
:meth:`StreamingSession.finalize`) the segment's n-best is rescored by the attention decoder and becomes a final
result; with ``continuous_decoding`` the caches are reset and decoding goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import (
    AudioDTypeError,
    AudioShapeError,
    InvalidParameterError,
    NonFiniteAudioError,
)
from .search import ContextGraph, CtcPrefixBeamSearch, Hypothesis
from .tokenizer import Tokenizer

if TYPE_CHECKING:
    from .lm import TokenLM

__all__ = [
    "Backend",
    "DecodingConfig",
    "Endpointer",
    "RecognitionResult",
    "StreamingSession",
    "WordPiece",
    "as_float_chunk",
    "hypothesis_to_result",
]


@dataclass
class DecodingConfig:
    """Decoding and endpointing settings (WeNet runtime defaults).

    Attributes
    ----------
    chunk_size
        Encoder frames per streaming chunk (16 at 4x subsampling = 640 ms).
    num_left_chunks
        Chunks of attention history kept (< 0: all).
    beam_size, nbest
        CTC prefix beam width (also the per-frame top-k) and the n-best size rescored.
    rescoring
        Rescore final results with the attention decoder.
    ctc_weight, reverse_weight
        Rescoring weights (``reverse_weight`` only with a bidirectional decoder).
    blank_threshold
        A frame is silence when its blank posterior exceeds this.
    rule1_silence_s, rule2_trailing_silence_s, rule3_max_utterance_s
        Endpoint rules: silence with nothing decoded; trailing silence after speech; maximal segment length.
    continuous_decoding
        Go on after an endpoint (caches reset, finals kept); otherwise the session finishes at the first one.
    hotwords, hotword_score
        Texts to boost (tokenized with the recogniser's tokenizer) and the boost per matched token.
    lm_weight, lm_bonus
        Shallow fusion with the recogniser's token n-gram language model, when it has one
        (:mod:`audioforge.asr.lm`): weight of ``ln P_lm`` and score bonus per token; ``lm_weight=0`` turns it off.
    """

    chunk_size: int = 16
    num_left_chunks: int = -1
    beam_size: int = 10
    nbest: int = 10
    rescoring: bool = True
    ctc_weight: float = 0.5
    reverse_weight: float = 0.0
    blank_threshold: float = 0.8
    rule1_silence_s: float = 5.0
    rule2_trailing_silence_s: float = 1.0
    rule3_max_utterance_s: float = 20.0
    continuous_decoding: bool = True
    hotwords: list[str] = field(default_factory=list)
    hotword_score: float = 3.0
    lm_weight: float = 0.5
    lm_bonus: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise InvalidParameterError(f"chunk_size must be an integer >= 1, got {self.chunk_size!r}")
        for name in ("beam_size", "nbest"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0.0 < self.blank_threshold < 1.0:
            raise InvalidParameterError(f"blank_threshold must be in (0, 1), got {self.blank_threshold}")
        for name in ("rule1_silence_s", "rule2_trailing_silence_s", "rule3_max_utterance_s"):
            if not getattr(self, name) > 0:
                raise InvalidParameterError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        for name in ("lm_weight", "lm_bonus"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidParameterError(f"{name} must be a finite number, got {value!r}")
        if self.lm_weight < 0:
            raise InvalidParameterError(f"lm_weight must be >= 0 (0 turns the language model off), got "
                                        f"{self.lm_weight}")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DecodingConfig:
        """Build from a dict, rejecting unknown keys."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidParameterError(f"unknown decoding settings {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class WordPiece:
    """A word with its start and end time in seconds (from the stream's start)."""

    word: str
    start: float
    end: float


@dataclass
class RecognitionResult:
    """A partial or final recognition result.

    Attributes
    ----------
    text
        Best hypothesis.
    nbest
        ``[(text, score), ...]`` best first.
    words
        Word timestamps of the best hypothesis.
    tokens
        Token ids of the best hypothesis.
    final
        True for an endpointed / finalized segment (rescored when enabled).
    endpoint_rule
        Which endpoint rule closed the segment (``"rule1"``, ``"rule2"``, ``"rule3"``, ``"end"``), or None.
    start, end
        Segment span in seconds from the stream's start.
    timings
        ``audio_s``, ``compute_s`` and ``rtf`` (compute / audio).
    """

    text: str
    nbest: list[tuple[str, float]] = field(default_factory=list)
    words: list[WordPiece] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    final: bool = False
    endpoint_rule: str | None = None
    start: float = 0.0
    end: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


class Backend(Protocol):
    """What a recogniser's model runtime provides to :class:`StreamingSession`."""

    subsampling_rate: int
    right_context: int

    def reset(self) -> None:
        """Drop the caches and the stored encoder output (a new segment)."""

    def forward_chunk(self, feats: np.ndarray) -> np.ndarray:
        """Encode one window ``(frames, bins)``; store the encoder output; return CTC log-probs ``(k, vocab)``."""

    def rescore(self, hyps: Sequence[Hypothesis], ctc_weight: float, reverse_weight: float) -> list[Hypothesis]:
        """Rescore ``hyps`` against the stored encoder output of the segment."""


class FeatureStream(Protocol):
    """An online fbank: float chunks in, ``(k, bins)`` frames out."""

    def accept_waveform(self, chunk: Any) -> Any:
        """Append samples; return new frames."""


def as_float_chunk(chunk: Any, name: str = "chunk") -> np.ndarray:
    """A 1-D float32 numpy chunk from float or integer PCM (numpy, torch, bytes of int16, list)."""
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        if len(chunk) % 2:
            raise AudioShapeError(f"{name} has {len(chunk)} bytes; int16 PCM needs an even number")
        chunk = np.frombuffer(chunk, dtype="<i2")
    if hasattr(chunk, "detach"):
        chunk = chunk.detach().cpu().numpy()
    arr = np.asarray(chunk)
    if arr.dtype == object or arr.dtype.kind not in "fiub":
        raise AudioDTypeError(f"{name} has dtype {arr.dtype}; expected float samples or integer PCM")
    if arr.ndim != 1:
        raise AudioShapeError(f"{name} has shape {arr.shape}; expected mono samples (n,)")
    if arr.dtype.kind in "iub":
        # audioforge.audio.pcm_to_float's type check imports torch; this path must stay torch-free
        if arr.dtype not in (np.int8, np.int16, np.int32, np.uint8):
            raise AudioDTypeError(f"cannot convert PCM of dtype {arr.dtype}; expected int8, uint8, int16 or int32")
        if arr.dtype == np.uint8:
            arr = (arr.astype(np.float64) - 128.0) / 128.0
        else:
            arr = arr.astype(np.float64) / float(2 ** (np.iinfo(arr.dtype).bits - 1))
    arr = arr.astype(np.float32, copy=False)
    if arr.size and not np.isfinite(arr).all():
        raise NonFiniteAudioError(f"{name} contains NaN or infinite samples; clean or clip the signal first")
    return arr


def hypothesis_to_result(
    hyps: Sequence[Hypothesis],
    tokenizer: Tokenizer,
    *,
    frame_s: float,
    time_offset: float = 0.0,
    final: bool = False,
) -> RecognitionResult:
    """A :class:`RecognitionResult` from an n-best list (``frame_s``: seconds per encoder frame)."""
    if not hyps:
        return RecognitionResult("", final=final, start=time_offset, end=time_offset)
    best = hyps[0]
    words = []
    for word, first, last in tokenizer.words(list(best.tokens)):
        if first < len(best.times) and last < len(best.times):
            start = time_offset + best.times[first] * frame_s
            end = time_offset + (best.times[last] + 1) * frame_s
            words.append(WordPiece(word, round(start, 6), round(end, 6)))
    return RecognitionResult(
        text=tokenizer.decode(best.tokens),
        nbest=[(tokenizer.decode(h.tokens), float(h.score)) for h in hyps],
        words=words,
        tokens=list(best.tokens),
        final=final,
    )


class Endpointer:
    """WeNet's endpoint rules over CTC blank posteriors.

    Parameters
    ----------
    config
        Thresholds and rule durations.
    frame_s
        Seconds per encoder frame (``subsampling_rate * frame_shift``).
    """

    def __init__(self, config: DecodingConfig, frame_s: float) -> None:
        self.config = config
        self.frame_s = frame_s
        self.reset()

    def reset(self) -> None:
        """A new segment."""
        self.num_frames = 0
        self.trailing_silence = 0

    def update(self, blank_probs: np.ndarray, decoded_something: bool) -> str | None:
        """Account ``(k,)`` blank posteriors of new frames; return the rule that fires (or None)."""
        for p in np.asarray(blank_probs, dtype=np.float64).reshape(-1):
            self.num_frames += 1
            self.trailing_silence = self.trailing_silence + 1 if p > self.config.blank_threshold else 0
        silence = self.trailing_silence * self.frame_s + 1e-9
        length = self.num_frames * self.frame_s + 1e-9
        if not decoded_something and silence >= self.config.rule1_silence_s:
            return "rule1"
        if decoded_something and silence >= self.config.rule2_trailing_silence_s:
            return "rule2"
        if length >= self.config.rule3_max_utterance_s:
            return "rule3"
        return None


class StreamingSession:
    """One audio stream being recognised (create it with ``Recognizer.stream()``).

    ``accept_waveform`` takes 16 kHz mono PCM chunks of any size (float in [-1, 1], int16 arrays or int16 bytes)
    and returns the results of the decoding chunks they completed: a partial result per chunk, and a final one
    when an endpoint fires. :meth:`finalize` decodes the rest and returns the last final result. All final results
    are kept in :attr:`finals`.
    """

    def __init__(
        self,
        backend: Backend,
        tokenizer: Tokenizer,
        features: FeatureStream,
        config: DecodingConfig,
        *,
        frame_shift_s: float = 0.01,
        sample_rate: int = 16000,
        context_graph: ContextGraph | None = None,
        rescore_reverse_weight: float = 0.0,
        lm: TokenLM | None = None,
    ) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.features = features
        self.config = config
        self.sample_rate = sample_rate
        self.frame_shift_s = frame_shift_s
        self.rate = backend.subsampling_rate
        self.context = backend.right_context + 1
        self.window = (config.chunk_size - 1) * self.rate + self.context
        self.stride = config.chunk_size * self.rate
        self.frame_s = self.rate * frame_shift_s
        self.searcher = CtcPrefixBeamSearch(config.beam_size, tokenizer.blank_id, context_graph, lm)
        self.endpointer = Endpointer(config, self.frame_s)
        self.reverse_weight = rescore_reverse_weight
        self.finals: list[RecognitionResult] = []
        self.finished = False
        self._buffer = np.zeros((0, 0), dtype=np.float32)
        self._consumed = 0  # feature frames dropped from the buffer since the stream started
        self._segment_start = 0  # feature frame where the current segment starts
        self._samples = 0
        self._compute = 0.0
        self._new_segment()

    def _new_segment(self) -> None:
        self.backend.reset()
        self.searcher.reset()
        self.endpointer.reset()
        self._segment_start = self._consumed

    @property
    def text(self) -> str:
        """The final texts so far, joined by spaces."""
        return " ".join(r.text for r in self.finals if r.text)

    def _timings(self) -> dict[str, float]:
        audio = self._samples / self.sample_rate
        return {"audio_s": audio, "compute_s": self._compute, "rtf": self._compute / audio if audio else 0.0}

    def _append(self, frames: Any) -> None:
        arr = frames.detach().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
        if arr.shape[0] == 0:
            return
        self._buffer = arr if self._buffer.size == 0 else np.concatenate([self._buffer, arr])

    def _decode_window(self, feats: np.ndarray) -> str | None:
        log_probs = self.backend.forward_chunk(feats)
        self.searcher.search(log_probs)
        best = self.searcher.hypotheses(1)
        decoded = bool(best and best[0].tokens)
        return self.endpointer.update(np.exp(log_probs[:, self.tokenizer.blank_id]), decoded)

    def _partial(self) -> RecognitionResult:
        hyps = self.searcher.hypotheses(self.config.nbest)
        res = hypothesis_to_result(hyps, self.tokenizer, frame_s=self.frame_s, time_offset=self._offset_s())
        res.start = self._offset_s()
        res.end = res.start + self.searcher.num_frames * self.frame_s
        res.timings = self._timings()
        return res

    def _offset_s(self) -> float:
        return self._segment_start * self.frame_shift_s

    def _final(self, rule: str) -> RecognitionResult:
        hyps = self.searcher.hypotheses(self.config.nbest, final=True)
        if self.config.rescoring and hyps and self.searcher.num_frames:
            hyps = self.backend.rescore(hyps, self.config.ctc_weight, self.reverse_weight)
        res = hypothesis_to_result(hyps, self.tokenizer, frame_s=self.frame_s, time_offset=self._offset_s(), final=True)
        res.endpoint_rule = rule
        res.start = self._offset_s()
        res.end = res.start + self.searcher.num_frames * self.frame_s
        res.timings = self._timings()
        self.finals.append(res)
        return res

    def accept_waveform(self, chunk: Any) -> list[RecognitionResult]:
        """Feed PCM samples; return the partial (and final, at endpoints) results of the chunks completed."""
        if self.finished:
            raise InvalidParameterError(
                "this stream ended at an endpoint (continuous_decoding=False); start a new stream for more audio"
            )
        arr = as_float_chunk(chunk)
        start = time.perf_counter()
        self._samples += arr.shape[0]
        self._append(self.features.accept_waveform(arr))
        results: list[RecognitionResult] = []
        while self._buffer.shape[0] >= self.window and not self.finished:
            rule = self._decode_window(self._buffer[: self.window])
            self._buffer = self._buffer[self.stride :]
            self._consumed += self.stride
            self._compute += time.perf_counter() - start
            start = time.perf_counter()
            results.append(self._partial())
            if rule is not None:
                results.append(self._final(rule))
                if self.config.continuous_decoding:
                    self._new_segment()
                else:
                    self.finished = True
        self._compute += time.perf_counter() - start
        return results

    def finalize(self) -> RecognitionResult:
        """Decode the remaining frames (a last, shorter chunk), rescore, and return the segment's final result."""
        start = time.perf_counter()
        if not self.finished:
            if self._buffer.shape[0] >= self.context:
                self._decode_window(self._buffer)
                self._consumed += self._buffer.shape[0]
                self._buffer = self._buffer[:0]
            self._compute += time.perf_counter() - start
            self.finished = True
            return self._final("end")
        return self.finals[-1] if self.finals else RecognitionResult("", final=True)
