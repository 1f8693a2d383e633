"""The user-facing ASR object: :class:`Recognizer` (offline ``transcribe`` and streaming ``stream()``) on torch.

>>> rec = Recognizer.from_bundle("path/to/asr_bundle")  # doctest: +SKIP
>>> rec.transcribe(audio, sr=44100).text  # doctest: +SKIP
>>> session = rec.stream()  # doctest: +SKIP
>>> for pcm in chunks: partials = session.accept_waveform(pcm)  # doctest: +SKIP
>>> session.finalize().text  # doctest: +SKIP

Offline decoding: resample to 16 kHz (soxr; the result says nothing else was changed), fbank, full-context (or
chunked) encoder, CTC prefix beam search, attention rescoring. Streaming decoding is described in
:mod:`audioforge.asr.streaming`; for any chunking of the input it gives the same encoder outputs and hypotheses as
:meth:`Recognizer.transcribe` with ``simulate_streaming=True``.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..audio import resample, validate_sample_rate
from ..bundle import Bundle
from ..errors import CheckpointError, EmptyAudioError, InvalidParameterError, UnsupportedSampleRateError
from .frontend import FbankConfig, StreamingFbank, compute_fbank
from .lm import LM_FILE, NgramLM, TokenLM, fusion_lm, lm_from_any
from .model import U2Model, build_u2_model
from .search import ContextGraph, Hypothesis, attention_rescoring, ctc_prefix_beam_search
from .streaming import (
    DecodingConfig,
    RecognitionResult,
    StreamingSession,
    as_float_chunk,
    hypothesis_to_result,
)
from .tokenizer import Tokenizer, load_tokenizer

__all__ = ["ASR_ARCHITECTURE", "ASR_TASK", "Recognizer", "TorchBackend"]

ASR_TASK = "asr"
ASR_ARCHITECTURE = "u2"


class TorchBackend:
    """Streaming encoder + CTC on a torch :class:`U2Model` (caches kept here), and attention rescoring."""

    def __init__(self, model: U2Model, config: DecodingConfig) -> None:
        self.model = model
        self.subsampling_rate = model.encoder.subsampling_rate
        self.right_context = model.encoder.right_context
        left = config.num_left_chunks
        self.required_cache_size = config.chunk_size * left if left >= 0 else -1
        self.reset()

    def reset(self) -> None:
        """Drop caches and the stored encoder output."""
        self.att_cache: torch.Tensor | None = None
        self.cnn_cache: torch.Tensor | None = None
        self.offset = 0
        self.outputs: list[torch.Tensor] = []

    def forward_chunk(self, feats: np.ndarray) -> np.ndarray:
        """Encode one window of fbank frames; return CTC log-probs ``(k, vocab)``."""
        xs = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).unsqueeze(0)
        with torch.no_grad():
            ys, self.att_cache, self.cnn_cache = self.model.encoder.forward_chunk(
                xs, self.offset, self.required_cache_size, self.att_cache, self.cnn_cache
            )
            logp = self.model.ctc_log_softmax(ys)[0]
        self.offset += ys.size(1)
        self.outputs.append(ys)
        return logp.numpy()

    def encoder_output(self) -> torch.Tensor:
        """The segment's encoder output so far ``(1, T, d)``."""
        if not self.outputs:
            return torch.zeros((1, 0, self.model.encoder.output_size()))
        return torch.cat(self.outputs, dim=1)

    def rescore(self, hyps: Sequence[Hypothesis], ctc_weight: float, reverse_weight: float) -> list[Hypothesis]:
        """Attention rescoring of ``hyps`` against the segment's encoder output."""
        return attention_rescoring(
            self.model, hyps, self.encoder_output(), ctc_weight=ctc_weight, reverse_weight=reverse_weight
        )


