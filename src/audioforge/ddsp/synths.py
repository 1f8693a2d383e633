"""DDSP synthesizers: an additive harmonic oscillator bank and frame-wise filtered noise, offline and streaming.

Both modules take *scaled* controls (positive amplitudes, a harmonic distribution, noise band magnitudes); their
``get_controls`` methods map raw network outputs to those (``exp_sigmoid``, Nyquist removal, renormalisation). Both
``forward`` calls take an optional ``state`` and return ``(audio, state)``: feeding a long control sequence block by
block, passing each returned state to the next call, gives the same samples as one call on the whole sequence
(see the frame alignment in :mod:`audioforge.ddsp.core`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..errors import InvalidParameterError
from .core import (
    TWO_PI,
    angular_cumsum,
    check_controls,
    exp_sigmoid,
    normalize_harmonics,
    upsample_linear,
    upsample_windowed,
)

__all__ = ["FilteredNoise", "HarmonicState", "HarmonicSynth", "NoiseState"]


def _check_int(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class HarmonicState(NamedTuple):
    """What :class:`HarmonicSynth` carries between blocks: the phase and the last frame of each control."""

    phase: torch.Tensor  #: ``(batch,)`` float64, fundamental phase after the last sample, in ``[0, 2 pi)``
    f0_hz: torch.Tensor  #: ``(batch,)`` last f0 frame
    amplitudes: torch.Tensor  #: ``(batch, n_harmonics)`` last frame of per-harmonic amplitudes


class NoiseState(NamedTuple):
    """What :class:`FilteredNoise` carries between blocks: the filtered tail not yet played."""

    tail: torch.Tensor  #: ``(batch, ir_size - 1)``


class HarmonicSynth(nn.Module):
    """Additive synthesis of ``n_harmonics`` integer harmonics of a time-varying f0.

    ``audio[n] = sum_k a[n] c_k[n] sin(k phi[n])`` with ``phi = cumsum(2 pi f0 / sr)`` (see
    :func:`~audioforge.ddsp.core.angular_cumsum`); f0 is upsampled linearly, the per-harmonic amplitudes
    ``a * c_k`` with overlapping Hann windows (or linearly), and harmonics at or above Nyquist are silenced sample by
    sample (so a glide never aliases).

    Parameters
    ----------
    sr
        Output sample rate in Hz.
    hop
        Samples per control frame (64 at 16 kHz = 250 frames/s).
    n_harmonics
        Number of harmonics (the width of the distribution).
    amplitude_upsampling
        ``"windowed"`` (Hann overlap-add, DDSP's default) or ``"linear"`` (DDSP-VST).
    precise_phase
        Convert f0 to radians per sample and accumulate in float64 (default). float32 input frequencies are exact
        here, but ``2 pi f / sr`` rounded to float32 is off by up to 3e-8 relative, a drift that reaches ~0.07 rad
        after 60 s at 6 kHz (50 dB SNR against float64); float64 keeps 96 dB. Set False to stay in the controls'
        dtype (GPU, export): the accumulator is still chunked and wrapped, so only that frequency rounding remains.
    chunk_size
        Chunk length of the phase accumulation.
    """

    def __init__(
        self,
        *,
        sr: int = 16000,
        hop: int = 64,
        n_harmonics: int = 60,
        amplitude_upsampling: str = "windowed",
        precise_phase: bool = True,
        chunk_size: int = 64,
    ) -> None:
        super().__init__()
        self.sr = _check_int(sr, "sr", 1000)
        self.hop = _check_int(hop, "hop")
        self.n_harmonics = _check_int(n_harmonics, "n_harmonics")
        if amplitude_upsampling not in ("windowed", "linear"):
            raise InvalidParameterError(
                f"amplitude_upsampling={amplitude_upsampling!r}; use 'windowed' or 'linear'"
            )
        self.amplitude_upsampling = amplitude_upsampling
        self.precise_phase = bool(precise_phase)
        self.chunk_size = _check_int(chunk_size, "chunk_size")
        k = torch.arange(1, n_harmonics + 1, dtype=torch.float32)
        self.register_buffer("harmonic_numbers", k, persistent=False)

    def get_controls(
        self, amplitude_raw: torch.Tensor, distribution_raw: torch.Tensor, f0_hz: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw network outputs to controls: ``exp_sigmoid`` on both, harmonics above Nyquist removed, renormalised.

        Shapes: ``(batch, n_frames)``, ``(batch, n_frames, n_harmonics)``, ``(batch, n_frames)``.
        """
        amplitude = exp_sigmoid(amplitude_raw)
        distribution = normalize_harmonics(exp_sigmoid(distribution_raw), f0_hz, self.sr)
        return amplitude, distribution

    def forward(
        self,
        amplitude: torch.Tensor,
        harmonic_distribution: torch.Tensor,
        f0_hz: torch.Tensor,
        state: HarmonicState | None = None,
    ) -> tuple[torch.Tensor, HarmonicState]:
        """Synthesize ``n_frames * hop`` samples.

        Parameters
        ----------
        amplitude
            ``(batch, n_frames)``, >= 0: overall amplitude.
        harmonic_distribution
            ``(batch, n_frames, n_harmonics)``, >= 0: relative harmonic amplitudes (normally summing to one).
        f0_hz
            ``(batch, n_frames)``, >= 0 Hz (0 = unvoiced: no harmonic sounds).
        state
            The state returned by the previous block, or None to start (phase 0).

        Returns
        -------
        audio, state
            ``(batch, n_frames * hop)`` in the controls' dtype, and the state for the next block.
        """
        check_controls("amplitude", amplitude, nonnegative=True)
        check_controls("harmonic_distribution", harmonic_distribution, ndim=(3,), nonnegative=True)
        check_controls("f0_hz", f0_hz, nonnegative=True)
        b, t = f0_hz.shape
        if amplitude.shape != (b, t) or harmonic_distribution.shape != (b, t, self.n_harmonics):
            raise InvalidParameterError(
                f"control shapes disagree: f0_hz {tuple(f0_hz.shape)}, amplitude {tuple(amplitude.shape)}, "
                f"harmonic_distribution {tuple(harmonic_distribution.shape)} (expected (batch, n_frames, "
                f"{self.n_harmonics}))"
            )
        dtype = amplitude.dtype
        amps = amplitude.unsqueeze(-1) * harmonic_distribution  # (B, T, K)
        up = upsample_windowed if self.amplitude_upsampling == "windowed" else upsample_linear
        prev_f0 = None if state is None else state.f0_hz
        prev_amp = None if state is None else state.amplitudes
        phase0 = None if state is None else state.phase
        f0_up = upsample_linear(f0_hz, self.hop, previous=prev_f0)  # (B, N)
        amps_up = up(amps, self.hop, previous=prev_amp)  # (B, N, K)
        acc_dtype = torch.float64 if self.precise_phase else f0_up.dtype
        omega = f0_up.to(acc_dtype) * (TWO_PI / self.sr)
        phase, final = angular_cumsum(omega, initial_phase=phase0, chunk_size=self.chunk_size)
        phase = phase.to(dtype)
        k = self.harmonic_numbers.to(dtype)
        # harmonic phases k * phi from the wrapped fundamental: errors scale with k but stay ~1e-5 rad at k = 60
        harmonic_phase = torch.remainder(phase.unsqueeze(-1) * k, TWO_PI)
        audible = (f0_up.unsqueeze(-1) * k) < (self.sr / 2.0)
        amps_up = torch.where(audible, amps_up, torch.zeros_like(amps_up))
        audio = (amps_up * torch.sin(harmonic_phase)).sum(-1)
        new_state = HarmonicState(phase=final, f0_hz=f0_hz[:, -1].detach(), amplitudes=amps[:, -1].detach())
        return audio, new_state


class FilteredNoise(nn.Module):
    """Uniform noise shaped frame by frame by a linear-phase FIR filter designed by frequency sampling.

    Per frame, ``n_bands`` magnitudes (linearly spaced from 0 Hz to Nyquist) become a zero-phase impulse response by
    an inverse real FFT of ``ir_size = 2 (n_bands - 1)`` points, which is rotated by ``ir_size // 2`` to be causal and
    multiplied by a periodic Hann window (65 bands -> 128 taps, a group delay of 64 samples). Uniform noise in
    [-1, 1] is cut into ``hop``-sample frames, each frame is convolved with its filter by FFT, and the
    ``ir_size - 1``-sample tails are overlap-added into the following frames (and carried into the next block when
    streaming). Noise is drawn from ``generator`` when given, so a seeded generator makes the output deterministic;
    pass ``noise`` to supply it yourself.
    """

    def __init__(self, *, n_bands: int = 65, hop: int = 64, initial_bias: float = -5.0) -> None:
        super().__init__()
        self.n_bands = _check_int(n_bands, "n_bands", 2)
        self.hop = _check_int(hop, "hop")
        self.initial_bias = float(initial_bias)
        self.ir_size = 2 * (self.n_bands - 1)
        conv_len = self.hop + self.ir_size - 1
        self.fft_size = 1 << (conv_len - 1).bit_length()
        n = torch.arange(self.ir_size, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(TWO_PI * n / self.ir_size)  # periodic Hann, peak at ir_size // 2
        self.register_buffer("window", window.float(), persistent=False)

    def get_controls(self, magnitudes_raw: torch.Tensor) -> torch.Tensor:
        """Raw network outputs to band magnitudes: ``exp_sigmoid(raw + initial_bias)`` (bias -5: quiet at start)."""
        return exp_sigmoid(magnitudes_raw + self.initial_bias)

    def impulse_responses(self, magnitudes: torch.Tensor) -> torch.Tensor:
        """``(batch, n_frames, n_bands)`` magnitudes -> ``(batch, n_frames, ir_size)`` windowed causal FIRs."""
        ir = torch.fft.irfft(magnitudes.to(torch.complex64 if magnitudes.dtype != torch.float64 else torch.complex128),
                             n=self.ir_size, dim=-1)
        ir = torch.roll(ir, shifts=self.ir_size // 2, dims=-1)
        return ir * self.window.to(ir.dtype)

    def initial_state(self, batch: int, *, dtype: torch.dtype = torch.float32, device: torch.device | None = None
                      ) -> NoiseState:
        """A silent tail (the state before the first block)."""
        return NoiseState(tail=torch.zeros(batch, self.ir_size - 1, dtype=dtype, device=device))

    def forward(
        self,
        magnitudes: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        state: NoiseState | None = None,
    ) -> tuple[torch.Tensor, NoiseState]:
        """Filter noise with one FIR per frame.

        Parameters
        ----------
        magnitudes
            ``(batch, n_frames, n_bands)``, >= 0 (linear amplitude per band).
        noise
            ``(batch, n_frames * hop)`` excitation; default uniform in [-1, 1) from ``generator``.
        generator
            Random generator for the noise (ignored when ``noise`` is given).
        state
            The previous block's state (its tail is added to the start of this block), or None.

        Returns
        -------
        audio, state
            ``(batch, n_frames * hop)``; the ``ir_size - 1`` samples that ring past the block are in ``state``.
        """
        check_controls("magnitudes", magnitudes, ndim=(3,), nonnegative=True)
        b, t, nb = magnitudes.shape
        if nb != self.n_bands:
            raise InvalidParameterError(f"magnitudes have {nb} bands, this FilteredNoise expects {self.n_bands}")
        n = t * self.hop
        dtype = magnitudes.dtype
        if noise is None:
            noise = torch.rand(b, n, generator=generator, dtype=dtype, device=magnitudes.device) * 2.0 - 1.0
        else:
            check_controls("noise", noise)
            if noise.shape != (b, n):
                raise InvalidParameterError(f"noise has shape {tuple(noise.shape)}, expected {(b, n)}")
            noise = noise.to(dtype)
        ir = self.impulse_responses(magnitudes)  # (B, T, L_ir)
        frames = noise.reshape(b, t, self.hop)
        spec = torch.fft.rfft(frames, n=self.fft_size, dim=-1) * torch.fft.rfft(ir, n=self.fft_size, dim=-1)
        conv_len = self.hop + self.ir_size - 1
        pieces = torch.fft.irfft(spec, n=self.fft_size, dim=-1)[..., :conv_len]  # (B, T, conv_len)
        total_len = n + self.ir_size - 1
        out = torch.nn.functional.fold(
            pieces.transpose(1, 2), output_size=(1, total_len), kernel_size=(1, conv_len), stride=(1, self.hop)
        ).reshape(b, total_len)
        if state is not None:
            out = torch.cat([out[:, : self.ir_size - 1] + state.tail.to(dtype), out[:, self.ir_size - 1:]], dim=1)
        return out[:, :n], NoiseState(tail=out[:, n:].detach())

