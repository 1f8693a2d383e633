"""Multi-head attention with a key/value cache, and its relative-position variant (WeNet's semantics).

Masks are bool, ``True`` = attend, of shape ``(batch, 1, T2)`` (padding) or ``(batch, T1, T2)`` (chunk); a mask with
``T2 == 0`` means "no mask". The cache ``(batch, heads, cache_t, 2 * d_k)`` holds keys and values concatenated in
the last dimension; the new cache returned covers the cached and the current keys.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InvalidParameterError

__all__ = ["MultiHeadedAttention", "RelPositionMultiHeadedAttention"]


class MultiHeadedAttention(nn.Module):
    """Scaled dot-product multi-head attention.

    Parameters
    ----------
    n_head
        Number of heads.
    n_feat
        Model width (divisible by ``n_head``).
    dropout_rate
        Dropout on the attention weights.
    """

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float = 0.0) -> None:
        super().__init__()
        if n_feat % n_head:
            raise InvalidParameterError(f"n_feat={n_feat} is not divisible by n_head={n_head}")
        self.d_k = n_feat // n_head
        self.h = n_head
        self.linear_q = nn.Linear(n_feat, n_feat)
        self.linear_k = nn.Linear(n_feat, n_feat)
        self.linear_v = nn.Linear(n_feat, n_feat)
        self.linear_out = nn.Linear(n_feat, n_feat)
        self.dropout = nn.Dropout(p=dropout_rate)

    def forward_qkv(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project and split heads: each ``(batch, heads, T, d_k)``."""
        b = query.size(0)
        q = self.linear_q(query).view(b, -1, self.h, self.d_k).transpose(1, 2)
        k = self.linear_k(key).view(b, -1, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(value).view(b, -1, self.h, self.d_k).transpose(1, 2)
        return q, k, v

    def forward_attention(self, value: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Softmax of ``scores`` ``(batch, heads, T1, T2)`` under ``mask``, applied to ``value``; output projection."""
        b = value.size(0)
        if mask.size(2) > 0:
            blocked = ~mask.unsqueeze(1)[:, :, :, : scores.size(-1)]
            scores = scores.masked_fill(blocked, -float("inf"))
            attn = torch.softmax(scores, dim=-1).masked_fill(blocked, 0.0)  # fully masked rows -> 0, not NaN
        else:
            attn = torch.softmax(scores, dim=-1)
        x = torch.matmul(self.dropout(attn), value)
        return self.linear_out(x.transpose(1, 2).reshape(b, -1, self.h * self.d_k))

    def _with_cache(
        self, k: torch.Tensor, v: torch.Tensor, cache: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if cache.size(0) > 0:
            k_cache, v_cache = torch.split(cache, cache.size(-1) // 2, dim=-1)
            k = torch.cat([k_cache, k], dim=2)
            v = torch.cat([v_cache, v], dim=2)
        return k, v, torch.cat((k, v), dim=-1)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
        pos_emb: torch.Tensor | None = None,
        cache: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend ``query`` ``(batch, T1, d)`` to ``key``/``value`` ``(batch, T2, d)``.

        Returns
        -------
        tuple
            ``(output (batch, T1, d), new_cache (batch, heads, cache_t + T2, 2 * d_k))``.
        """
        q, k, v = self.forward_qkv(query, key, value)
        k, v, new_cache = self._with_cache(k, v, _empty_cache(query) if cache is None else cache)
        if mask is None:
            mask = torch.ones((0, 0, 0), dtype=torch.bool, device=query.device)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
        return self.forward_attention(v, scores, mask), new_cache


class RelPositionMultiHeadedAttention(MultiHeadedAttention):
    """Relative-position attention (Transformer-XL biases ``pos_bias_u`` and ``pos_bias_v``).

    ``pos_emb`` ``(1 or batch, T2, d)`` is the positional table at the keys' positions; the scores are
    ``((q + u) k^T + (q + v) p^T) / sqrt(d_k)`` with ``p`` the projected ``pos_emb`` (no bias).
    """

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float = 0.0) -> None:
        super().__init__(n_head, n_feat, dropout_rate)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(self.h, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(self.h, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
        pos_emb: torch.Tensor | None = None,
        cache: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`MultiHeadedAttention.forward`, with ``pos_emb`` required."""
        if pos_emb is None:
            raise InvalidParameterError("relative-position attention needs pos_emb")
        q, k, v = self.forward_qkv(query, key, value)
        k, v, new_cache = self._with_cache(k, v, _empty_cache(query) if cache is None else cache)
        if mask is None:
            mask = torch.ones((0, 0, 0), dtype=torch.bool, device=query.device)
        q = q.transpose(1, 2)  # (batch, T1, heads, d_k)
        p = self.linear_pos(pos_emb).view(pos_emb.size(0), -1, self.h, self.d_k).transpose(1, 2)
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        matrix_ac = torch.matmul(q_u, k.transpose(-2, -1))
        matrix_bd = torch.matmul(q_v, p.transpose(-2, -1))
        scores = (matrix_ac + matrix_bd) / math.sqrt(self.d_k)
        return self.forward_attention(v, scores, mask), new_cache


def _empty_cache(like: torch.Tensor) -> torch.Tensor:
    return torch.zeros((0, 0, 0, 0), dtype=like.dtype, device=like.device)
