"""Positional encodings of the U2 encoders and decoders (sinusoidal, WeNet's semantics).

- :class:`PositionalEncoding`: ``x * sqrt(d) + pe[offset : offset + T]``, returned with the slice it added;
- :class:`RelPositionalEncoding`: ``x * sqrt(d)`` unchanged by position; the table slice is returned separately for
  the relative-position attention (``pos_bias_u`` / ``pos_bias_v``, Transformer-XL style, WeNet's legacy layout
  where the slice covers the absolute positions of the attention keys).

``offset`` may be a Python int, a 0-d tensor or a ``(batch,)`` tensor; :meth:`position_encoding` gathers rows with
an index tensor, so a traced ``offset`` stays an input of an exported graph. Negative positions (an exported
encoder fed a zero-filled cache longer than the history) are clamped to 0; those keys are masked anyway.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InvalidParameterError

__all__ = ["PositionalEncoding", "RelPositionalEncoding", "sinusoid_table"]


def sinusoid_table(max_len: int, d_model: int) -> torch.Tensor:
    """The ``(max_len, d_model)`` table ``pe[p, 2i] = sin(p / 10000^(2i/d))``, ``pe[p, 2i+1] = cos(...)``."""
    if d_model % 2:
        raise InvalidParameterError(f"d_model={d_model} must be even for a sinusoidal positional encoding")
    pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class PositionalEncoding(nn.Module):
    """Absolute sinusoidal positional encoding added to the scaled input.

    Parameters
    ----------
    d_model
        Feature size.
    dropout_rate
        Dropout applied to the output (and to the returned slice).
    max_len
        Positions available; an utterance (or a stream without reset) longer than this raises. At 4x subsampling
        5000 positions are 200 s.
    """

    def __init__(self, d_model: int, dropout_rate: float = 0.0, max_len: int = 5000) -> None:
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.max_len = max_len
        self.dropout = nn.Dropout(p=dropout_rate)
        self.register_buffer("pe", sinusoid_table(max_len, d_model), persistent=False)

    def _check(self, offset: int | torch.Tensor, size: int) -> None:
        if isinstance(offset, int) and offset + size > self.max_len:
            raise InvalidParameterError(
                f"positions {offset}..{offset + size - 1} exceed the positional table of {self.max_len}; "
                "decode shorter segments (endpointing resets the stream) or build the model with a larger max_len"
            )

    def position_encoding(self, offset: int | torch.Tensor, size: int, apply_dropout: bool = True) -> torch.Tensor:
        """Rows ``offset .. offset + size - 1`` of the table: ``(1, size, d)`` (``(batch, size, d)`` for a 1-D offset).

        Parameters
        ----------
        offset
            First position (int, 0-d tensor, or ``(batch,)`` tensor); negative positions are clamped to 0.
        size
            Number of positions.
        apply_dropout
            Apply the dropout (training); False for the pure table rows.
        """
        self._check(offset, size)
        steps = torch.arange(size, device=self.pe.device)
        if isinstance(offset, torch.Tensor):
            offset = offset.to(self.pe.device).long()
            if offset.dim() == 1:
                index = (offset.unsqueeze(1) + steps.unsqueeze(0)).clamp(min=0)
                emb = nn.functional.embedding(index, self.pe)
            else:
                emb = self.pe.index_select(0, (steps + offset).clamp(min=0)).unsqueeze(0)
        else:
            emb = self.pe.index_select(0, (steps + offset).clamp(min=0)).unsqueeze(0)
        return self.dropout(emb) if apply_dropout else emb

    def forward(self, x: torch.Tensor, offset: int | torch.Tensor = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x * sqrt(d) + pe, pe)`` for ``x`` of shape ``(batch, T, d)``."""
        pos = self.position_encoding(offset, x.size(1), apply_dropout=False)
        return self.dropout(x * self.xscale + pos), self.dropout(pos)


class RelPositionalEncoding(PositionalEncoding):
    """Positional encoding for relative-position attention: the input is only scaled, the table slice returned."""

    def forward(self, x: torch.Tensor, offset: int | torch.Tensor = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x * sqrt(d), pe[offset : offset + T])`` for ``x`` of shape ``(batch, T, d)``."""
        pos = self.position_encoding(offset, x.size(1), apply_dropout=False)
        return self.dropout(x * self.xscale), self.dropout(pos)
