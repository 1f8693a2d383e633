"""DDSP effects: a learned-impulse-response reverb by FFT convolution, offline and streaming."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..errors import InvalidParameterError
from .core import check_controls

__all__ = ["Reverb", "ReverbState"]


class ReverbState(NamedTuple):
    """The wet signal that rings past the last block: ``(batch, ir_length - 1)``."""

    tail: torch.Tensor


class Reverb(nn.Module):
    """A single learned impulse response applied by FFT convolution, with the dry signal added back.

    ``out = audio + audio * ir_masked`` where ``ir_masked`` is the parameter with tap 0 forced to zero (the direct
    path is the dry signal; a learned tap 0 would only rescale it). The IR starts as deterministic white noise of
    standard deviation ``init_scale`` under an exponential decay of ``init_decay`` s (60 dB per ``init_decay * 6.9``
    s), so an untrained model is almost dry.

    Streaming: each block is convolved with the whole IR (one FFT of ``block + ir_length - 1`` points) and the
    ``ir_length - 1`` samples that ring past it are carried in :class:`ReverbState` and added to the next block.
    That costs one large FFT per block (a 3 s IR at 16 kHz: 64 k points per 20 ms block, ~1 ms on one core); a
    partitioned convolution would be cheaper for long IRs.

    Parameters
    ----------
    ir_length
        Taps of the impulse response (48000 = 3 s at 16 kHz in DDSP's solo_instrument).
    add_dry
        Add the input to the wet signal.
    init_scale, init_decay, seed
        Initial IR: ``init_scale * noise * exp(-n / (init_decay * sr))`` with ``sr = 16000``, noise from ``seed``.
    """

    def __init__(
        self, *, ir_length: int = 48000, add_dry: bool = True, init_scale: float = 1e-3, init_decay: float = 0.3,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(ir_length, bool) or not isinstance(ir_length, int) or ir_length < 2:
            raise InvalidParameterError(f"ir_length must be an integer >= 2 taps, got {ir_length!r}")
        self.ir_length = ir_length
        self.add_dry = bool(add_dry)
        g = torch.Generator().manual_seed(int(seed))
        n = torch.arange(ir_length, dtype=torch.float32)
        ir = torch.randn(ir_length, generator=g) * float(init_scale) * torch.exp(-n / (float(init_decay) * 16000.0))
        self.ir = nn.Parameter(ir)
        mask = torch.ones(ir_length)
        mask[0] = 0.0
        self.register_buffer("mask", mask, persistent=False)

    def impulse_response(self) -> torch.Tensor:
        """The IR actually applied (tap 0 masked), shape ``(ir_length,)``."""
        return self.ir * self.mask

    def initial_state(self, batch: int, *, dtype: torch.dtype = torch.float32, device: torch.device | None = None
                      ) -> ReverbState:
        """A silent tail."""
        return ReverbState(tail=torch.zeros(batch, self.ir_length - 1, dtype=dtype, device=device))

    def forward(self, audio: torch.Tensor, state: ReverbState | None = None) -> tuple[torch.Tensor, ReverbState]:
        """Reverberate ``audio`` of shape ``(batch, n)``; return ``(out, state)`` with ``out`` of the same shape."""
        check_controls("audio", audio)
        n = audio.shape[-1]
        dtype = audio.dtype
        ir = self.impulse_response().to(dtype)
        total = n + self.ir_length - 1
        size = 1 << (total - 1).bit_length()
        wet = torch.fft.irfft(torch.fft.rfft(audio, n=size) * torch.fft.rfft(ir, n=size), n=size)[:, :total]
        if state is not None:
            k = self.ir_length - 1
            wet = torch.cat([wet[:, :k] + state.tail.to(dtype), wet[:, k:]], dim=1)
        out = wet[:, :n] + audio if self.add_dry else wet[:, :n]
        return out, ReverbState(tail=wet[:, n:].detach())
