"""Transformer and Conformer encoders of the U2 / U2++ models, full-sequence and chunk-streaming (WeNet's API).

``forward(xs, xs_lens, decoding_chunk_size, num_decoding_left_chunks)`` runs a whole (padded) batch with the chunk
mask of training or decoding; ``forward_chunk(xs, offset, required_cache_size, att_cache, cnn_cache, att_mask)``
runs one streaming chunk with the caches of the previous ones and returns the new caches:

- ``att_cache`` ``(num_blocks, heads, cache_t, 2 * d_k)`` keys and values concatenated in the last dimension;
- ``cnn_cache`` ``(num_blocks, 1, output_size, kernel - 1)`` (Conformer with a causal convolution);
- ``required_cache_size < 0`` keeps all history, ``0`` none, ``N`` the last ``N`` frames;
- the positional encoding starts at ``offset - cache_t`` (the position of the first cached frame).

With the same chunk size and left chunks, :meth:`BaseEncoder.forward_chunk_by_chunk` equals :meth:`BaseEncoder.forward`
with ``decoding_chunk_size`` set (for Conformer only when the convolution is causal).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InvalidParameterError
from .attention import MultiHeadedAttention, RelPositionMultiHeadedAttention
from .cmvn import GlobalCMVN
from .convolution import ConvolutionModule
from .embedding import PositionalEncoding, RelPositionalEncoding
from .encoder_layer import ConformerEncoderLayer, PositionwiseFeedForward, TransformerEncoderLayer
from .mask import add_optional_chunk_mask, make_pad_mask
from .subsampling import SUBSAMPLING

__all__ = ["ACTIVATIONS", "BaseEncoder", "ConformerEncoder", "TransformerEncoder"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "swish": nn.SiLU, "silu": nn.SiLU, "gelu": nn.GELU}
POS_ENC = {"abs_pos": PositionalEncoding, "rel_pos": RelPositionalEncoding}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise InvalidParameterError(f"unknown activation {name!r}; use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class BaseEncoder(nn.Module):
    """Shared front (CMVN, subsampling, positional encoding), chunk masks, caches and the final norm.

    Parameters
    ----------
    input_size
        Feature size (80).
    output_size
        Model width.
    attention_heads, linear_units, num_blocks
        Heads, feed-forward width, number of blocks.
    dropout_rate, positional_dropout_rate, attention_dropout_rate
        Dropouts.
    input_layer
        ``"conv2d"`` (4x), ``"conv2d6"`` (6x) or ``"conv2d8"`` (8x).
    pos_enc_layer_type
        ``"abs_pos"`` or ``"rel_pos"``.
    normalize_before
        Pre-norm blocks and a final layer norm.
    static_chunk_size
        Fixed training chunk (0: none).
    use_dynamic_chunk, use_dynamic_left_chunk
        Dynamic chunk training (see :func:`~audioforge.asr.mask.add_optional_chunk_mask`).
    global_cmvn
        Applied to the features first.
    max_len
        Positions of the positional table.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        attention_heads: int = 4,
        linear_units: int = 2048,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        input_layer: str = "conv2d",
        pos_enc_layer_type: str = "abs_pos",
        normalize_before: bool = True,
        static_chunk_size: int = 0,
        use_dynamic_chunk: bool = False,
        use_dynamic_left_chunk: bool = False,
        global_cmvn: GlobalCMVN | None = None,
        max_len: int = 5000,
    ) -> None:
        super().__init__()
        if input_layer not in SUBSAMPLING:
            raise InvalidParameterError(f"unknown input_layer {input_layer!r}; use one of {sorted(SUBSAMPLING)}")
        if pos_enc_layer_type not in POS_ENC:
            raise InvalidParameterError(f"unknown pos_enc_layer_type {pos_enc_layer_type!r}; use {sorted(POS_ENC)}")
        self._output_size = output_size
        self.attention_heads = attention_heads
        self.num_blocks = num_blocks
        self.pos_enc_layer_type = pos_enc_layer_type
        self.global_cmvn = global_cmvn
        pos_enc = POS_ENC[pos_enc_layer_type](output_size, positional_dropout_rate, max_len)
        self.embed = SUBSAMPLING[input_layer](input_size, output_size, pos_enc)
        self.normalize_before = normalize_before
        self.after_norm = nn.LayerNorm(output_size, eps=1e-5)
        self.static_chunk_size = static_chunk_size
        self.use_dynamic_chunk = use_dynamic_chunk
        self.use_dynamic_left_chunk = use_dynamic_left_chunk
        self.encoders = nn.ModuleList()
        self.cnn_module_kernel = 0

    def output_size(self) -> int:
        """The model width."""
        return self._output_size

    @property
    def subsampling_rate(self) -> int:
        """Input frames per output frame."""
        return self.embed.subsampling_rate

    @property
    def right_context(self) -> int:
        """Extra input frames the subsampling needs to the right of a chunk."""
        return self.embed.right_context

    def _attention(self, heads: int, size: int, dropout: float) -> MultiHeadedAttention:
        cls = RelPositionMultiHeadedAttention if self.pos_enc_layer_type == "rel_pos" else MultiHeadedAttention
        return cls(heads, size, dropout)

    def forward(
        self,
        xs: torch.Tensor,
        xs_lens: torch.Tensor,
        decoding_chunk_size: int = 0,
        num_decoding_left_chunks: int = -1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch ``(batch, T, input_size)`` with lengths ``(batch,)``.

        ``decoding_chunk_size > 0`` applies that chunk mask (with ``num_decoding_left_chunks``, ``< 0`` = all), ``< 0``
        full context, ``0`` the training behaviour (dynamic or static chunks, else full context).

        Returns
        -------
        tuple
            ``(ys (batch, T', output_size), masks (batch, 1, T'))`` with ``True`` on valid frames.
        """
        masks = ~make_pad_mask(xs_lens, xs.size(1)).unsqueeze(1)
        if self.global_cmvn is not None:
            xs = self.global_cmvn(xs)
        xs, pos_emb, masks = self.embed(xs, masks)
        mask_pad = masks
        dynamic = self.use_dynamic_chunk or decoding_chunk_size != 0
        chunk_masks = add_optional_chunk_mask(
            xs,
            masks,
            dynamic,
            self.use_dynamic_left_chunk,
            decoding_chunk_size,
            self.static_chunk_size,
            num_decoding_left_chunks,
        )
        for layer in self.encoders:
            xs, chunk_masks, _, _ = layer(xs, chunk_masks, pos_emb, mask_pad)
        if self.normalize_before:
            xs = self.after_norm(xs)
        return xs, masks

    def forward_chunk(
        self,
        xs: torch.Tensor,
        offset: int | torch.Tensor,
        required_cache_size: int | torch.Tensor,
        att_cache: torch.Tensor | None = None,
        cnn_cache: torch.Tensor | None = None,
        att_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode one chunk ``(1, T, input_size)`` of a stream.

        Parameters
        ----------
        xs
            ``T = (chunk - 1) * subsampling_rate + right_context + 1`` feature frames (fewer for a last chunk).
        offset
            Encoder frames produced before this chunk (int or 0-d int64 tensor).
        required_cache_size
            Frames of attention cache to return: ``< 0`` all, ``0`` none, ``N`` the last ``N``.
        att_cache, cnn_cache
            Caches of the previous chunk (or empty ``(0, 0, 0, 0)`` tensors / None at the start).
        att_mask
            ``(1, 1, cache_t + chunk)`` bool mask over the keys (for a zero-filled fixed-size cache); size 0 or None:
            all keys valid.

        Returns
        -------
        tuple
            ``(ys (1, chunk, output_size), r_att_cache, r_cnn_cache)``.
        """
        if xs.size(0) != 1:
            raise InvalidParameterError(f"forward_chunk takes one stream (batch 1), got batch {xs.size(0)}")
        if att_cache is None:
            att_cache = torch.zeros((0, 0, 0, 0), dtype=xs.dtype, device=xs.device)
        if cnn_cache is None:
            cnn_cache = torch.zeros((0, 0, 0, 0), dtype=xs.dtype, device=xs.device)
        if att_mask is None:
            att_mask = torch.ones((0, 0, 0), dtype=torch.bool, device=xs.device)
        tmp_masks = torch.ones((1, 1, xs.size(1)), dtype=torch.bool, device=xs.device)
        if self.global_cmvn is not None:
            xs = self.global_cmvn(xs)
        xs, _, _ = self.embed(xs, tmp_masks, offset)
        num_layers, cache_t = att_cache.size(0), att_cache.size(2)
        chunk_size = xs.size(1)
        key_size = cache_t + chunk_size
        pos_emb = self.embed.pos_enc.position_encoding(offset - cache_t, key_size, apply_dropout=False)
        r_att, r_cnn = [], []
        for i, layer in enumerate(self.encoders):
            layer_att = att_cache[i : i + 1] if num_layers > 0 else att_cache
            layer_cnn = cnn_cache[i] if cnn_cache.size(0) > 0 else cnn_cache
            xs, _, new_att, new_cnn = layer(xs, att_mask, pos_emb, None, layer_att, layer_cnn)
            r_att.append(_keep_last(new_att, required_cache_size))
            r_cnn.append(new_cnn.unsqueeze(0))
        if self.normalize_before:
            xs = self.after_norm(xs)
        return xs, torch.cat(r_att, dim=0), torch.cat(r_cnn, dim=0)

    def forward_chunk_by_chunk(
        self, xs: torch.Tensor, decoding_chunk_size: int, num_decoding_left_chunks: int = -1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Simulate streaming over a whole utterance ``(1, T, input_size)``: chunks of ``decoding_chunk_size`` frames
        keeping ``decoding_chunk_size * num_decoding_left_chunks`` frames of history (all when negative).

        Returns
        -------
        tuple
            ``(ys (1, T', output_size), masks (1, 1, T'))``.
        """
        if decoding_chunk_size <= 0:
            raise InvalidParameterError(f"decoding_chunk_size must be > 0, got {decoding_chunk_size}")
        rate = self.subsampling_rate
        context = self.right_context + 1
        stride = rate * decoding_chunk_size
        window = (decoding_chunk_size - 1) * rate + context
        required = decoding_chunk_size * num_decoding_left_chunks if num_decoding_left_chunks >= 0 else -1
        att_cache = cnn_cache = None
        outputs = []
        offset = 0
        num_frames = xs.size(1)
        for cur in range(0, num_frames - context + 1, stride):
            end = min(cur + window, num_frames)
            ys, att_cache, cnn_cache = self.forward_chunk(xs[:, cur:end], offset, required, att_cache, cnn_cache)
            outputs.append(ys)
            offset += ys.size(1)
        if outputs:
            ys = torch.cat(outputs, dim=1)
        else:
            ys = xs.new_zeros((1, 0, self.output_size()))
        return ys, torch.ones((1, 1, ys.size(1)), dtype=torch.bool, device=xs.device)

    def config(self) -> dict[str, Any]:
        """Streaming-relevant configuration (for export metadata and recognisers)."""
        return {
            "output_size": self.output_size(),
            "num_blocks": self.num_blocks,
            "head": self.attention_heads,
            "cnn_module_kernel": self.cnn_module_kernel,
            "subsampling_rate": self.subsampling_rate,
            "right_context": self.right_context,
        }


def _keep_last(cache: torch.Tensor, required: int | torch.Tensor) -> torch.Tensor:
    """The last ``required`` frames of ``cache`` ``(1, heads, t, 2 d_k)`` along axis 2 (all when < 0, none when 0)."""
    size = cache.size(2)
    if isinstance(required, torch.Tensor):
        req = required.reshape(()).to(torch.int64)
        positions = torch.arange(size, device=cache.device)
        start = torch.where(req < 0, torch.zeros_like(req), torch.clamp(size - req, min=0))
        index = torch.nonzero(positions >= start).squeeze(1)  # traceable: no Python int from a tensor
        return cache.index_select(2, index)
    if required < 0:
        return cache
    start = size if required == 0 else max(size - required, 0)
    return cache[:, :, start:, :]


class TransformerEncoder(BaseEncoder):
    """Transformer encoder (self-attention + ReLU feed-forward blocks). Parameters: those of :class:`BaseEncoder`."""

    def __init__(self, input_size: int, output_size: int = 256, **kwargs: Any) -> None:
        activation_type = kwargs.pop("activation_type", "relu")
        super().__init__(input_size, output_size, **kwargs)
        heads = self.attention_heads
        dropout = kwargs.get("dropout_rate", 0.1)
        att_dropout = kwargs.get("attention_dropout_rate", 0.0)
        units = kwargs.get("linear_units", 2048)
        self.encoders = nn.ModuleList(
            TransformerEncoderLayer(
                output_size,
                self._attention(heads, output_size, att_dropout),
                PositionwiseFeedForward(output_size, units, dropout, _activation(activation_type)),
                dropout,
                self.normalize_before,
            )
            for _ in range(self.num_blocks)
        )


class ConformerEncoder(BaseEncoder):
    """Conformer encoder (macaron FFN, self-attention, convolution module).

    Extra parameters: ``macaron_style`` (True), ``activation_type`` (``"swish"``), ``use_cnn_module`` (True),
    ``cnn_module_kernel`` (15), ``causal`` (False; True for streaming, with ``cnn_module_norm="layer_norm"``),
    ``cnn_module_norm`` (``"batch_norm"``).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        *,
        macaron_style: bool = True,
        activation_type: str = "swish",
        use_cnn_module: bool = True,
        cnn_module_kernel: int = 15,
        causal: bool = False,
        cnn_module_norm: str = "batch_norm",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("pos_enc_layer_type", "rel_pos")
        super().__init__(input_size, output_size, **kwargs)
        heads = self.attention_heads
        dropout = kwargs.get("dropout_rate", 0.1)
        att_dropout = kwargs.get("attention_dropout_rate", 0.0)
        units = kwargs.get("linear_units", 2048)
        self.causal = causal
        self.cnn_module_kernel = cnn_module_kernel if use_cnn_module else 0

        def ffn() -> PositionwiseFeedForward:
            return PositionwiseFeedForward(output_size, units, dropout, _activation(activation_type))

        self.encoders = nn.ModuleList(
            ConformerEncoderLayer(
                output_size,
                self._attention(heads, output_size, att_dropout),
                ffn(),
                ffn() if macaron_style else None,
                ConvolutionModule(output_size, cnn_module_kernel, _activation(activation_type), cnn_module_norm, causal)
                if use_cnn_module
                else None,
                dropout,
                self.normalize_before,
            )
            for _ in range(self.num_blocks)
        )
