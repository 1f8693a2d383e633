"""Transformer and Conformer encoder blocks (pre-norm, residual), with attention and convolution caches."""

from __future__ import annotations

import torch
from torch import nn

from .attention import MultiHeadedAttention
from .convolution import ConvolutionModule

__all__ = ["ConformerEncoderLayer", "PositionwiseFeedForward", "TransformerEncoderLayer"]


class PositionwiseFeedForward(nn.Module):
    """``w_2(dropout(activation(w_1(x))))``."""

    def __init__(self, idim: int, hidden_units: int, dropout_rate: float = 0.0, activation: nn.Module | None = None):
        super().__init__()
        self.w_1 = nn.Linear(idim, hidden_units)
        self.activation = activation if activation is not None else nn.ReLU()
        self.dropout = nn.Dropout(dropout_rate)
        self.w_2 = nn.Linear(hidden_units, idim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to ``(..., idim)``."""
        return self.w_2(self.dropout(self.activation(self.w_1(x))))


def _fake_cache(like: torch.Tensor) -> torch.Tensor:
    return torch.zeros((0, 0, 0), dtype=like.dtype, device=like.device)


class TransformerEncoderLayer(nn.Module):
    """Self-attention and feed-forward, each with a residual connection.

    Parameters
    ----------
    size
        Model width.
    self_attn, feed_forward
        The sub-modules.
    dropout_rate
        Dropout on each residual branch.
    normalize_before
        Pre-norm (True, WeNet's default) or post-norm.
    """

    def __init__(
        self,
        size: int,
        self_attn: MultiHeadedAttention,
        feed_forward: PositionwiseFeedForward,
        dropout_rate: float = 0.0,
        normalize_before: bool = True,
    ) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.norm1 = nn.LayerNorm(size, eps=1e-5)
        self.norm2 = nn.LayerNorm(size, eps=1e-5)
        self.dropout = nn.Dropout(dropout_rate)
        self.size = size
        self.normalize_before = normalize_before

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        pos_emb: torch.Tensor,
        mask_pad: torch.Tensor | None = None,
        att_cache: torch.Tensor | None = None,
        cnn_cache: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(x, mask, new_att_cache, new_cnn_cache)`` (the cnn cache is an empty placeholder here)."""
        residual = x
        if self.normalize_before:
            x = self.norm1(x)
        x_att, new_att_cache = self.self_attn(x, x, x, mask, pos_emb, att_cache)
        x = residual + self.dropout(x_att)
        if not self.normalize_before:
            x = self.norm1(x)
        residual = x
        if self.normalize_before:
            x = self.norm2(x)
        x = residual + self.dropout(self.feed_forward(x))
        if not self.normalize_before:
            x = self.norm2(x)
        return x, mask, new_att_cache, _fake_cache(x)


class ConformerEncoderLayer(nn.Module):
    """Conformer block: (macaron FFN x 0.5) -> self-attention -> convolution -> FFN x 0.5 -> final norm.

    Parameters
    ----------
    size
        Model width.
    self_attn, feed_forward, feed_forward_macaron, conv_module
        Sub-modules; ``feed_forward_macaron`` and ``conv_module`` may be None.
    dropout_rate
        Dropout on each residual branch.
    normalize_before
        Pre-norm (True) or post-norm.
    """

    def __init__(
        self,
        size: int,
        self_attn: MultiHeadedAttention,
        feed_forward: PositionwiseFeedForward,
        feed_forward_macaron: PositionwiseFeedForward | None = None,
        conv_module: ConvolutionModule | None = None,
        dropout_rate: float = 0.0,
        normalize_before: bool = True,
    ) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.feed_forward_macaron = feed_forward_macaron
        self.conv_module = conv_module
        self.norm_ff = nn.LayerNorm(size, eps=1e-5)
        self.norm_mha = nn.LayerNorm(size, eps=1e-5)
        if feed_forward_macaron is not None:
            self.norm_ff_macaron = nn.LayerNorm(size, eps=1e-5)
            self.ff_scale = 0.5
        else:
            self.ff_scale = 1.0
        if conv_module is not None:
            self.norm_conv = nn.LayerNorm(size, eps=1e-5)
            self.norm_final = nn.LayerNorm(size, eps=1e-5)
        self.dropout = nn.Dropout(dropout_rate)
        self.size = size
        self.normalize_before = normalize_before

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        pos_emb: torch.Tensor,
        mask_pad: torch.Tensor | None = None,
        att_cache: torch.Tensor | None = None,
        cnn_cache: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(x, mask, new_att_cache, new_cnn_cache)``.

        ``mask`` ``(batch, T, T2)`` or ``(batch, 1, T2)`` for attention; ``mask_pad`` ``(batch, 1, T)`` for the
        convolution; caches ``(batch, heads, cache_t, 2 d_k)`` and ``(batch, C, K - 1)``.
        """
        if self.feed_forward_macaron is not None:
            residual = x
            if self.normalize_before:
                x = self.norm_ff_macaron(x)
            x = residual + self.ff_scale * self.dropout(self.feed_forward_macaron(x))
            if not self.normalize_before:
                x = self.norm_ff_macaron(x)
        residual = x
        if self.normalize_before:
            x = self.norm_mha(x)
        x_att, new_att_cache = self.self_attn(x, x, x, mask, pos_emb, att_cache)
        x = residual + self.dropout(x_att)
        if not self.normalize_before:
            x = self.norm_mha(x)
        new_cnn_cache = _fake_cache(x)
        if self.conv_module is not None:
            residual = x
            if self.normalize_before:
                x = self.norm_conv(x)
            x_conv, new_cnn_cache = self.conv_module(x, mask_pad, cnn_cache)
            x = residual + self.dropout(x_conv)
            if not self.normalize_before:
                x = self.norm_conv(x)
        residual = x
        if self.normalize_before:
            x = self.norm_ff(x)
        x = residual + self.ff_scale * self.dropout(self.feed_forward(x))
        if not self.normalize_before:
            x = self.norm_ff(x)
        if self.conv_module is not None:
            x = self.norm_final(x)
        return x, mask, new_att_cache, new_cnn_cache
