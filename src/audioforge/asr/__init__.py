"""Streaming speech recognition with U2 / U2++ (WeNet-compatible) models.

- features: :func:`compute_fbank`, :class:`StreamingFbank`, :class:`GlobalCMVN` (WeNet's CMVN JSON);
- model: :class:`ConformerEncoder`, :class:`TransformerEncoder`, :class:`CTC`, :class:`TransformerDecoder`,
  :class:`BiTransformerDecoder`, :class:`U2Model`, :func:`build_u2_model`, :class:`SpecAugment`;
- tokenizers: :class:`CharTokenizer`, :class:`BpeTokenizer` (sentencepiece);
- decoding: :func:`ctc_greedy_search`, :func:`ctc_prefix_beam_search` (timestamps, :class:`ContextGraph` hotwords),
  :func:`attention_beam_search`, :func:`attention_rescoring`; :class:`NgramLM` (Kneser-Ney token n-gram, ARPA) for
  shallow fusion;
- :class:`Recognizer` (torch; ``transcribe`` and ``stream``), :func:`export_recognizer_onnx`, and
  :class:`OnnxRecognizer` (onnxruntime only; importing it does not import torch).

Names are loaded on first use, so ``from audioforge.asr import OnnxRecognizer`` stays torch-free.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "GlobalCMVN": "cmvn",
    "compute_cmvn_stats": "cmvn",
    "load_cmvn": "cmvn",
    "save_cmvn": "cmvn",
    "FbankConfig": "frontend",
    "StreamingFbank": "frontend",
    "compute_fbank": "frontend",
    "ConformerEncoder": "encoder",
    "TransformerEncoder": "encoder",
    "CTC": "ctc",
    "TransformerDecoder": "decoder",
    "BiTransformerDecoder": "decoder",
    "U2Model": "model",
    "SpecAugment": "model",
    "build_u2_model": "model",
    "CharTokenizer": "tokenizer",
    "BpeTokenizer": "tokenizer",
    "load_tokenizer": "tokenizer",
    "ContextGraph": "search",
    "Hypothesis": "search",
    "CtcPrefixBeamSearch": "search",
    "ctc_greedy_search": "search",
    "ctc_prefix_beam_search": "search",
    "attention_beam_search": "search",
    "attention_rescoring": "search",
    "NgramLM": "lm",
    "TokenLM": "lm",
    "DecodingConfig": "streaming",
    "RecognitionResult": "streaming",
    "StreamingSession": "streaming",
    "WordPiece": "streaming",
    "Recognizer": "infer",
    "export_recognizer_onnx": "export",
    "OnnxRecognizer": "onnx_infer",
    "NumpyFbank": "onnx_infer",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
