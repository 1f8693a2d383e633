"""ONNX export of a U2 model in WeNet's runtime layout: ``encoder.onnx``, ``ctc.onnx``, ``decoder.onnx``.

- ``encoder.onnx``: inputs ``chunk (1, T, 80)``, ``offset`` (int64 scalar), ``required_cache_size`` (int64 scalar),
  ``att_cache (num_blocks, head, cache_t, 2 d_k)``, ``cnn_cache (num_blocks, 1, output_size, kernel - 1)``,
  ``att_mask (1, 1, cache_t + chunk_size)`` (bool); outputs ``output``, ``r_att_cache``, ``r_cnn_cache``. As in
  WeNet's export, the cache has a fixed size ``chunk_size * left_chunks`` from the first chunk on (zeros, masked
  out by ``att_mask``), so ``left_chunks`` must be > 0.
- ``ctc.onnx``: ``hidden (1, T, output_size)`` -> ``probs`` (log-posteriors).
- ``decoder.onnx``: ``hyps (N, L)`` (``<sos>`` first), ``hyps_lens (N,)``, ``encoder_out (1, T, d)``,
  ``reverse_weight`` (float scalar) -> ``score (N,)``, ``r_score (N,)``.

Every file carries the configuration in ``metadata_props`` (output_size, num_blocks, head, cnn_module_kernel,
subsampling_rate, right_context, sos, eos, blank_id, vocab_size, chunk_size, left_chunks, decoding_window,
is_bidirectional_decoder); the folder also gets ``asr_config.json`` (tokenizer, front end, decoding settings), and the
recogniser's language model as ``lm.arpa.gz`` when it has one, for :class:`~audioforge.asr.onnx_infer.OnnxRecognizer`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import InvalidParameterError
from .infer import Recognizer
from .lm import LM_FILE
from .model import U2Model

__all__ = ["ONNX_CONFIG_FILE", "encoder_chunk_inputs", "export_recognizer_onnx", "onnx_metadata"]

ONNX_CONFIG_FILE = "asr_config.json"


class _EncoderChunk(nn.Module):
    def __init__(self, model: U2Model) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(
        self,
        chunk: torch.Tensor,
        offset: torch.Tensor,
        required_cache_size: torch.Tensor,
        att_cache: torch.Tensor,
        cnn_cache: torch.Tensor,
        att_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.encoder.forward_chunk(chunk, offset, required_cache_size, att_cache, cnn_cache, att_mask)


class _Ctc(nn.Module):
    def __init__(self, model: U2Model) -> None:
        super().__init__()
        self.ctc = model.ctc

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.ctc.log_softmax(hidden)


class _DecoderScore(nn.Module):
    def __init__(self, model: U2Model) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, hyps: torch.Tensor, hyps_lens: torch.Tensor, encoder_out: torch.Tensor, reverse_weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.score_hyps(hyps, hyps_lens, encoder_out, reverse_weight)


def onnx_metadata(model: U2Model, chunk_size: int, left_chunks: int) -> dict[str, int | float | str | bool]:
    """The configuration stored in every exported file's ``metadata_props``."""
    enc = model.encoder
    return {
        **enc.config(),
        "sos": model.sos,
        "eos": model.eos,
        "blank_id": model.blank_id,
        "vocab_size": model.vocab_size,
        "chunk_size": chunk_size,
        "left_chunks": left_chunks,
        "decoding_window": (chunk_size - 1) * enc.subsampling_rate + enc.right_context + 1,
        "is_bidirectional_decoder": int(model.is_bidirectional),
        "reverse_weight": float(model.reverse_weight),
    }