class Recognizer:
    """Speech recogniser on a :class:`~audioforge.asr.model.U2Model`.

    Parameters
    ----------
    model
        The model (put in eval mode).
    tokenizer
        Its tokenizer (``vocab_size`` must match).
    frontend
        Fbank settings (defaults: WeNet's 80-bin fbank, dither 0).
    config
        Decoding settings; ``reverse_weight`` defaults to the model's when left at 0.
    model_config
        The configuration dict that rebuilds the model (needed by :meth:`to_bundle`; taken from
        ``model.model_config`` when the model came from :func:`~audioforge.asr.model.build_u2_model`).
    lm
        A token n-gram language model for shallow fusion (:class:`~audioforge.asr.lm.NgramLM`, or an ARPA path or
        bytes) over this tokenizer's symbols; ``config.lm_weight`` and ``config.lm_bonus`` weigh it.
    """

    def __init__(
        self,
        model: U2Model,
        tokenizer: Tokenizer,
        *,
        frontend: FbankConfig | None = None,
        config: DecodingConfig | None = None,
        model_config: dict[str, Any] | None = None,
        lm: NgramLM | str | os.PathLike[str] | bytes | None = None,
    ) -> None:
        if not isinstance(model, U2Model):
            raise InvalidParameterError(f"model must be a U2Model, got {type(model).__name__}")
        if tokenizer.vocab_size != model.vocab_size:
            raise CheckpointError(
                f"the tokenizer has {tokenizer.vocab_size} symbols but the model outputs {model.vocab_size}"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.frontend = frontend or FbankConfig()
        if self.frontend.dither != 0.0:
            raise InvalidParameterError("inference needs dither=0 in the front end (dither is for training)")
        self.config = config or DecodingConfig(reverse_weight=model.reverse_weight)
        self.model_config = model_config if model_config is not None else getattr(model, "model_config", None)
        self.lm = lm_from_any(lm) if lm is not None else None
        self._fusion: TokenLM | None = None

    # ---------------------------------------------------------------------------------------------------- bundles

    def to_bundle(self, *, metrics: dict[str, Any] | None = None) -> Bundle:
        """A :class:`~audioforge.bundle.Bundle` (config, weights, symbols, tokenizer, front end, decoding)."""
        if self.model_config is None:
            raise InvalidParameterError("to_bundle needs model_config (build the model with build_u2_model)")
        return Bundle(
            task=ASR_TASK,
            architecture=ASR_ARCHITECTURE,
            hyperparameters=copy.deepcopy(self.model_config),
            state_dict={k: v.detach().clone() for k, v in self.model.state_dict().items()},
            frontend=self.frontend.to_dict(),
            labels=list(self.tokenizer.symbols),
            metrics=dict(metrics or {}),
            options={"tokenizer": self.tokenizer.to_json(), "decoding": self.config.to_dict()},
            extra_files={LM_FILE: self.lm.arpa_bytes(compress=True)} if self.lm is not None else {},
        )

    @classmethod
    def from_bundle(cls, bundle: Bundle | str | os.PathLike[str], **overrides: Any) -> Recognizer:
        """Load from a bundle (object, folder or shipped name); ``overrides`` replace decoding settings."""
        if not isinstance(bundle, Bundle):
            bundle = Bundle.load(bundle)
        if bundle.task != ASR_TASK:
            raise CheckpointError(f"bundle task is {bundle.task!r}, not {ASR_TASK!r}")
        model = build_u2_model(bundle.hyperparameters)
        bundle.check_state_dict(model.state_dict())
        model.load_state_dict(bundle.state_dict)
        if "tokenizer" not in bundle.options:
            raise CheckpointError("the ASR bundle has no tokenizer in its options")
        tokenizer = load_tokenizer(bundle.options["tokenizer"])
        if tokenizer.symbols != list(bundle.labels):
            raise CheckpointError("the bundle's labels differ from its tokenizer's symbols")
        decoding = {**(bundle.options.get("decoding") or {}), **overrides}
        lm = bundle.extra_files.get(LM_FILE)
        return cls(
            model,
            tokenizer,
            frontend=FbankConfig.from_dict(bundle.frontend),
            config=DecodingConfig.from_dict(decoding),
            model_config=bundle.hyperparameters,
            lm=NgramLM.from_arpa_bytes(lm, source=f"{bundle.path or 'bundle'}/{LM_FILE}") if lm is not None else None,
        )

    # ---------------------------------------------------------------------------------------------------- decoding

    def context_graph(self, hotwords: Sequence[str] | None = None) -> ContextGraph | None:
        """The hotword trie of ``hotwords`` (default: the configured ones), or None."""
        words = list(self.config.hotwords if hotwords is None else hotwords)
        if not words:
            return None
        return ContextGraph([self.tokenizer.encode(w) for w in words], self.config.hotword_score)

    def fusion(self) -> TokenLM | None:
        """The language model as the beam search uses it (None without one or with ``lm_weight == 0``)."""
        cfg = self.config
        self._fusion = fusion_lm(self.lm, self.tokenizer.symbols, cfg.lm_weight, cfg.lm_bonus, self._fusion)
        return self._fusion

    @property
    def frame_s(self) -> float:
        """Seconds per encoder frame."""
        return self.model.encoder.subsampling_rate * self.frontend.frame_shift / 1000.0

    def _prepare(self, audio: Any, sr: Any) -> np.ndarray:
        rate = validate_sample_rate(sr)
        arr = as_float_chunk(audio, "audio")
        if arr.shape[0] == 0:
            raise EmptyAudioError("audio has no samples")
        if rate != self.frontend.sample_rate:
            arr = resample(arr, rate, self.frontend.sample_rate)
        return arr

    def features(self, audio: Any, sr: int) -> torch.Tensor:
        """Fbank frames ``(T, 80)`` of ``audio`` (resampled to the model rate)."""
        return compute_fbank(self._prepare(audio, sr), self.frontend)

    def _encode_features(self, feats: torch.Tensor, streaming: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
        enc = self.model.encoder
        if feats.shape[0] < enc.right_context + 1:
            return None
        with torch.no_grad():
            xs = feats.unsqueeze(0)
            if streaming:
                out, _ = enc.forward_chunk_by_chunk(xs, self.config.chunk_size, self.config.num_left_chunks)
            else:
                out, _ = enc(xs, torch.tensor([xs.size(1)]), -1, -1)
            return out, self.model.ctc_log_softmax(out)[0]

    def encode(
        self, audio: Any, sr: int, *, simulate_streaming: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Encoder output ``(1, T, d)`` and CTC log-posteriors ``(T, vocab)`` of a recording (full context, or chunk by
        chunk as :meth:`stream` computes them); None when it is shorter than the encoder's context."""
        return self._encode_features(self.features(audio, sr), simulate_streaming)

    def transcribe(
        self,
        audio: Any,
        sr: int,
        *,
        simulate_streaming: bool = False,
        hotwords: Sequence[str] | None = None,
    ) -> RecognitionResult:
        """Recognise a whole recording.

        Parameters
        ----------
        audio
            Mono samples: float in [-1, 1] or integer PCM (numpy, torch, int16 bytes).
        sr
            Its sample rate; other rates than 16 kHz are resampled with soxr.
        simulate_streaming
            Encode chunk by chunk with the streaming settings (the results then equal :meth:`stream`'s), instead of
            full context.
        hotwords
            Override the configured hotwords.

        Raises
        ------
        AudioForgeError
            Subclasses for empty, non-finite, multichannel or non-numeric audio and unusable rates.
        """
        start = time.perf_counter()
        samples = self._prepare(audio, sr)
        cfg = self.config
        encoded = self._encode_features(compute_fbank(samples, self.frontend), simulate_streaming)
        if encoded is None:
            result = RecognitionResult("", final=True, endpoint_rule="end")
        else:
            out, logp = encoded
            hyps = ctc_prefix_beam_search(
                logp, cfg.beam_size, nbest=cfg.nbest, context_graph=self.context_graph(hotwords), lm=self.fusion()
            )
            if cfg.rescoring and hyps:
                hyps = attention_rescoring(
                    self.model, hyps, out, ctc_weight=cfg.ctc_weight, reverse_weight=cfg.reverse_weight
                )
            result = hypothesis_to_result(hyps, self.tokenizer, frame_s=self.frame_s, final=True)
            result.endpoint_rule = "end"
            result.end = out.size(1) * self.frame_s
        audio_s = samples.shape[0] / self.frontend.sample_rate
        compute = time.perf_counter() - start
        result.timings = {"audio_s": audio_s, "compute_s": compute, "rtf": compute / audio_s}
        return result

    def stream(self, sr: int = 16000, *, hotwords: Sequence[str] | None = None) -> StreamingSession:
        """A new :class:`~audioforge.asr.streaming.StreamingSession` (PCM must be at the model rate, 16 kHz).

        Raises
        ------
        UnsupportedSampleRateError
            For another rate (resample the stream before, e.g. with ``soxr.ResampleStream``).
        """
        rate = validate_sample_rate(sr)
        if rate != self.frontend.sample_rate:
            raise UnsupportedSampleRateError(
                f"streams must be {self.frontend.sample_rate} Hz PCM, got sr={rate}; resample the stream first"
            )
        return StreamingSession(
            TorchBackend(self.model, self.config),
            self.tokenizer,
            StreamingFbank(self.frontend),
            self.config,
            frame_shift_s=self.frontend.frame_shift / 1000.0,
            sample_rate=self.frontend.sample_rate,
            context_graph=self.context_graph(hotwords),
            rescore_reverse_weight=self.config.reverse_weight,
            lm=self.fusion(),
        )
