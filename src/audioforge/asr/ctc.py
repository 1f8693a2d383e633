"""CTC head of the U2 models: a linear layer to the vocabulary, the CTC loss and log-posteriors."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CTC"]


class CTC(nn.Module):
    """Linear projection + CTC loss (``blank_id`` 0, summed over the batch and divided by the batch size).

    Parameters
    ----------
    odim
        Vocabulary size.
    encoder_output_size
        Encoder width.
    dropout_rate
        Dropout before the projection (training).
    blank_id
        The blank token.
    """

    def __init__(self, odim: int, encoder_output_size: int, dropout_rate: float = 0.0, blank_id: int = 0) -> None:
        super().__init__()
        self.ctc_lo = nn.Linear(encoder_output_size, odim)
        self.dropout_rate = dropout_rate
        self.blank_id = blank_id
        self.ctc_loss = nn.CTCLoss(blank=blank_id, reduction="sum", zero_infinity=True)

    def forward(
        self, hs_pad: torch.Tensor, hlens: torch.Tensor, ys_pad: torch.Tensor, ys_lens: torch.Tensor
    ) -> torch.Tensor:
        """CTC loss per utterance (batch mean of the summed loss).

        ``hs_pad`` ``(batch, T, d)`` encoder output, ``hlens`` ``(batch,)``, ``ys_pad`` ``(batch, L)`` padded targets
        (padding any value), ``ys_lens`` ``(batch,)``.
        """
        logits = self.ctc_lo(nn.functional.dropout(hs_pad, p=self.dropout_rate, training=self.training))
        logp = logits.transpose(0, 1).log_softmax(-1).float()
        targets = ys_pad.masked_fill(ys_pad < 0, 0)
        loss = self.ctc_loss(logp, targets, hlens, ys_lens)
        return loss / logits.size(0)

    def log_softmax(self, hs_pad: torch.Tensor) -> torch.Tensor:
        """Log-posteriors ``(batch, T, odim)``."""
        return torch.log_softmax(self.ctc_lo(hs_pad), dim=-1)

    def argmax(self, hs_pad: torch.Tensor) -> torch.Tensor:
        """Best token per frame ``(batch, T)``."""
        return torch.argmax(self.ctc_lo(hs_pad), dim=-1)