def encoder_chunk_inputs(
    model: U2Model, chunk_size: int, left_chunks: int, *, offset: int = 0, frames: int | None = None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Example inputs of ``encoder.onnx`` (random features, a cache as after ``offset`` frames)."""
    enc = model.encoder
    gen = torch.Generator().manual_seed(seed)
    window = (chunk_size - 1) * enc.subsampling_rate + enc.right_context + 1
    required = chunk_size * left_chunks
    d_k = enc.output_size() // enc.attention_heads
    kernel = max(enc.cnn_module_kernel - 1, 0)
    mask = torch.ones((1, 1, required + chunk_size), dtype=torch.bool)
    mask[:, :, : max(required - offset, 0)] = False
    return {
        "chunk": torch.randn((1, frames or window, _input_dim(model)), generator=gen),
        "offset": torch.tensor(offset, dtype=torch.int64),
        "required_cache_size": torch.tensor(required, dtype=torch.int64),
        "att_cache": torch.randn((enc.num_blocks, enc.attention_heads, required, 2 * d_k), generator=gen)
        * (1.0 if offset else 0.0),
        "cnn_cache": torch.randn((enc.num_blocks, 1, enc.output_size(), kernel), generator=gen)
        * (1.0 if offset else 0.0),
        "att_mask": mask,
    }


def _input_dim(model: U2Model) -> int:
    cfg = model.model_config or {}
    if "input_dim" in cfg:
        return int(cfg["input_dim"])
    cmvn = model.encoder.global_cmvn
    return int(cmvn.mean.numel()) if cmvn is not None else 80


def export_recognizer_onnx(
    recognizer: Recognizer,
    folder: str | os.PathLike[str],
    *,
    chunk_size: int | None = None,
    left_chunks: int | None = None,
    opset: int = 17,
    verify: bool = True,
    exporter: str = "legacy",
) -> dict[str, Path]:
    """Export the recogniser's model to ``folder`` and (by default) check torch vs onnxruntime.

    Parameters
    ----------
    recognizer
        A torch :class:`~audioforge.asr.infer.Recognizer`.
    folder
        Output folder (created).
    chunk_size, left_chunks
        Streaming settings baked into the encoder's cache layout (default: the recogniser's; ``left_chunks`` must
        be > 0).
    opset, exporter
        Passed to :func:`audioforge.deploy.export_onnx`.
    verify
        Run the encoder over 10 chunks (caches fed back), the CTC and the decoder with onnxruntime and compare with
        torch at ``rtol=1e-3, atol=1e-5`` (raises :class:`~audioforge.errors.CheckpointError` on mismatch).

    Returns
    -------
    dict
        Paths of ``encoder``, ``ctc``, ``decoder`` and ``config``.
    """
    from ..deploy import export_onnx, verify_onnx

    model = recognizer.model.eval()
    chunk = recognizer.config.chunk_size if chunk_size is None else chunk_size
    left = recognizer.config.num_left_chunks if left_chunks is None else left_chunks
    if chunk < 1 or left < 1:
        raise InvalidParameterError(
            f"ONNX export needs chunk_size >= 1 and left_chunks >= 1 (a fixed-size cache), got {chunk}, {left}"
        )
    if model.encoder.cnn_module_kernel == 0:
        raise InvalidParameterError("ONNX export supports Conformer encoders with a convolution module")
    if model.encoder.cnn_module_kernel and not getattr(model.encoder, "causal", False):
        raise InvalidParameterError("streaming export needs a causal convolution module (causal=True)")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    meta = onnx_metadata(model, chunk, left)
    enc_module = _EncoderChunk(model).eval()
    example = encoder_chunk_inputs(model, chunk, left, offset=chunk * left, seed=1)
    names = list(example)
    enc_path = export_onnx(
        enc_module,
        tuple(example.values()),
        out / "encoder.onnx",
        input_names=names,
        output_names=["output", "r_att_cache", "r_cnn_cache"],
        dynamic_axes={"chunk": {1: "T"}, "output": {1: "T_out"}},
        opset=opset,
        metadata=meta,
        exporter=exporter,
    )
    ctc_module = _Ctc(model).eval()
    hidden = torch.randn(1, 7, model.encoder.output_size())
    ctc_path = export_onnx(
        ctc_module,
        (hidden,),
        out / "ctc.onnx",
        input_names=["hidden"],
        output_names=["probs"],
        dynamic_axes={"hidden": {1: "T"}, "probs": {1: "T"}},
        opset=opset,
        metadata=meta,
        exporter=exporter,
    )
    dec_module = _DecoderScore(model).eval()
    hyps = torch.tensor([[model.sos, 3, 4, 5], [model.sos, 6, model.eos, model.eos]], dtype=torch.int64)
    dec_inputs = (hyps, torch.tensor([4, 2]), torch.randn(1, 9, model.encoder.output_size()), torch.tensor(0.3))
    dec_path = export_onnx(
        dec_module,
        dec_inputs,
        out / "decoder.onnx",
        input_names=["hyps", "hyps_lens", "encoder_out", "reverse_weight"],
        output_names=["score", "r_score"],
        dynamic_axes={
            "hyps": {0: "N", 1: "L"},
            "hyps_lens": {0: "N"},
            "encoder_out": {1: "T"},
            "score": {0: "N"},
            "r_score": {0: "N"},
        },
        opset=opset,
        metadata=meta,
        exporter=exporter,
    )
    config = {
        "tokenizer": recognizer.tokenizer.to_json(),
        "frontend": recognizer.frontend.to_dict(),
        "decoding": {**recognizer.config.to_dict(), "chunk_size": chunk, "num_left_chunks": left},
        "metadata": meta,
    }
    cfg_path = out / ONNX_CONFIG_FILE
    cfg_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    lm_path = out / LM_FILE
    if recognizer.lm is not None:
        lm_path.write_bytes(recognizer.lm.arpa_bytes(compress=True))
    else:
        lm_path.unlink(missing_ok=True)  # a stale model from an earlier export must not be picked up
    if verify:
        verify_onnx(enc_module, enc_path, _encoder_chunk_sequence(enc_module, model, chunk, left, 10))
        verify_onnx(ctc_module, ctc_path, [(torch.randn(1, n, model.encoder.output_size()),) for n in (1, 5, 16)])
        more = (hyps[:1, :2], torch.tensor([2]), torch.randn(1, 4, model.encoder.output_size()), torch.tensor(0.0))
        verify_onnx(dec_module, dec_path, [dec_inputs, more])
    return {"encoder": enc_path, "ctc": ctc_path, "decoder": dec_path, "config": cfg_path}


def _encoder_chunk_sequence(
    module: nn.Module, model: U2Model, chunk: int, left: int, count: int
) -> list[dict[str, torch.Tensor]]:
    """Inputs of ``count`` consecutive chunks, each with the caches torch returned for the previous one."""
    inputs = encoder_chunk_inputs(model, chunk, left, offset=0, seed=2)
    gen = torch.Generator().manual_seed(3)
    seq = []
    offset = 0
    required = chunk * left
    for i in range(count):
        if i:
            inputs = dict(inputs)
            inputs["chunk"] = torch.randn(inputs["chunk"].shape, generator=gen)
            mask = torch.ones_like(inputs["att_mask"])
            mask[:, :, : max(required - offset, 0)] = False
            inputs["att_mask"] = mask
            inputs["offset"] = torch.tensor(offset, dtype=torch.int64)
        seq.append(inputs)
        with torch.no_grad():
            out, att, cnn = module(**inputs)
        inputs = {**inputs, "att_cache": att, "cnn_cache": cnn}
        offset += out.size(1)
    return seq
