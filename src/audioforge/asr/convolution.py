"""The Conformer convolution module with a streaming cache (WeNet's ``ConvolutionModule``).

pointwise conv (2C) -> GLU -> depthwise conv (kernel K) -> norm -> activation -> pointwise conv. Causal modules
pad ``K - 1`` frames on the left (zeros, or the ``cnn_cache`` of the previous chunk) and return the last ``K - 1``
GLU outputs as the new cache, so chunk-by-chunk output equals the whole-sequence output. Non-causal modules pad
``(K - 1) / 2`` on both sides and keep no cache (they see the chunk's right edge, so streaming differs).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidParameterError

__all__ = ["ConvolutionModule"]


class ConvolutionModule(nn.Module):
    """Conformer convolution block.

    Parameters
    ----------
    channels
        Model width.
    kernel_size
        Depthwise kernel (odd when not causal).
    activation
        Activation after the norm (SiLU by default).
    norm
        ``"batch_norm"`` or ``"layer_norm"`` (use layer norm for causal streaming models).
    causal
        Left padding only, with a cache.
    bias
        Bias in the convolutions.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 15,
        activation: nn.Module | None = None,
        norm: str = "batch_norm",
        causal: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if norm not in ("batch_norm", "layer_norm"):
            raise InvalidParameterError(f"norm must be 'batch_norm' or 'layer_norm', got {norm!r}")
        if not causal and kernel_size % 2 == 0:
            raise InvalidParameterError(f"a non-causal convolution needs an odd kernel_size, got {kernel_size}")
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * channels, 1, bias=bias)
        self.lorder = kernel_size - 1 if causal else 0
        padding = 0 if causal else (kernel_size - 1) // 2
        self.depthwise_conv = nn.Conv1d(channels, channels, kernel_size, padding=padding, groups=channels, bias=bias)
        self.use_layer_norm = norm == "layer_norm"
        self.norm: nn.Module = nn.LayerNorm(channels) if self.use_layer_norm else nn.BatchNorm1d(channels)
        self.pointwise_conv2 = nn.Conv1d(channels, channels, 1, bias=bias)
        self.activation = activation if activation is not None else nn.SiLU()

    def forward(
        self, x: torch.Tensor, mask_pad: torch.Tensor | None = None, cache: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply to ``x`` ``(batch, T, C)``.

        Parameters
        ----------
        mask_pad
            ``(batch, 1, T)`` bool, ``True`` on valid frames (padding is zeroed); size 0 on the last axis: none.
        cache
            ``(batch, C, K - 1)`` left context from the previous chunk (causal only); size 0: zeros.

        Returns
        -------
        tuple
            ``(y (batch, T, C), new_cache (batch, C, K - 1))`` (a ``(0, 0, 0)`` tensor when not causal).
        """
        x = x.transpose(1, 2)
        if mask_pad is not None and mask_pad.size(2) > 0:
            x = x.masked_fill(~mask_pad, 0.0)
        x = nn.functional.glu(self.pointwise_conv1(x), dim=1)
        if self.lorder > 0:
            if cache is None or cache.size(2) == 0:
                x = nn.functional.pad(x, (self.lorder, 0), "constant", 0.0)
            else:
                x = torch.cat((cache, x), dim=2)
            new_cache = x[:, :, -self.lorder :]
        else:
            new_cache = torch.zeros((0, 0, 0), dtype=x.dtype, device=x.device)
        x = self.depthwise_conv(x)
        if self.use_layer_norm:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        else:
            x = self.norm(x)
        x = self.pointwise_conv2(self.activation(x))
        if mask_pad is not None and mask_pad.size(2) > 0:
            x = x.masked_fill(~mask_pad, 0.0)
        return x.transpose(1, 2), new_cache
