"""Attention decoders of the U2 models: left-to-right Transformer, and U2++'s bidirectional pair.

Inputs are token ids with ``<sos>`` prepended (padding any valid id), lengths counting the ``<sos>``; outputs are
logits ``(batch, L, vocab)``. :meth:`TransformerDecoder.forward_one_step` scores the next token (log-softmax) for
autoregressive beam search.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import MultiHeadedAttention
from .embedding import PositionalEncoding
from .encoder_layer import PositionwiseFeedForward
from .mask import make_pad_mask, subsequent_mask

__all__ = ["BiTransformerDecoder", "DecoderLayer", "TransformerDecoder"]


class DecoderLayer(nn.Module):
    """Masked self-attention, source attention over the encoder output, feed-forward (pre-norm residuals)."""

    def __init__(
        self,
        size: int,
        self_attn: MultiHeadedAttention,
        src_attn: MultiHeadedAttention,
        feed_forward: PositionwiseFeedForward,
        dropout_rate: float = 0.0,
        normalize_before: bool = True,
    ) -> None:
        super().__init__()
        self.size = size
        self.self_attn = self_attn
        self.src_attn = src_attn
        self.feed_forward = feed_forward
        self.norm1 = nn.LayerNorm(size, eps=1e-5)
        self.norm2 = nn.LayerNorm(size, eps=1e-5)
        self.norm3 = nn.LayerNorm(size, eps=1e-5)
        self.dropout = nn.Dropout(dropout_rate)
        self.normalize_before = normalize_before

    def forward(
        self, tgt: torch.Tensor, tgt_mask: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(x, tgt_mask, memory, memory_mask)``."""
        residual = tgt
        x = self.norm1(tgt) if self.normalize_before else tgt
        x = residual + self.dropout(self.self_attn(x, x, x, tgt_mask)[0])
        if not self.normalize_before:
            x = self.norm1(x)
        residual = x
        if self.normalize_before:
            x = self.norm2(x)
        x = residual + self.dropout(self.src_attn(x, memory, memory, memory_mask)[0])
        if not self.normalize_before:
            x = self.norm2(x)
        residual = x
        if self.normalize_before:
            x = self.norm3(x)
        x = residual + self.dropout(self.feed_forward(x))
        if not self.normalize_before:
            x = self.norm3(x)
        return x, tgt_mask, memory, memory_mask


class TransformerDecoder(nn.Module):
    """Transformer decoder: token embedding + absolute positions, ``num_blocks`` layers, norm, output projection.

    Parameters
    ----------
    vocab_size
        Output vocabulary (including ``<sos/eos>``).
    encoder_output_size
        Width of the encoder output (and of the decoder).
    attention_heads, linear_units, num_blocks
        Heads, feed-forward width, layers.
    dropout_rate, positional_dropout_rate, self_attention_dropout_rate, src_attention_dropout_rate
        Dropouts.
    normalize_before
        Pre-norm layers and a final norm.
    """

    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        attention_heads: int = 4,
        linear_units: int = 2048,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        self_attention_dropout_rate: float = 0.0,
        src_attention_dropout_rate: float = 0.0,
        normalize_before: bool = True,
    ) -> None:
        super().__init__()
        d = encoder_output_size
        self.embed = nn.Embedding(vocab_size, d)
        self.pos_enc = PositionalEncoding(d, positional_dropout_rate)
        self.normalize_before = normalize_before
        self.after_norm = nn.LayerNorm(d, eps=1e-5)
        self.output_layer = nn.Linear(d, vocab_size)
        self.num_blocks = num_blocks
        self.decoders = nn.ModuleList(
            DecoderLayer(
                d,
                MultiHeadedAttention(attention_heads, d, self_attention_dropout_rate),
                MultiHeadedAttention(attention_heads, d, src_attention_dropout_rate),
                PositionwiseFeedForward(d, linear_units, dropout_rate),
                dropout_rate,
                normalize_before,
            )
            for _ in range(num_blocks)
        )

    def _run(self, memory: torch.Tensor, memory_mask: torch.Tensor, tgt: torch.Tensor, tgt_mask: torch.Tensor):
        x, _ = self.pos_enc(self.embed(tgt))
        for layer in self.decoders:
            x, tgt_mask, memory, memory_mask = layer(x, tgt_mask, memory, memory_mask)
        if self.normalize_before:
            x = self.after_norm(x)
        return x

    def forward(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
        r_ys_in_pad: torch.Tensor | None = None,
        reverse_weight: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits ``(batch, L, vocab)`` of ``ys_in_pad``; returns ``(logits, empty r_logits, olens)``.

        ``memory`` ``(batch, T, d)`` with ``memory_mask`` ``(batch, 1, T)``.
        """
        size = ys_in_pad.size(1)
        tgt_mask = (~make_pad_mask(ys_in_lens, size)).unsqueeze(1) & subsequent_mask(size, ys_in_pad.device)
        x = self.output_layer(self._run(memory, memory_mask, ys_in_pad, tgt_mask))
        return x, torch.zeros(0, device=x.device), tgt_mask.sum(1)

    def forward_one_step(self, memory: torch.Tensor, memory_mask: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(batch, vocab)`` of the token after the prefixes ``tgt`` ``(batch, L)``."""
        size = tgt.size(1)
        tgt_mask = subsequent_mask(size, tgt.device).unsqueeze(0)
        x = self._run(memory, memory_mask, tgt, tgt_mask)[:, -1]
        return torch.log_softmax(self.output_layer(x), dim=-1)


class BiTransformerDecoder(nn.Module):
    """U2++ decoder: a left-to-right and a right-to-left :class:`TransformerDecoder` over the same encoder output.

    ``num_blocks`` left-to-right layers, ``r_num_blocks`` right-to-left; other parameters as
    :class:`TransformerDecoder`.
    """

    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        attention_heads: int = 4,
        linear_units: int = 2048,
        num_blocks: int = 3,
        r_num_blocks: int = 3,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        self_attention_dropout_rate: float = 0.0,
        src_attention_dropout_rate: float = 0.0,
        normalize_before: bool = True,
    ) -> None:
        super().__init__()
        common = {
            "attention_heads": attention_heads,
            "linear_units": linear_units,
            "dropout_rate": dropout_rate,
            "positional_dropout_rate": positional_dropout_rate,
            "self_attention_dropout_rate": self_attention_dropout_rate,
            "src_attention_dropout_rate": src_attention_dropout_rate,
            "normalize_before": normalize_before,
        }
        self.left_decoder = TransformerDecoder(vocab_size, encoder_output_size, num_blocks=num_blocks, **common)
        self.right_decoder = TransformerDecoder(vocab_size, encoder_output_size, num_blocks=r_num_blocks, **common)

    def forward(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
        r_ys_in_pad: torch.Tensor | None = None,
        reverse_weight: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(l2r logits, r2l logits, olens)``; the right-to-left pass runs when ``reverse_weight > 0``."""
        l_x, _, olens = self.left_decoder(memory, memory_mask, ys_in_pad, ys_in_lens)
        r_x = torch.zeros(0, device=l_x.device)
        if r_ys_in_pad is not None and reverse_weight > 0.0:
            r_x, _, olens = self.right_decoder(memory, memory_mask, r_ys_in_pad, ys_in_lens)
        return l_x, r_x, olens

    def forward_one_step(self, memory: torch.Tensor, memory_mask: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Left-to-right next-token log-probabilities."""
        return self.left_decoder.forward_one_step(memory, memory_mask, tgt)
