"""Convolutional front layers of the U2 encoder: 4x, 6x or 8x time subsampling, positional encoding inside.

Each class maps ``(batch, T, idim)`` features to ``(batch, T', odim)`` with the positional encoding applied at
``offset`` and returns the subsampled padding mask. Output frame ``i`` sees input frames ``[i * rate, i * rate +
right_context]``, so a streaming chunk of ``n`` output frames needs ``(n - 1) * rate + right_context + 1`` input
frames and consecutive chunks overlap by ``right_context + 1 - rate`` frames (the convolutions keep no cache).

====================  ====  =============  ===========================================
class                 rate  right_context  convolutions (kernel, stride)
====================  ====  =============  ===========================================
Conv2dSubsampling4    4     6              (3, 2), (3, 2)
Conv2dSubsampling6    6     10             (3, 2), (5, 3)
Conv2dSubsampling8    8     14             (3, 2), (3, 2), (3, 2)
====================  ====  =============  ===========================================
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidParameterError
from .embedding import PositionalEncoding

__all__ = ["SUBSAMPLING", "Conv2dSubsampling", "Conv2dSubsampling4", "Conv2dSubsampling6", "Conv2dSubsampling8"]


class Conv2dSubsampling(nn.Module):
    """Stacked ReLU Conv2d layers over (time, frequency), a linear projection, then the positional encoding.

    Parameters
    ----------
    idim
        Input feature size (80 fbank bins).
    odim
        Output size (the encoder's width); also the convolution channels.
    pos_enc
        The positional encoding module (absolute or relative).
    layers
        ``(kernel, stride)`` per convolution.
    """

    subsampling_rate: int = 1
    right_context: int = 0

    def __init__(self, idim: int, odim: int, pos_enc: PositionalEncoding, layers: list[tuple[int, int]]) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        freq = idim
        in_ch = 1
        for kernel, stride in layers:
            convs += [nn.Conv2d(in_ch, odim, kernel, stride), nn.ReLU()]
            in_ch = odim
            freq = (freq - kernel) // stride + 1
        if freq < 1:
            raise InvalidParameterError(f"idim={idim} is too small for {len(layers)} strided convolutions")
        self.layers = list(layers)
        self.conv = nn.Sequential(*convs)
        self.out = nn.Linear(odim * freq, odim)
        self.pos_enc = pos_enc
        rate, context = 1, 0
        for kernel, stride in layers:
            context += (kernel - 1) * rate
            rate *= stride
        self.subsampling_rate = rate
        self.right_context = context

    def position_encoding(self, offset: int | torch.Tensor, size: int) -> torch.Tensor:
        """The positional table rows ``offset .. offset + size - 1`` (see :class:`PositionalEncoding`)."""
        return self.pos_enc.position_encoding(offset, size)

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, offset: int | torch.Tensor = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Subsample ``x`` ``(batch, T, idim)`` with mask ``(batch, 1, T)``; return ``(y, pos_emb, y_mask)``."""
        y = self.conv(x.unsqueeze(1))
        b, c, t, f = y.size()
        y = self.out(y.transpose(1, 2).reshape(b, t, c * f))
        y, pos_emb = self.pos_enc(y, offset)
        for kernel, stride in self.layers:
            x_mask = x_mask[:, :, kernel - 1 :: stride]
        return y, pos_emb, x_mask


class Conv2dSubsampling4(Conv2dSubsampling):
    """4x subsampling, right context 6 (WeNet's ``conv2d``)."""

    def __init__(self, idim: int, odim: int, pos_enc: PositionalEncoding) -> None:
        super().__init__(idim, odim, pos_enc, [(3, 2), (3, 2)])


class Conv2dSubsampling6(Conv2dSubsampling):
    """6x subsampling, right context 10 (WeNet's ``conv2d6``)."""

    def __init__(self, idim: int, odim: int, pos_enc: PositionalEncoding) -> None:
        super().__init__(idim, odim, pos_enc, [(3, 2), (5, 3)])


class Conv2dSubsampling8(Conv2dSubsampling):
    """8x subsampling, right context 14 (WeNet's ``conv2d8``)."""

    def __init__(self, idim: int, odim: int, pos_enc: PositionalEncoding) -> None:
        super().__init__(idim, odim, pos_enc, [(3, 2), (3, 2), (3, 2)])


SUBSAMPLING: dict[str, type[Conv2dSubsampling]] = {
    "conv2d": Conv2dSubsampling4,
    "conv2d6": Conv2dSubsampling6,
    "conv2d8": Conv2dSubsampling8,
}
