"""The DDSP autoencoder's synthesis side: decoder + harmonic synth + filtered noise + optional reverb.

``DDSPAutoencoder(f0_hz, loudness_db)`` maps ``(batch, n_frames)`` pitch and loudness frames (250 frames/s at 16 kHz)
to ``n_frames * hop`` samples. The encoder side (f0 and loudness extraction) lives in :mod:`audioforge.ddsp.pitch`
and :mod:`audioforge.ddsp.loudness`; this module is pure (tensors in, tensors out).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from ..errors import InvalidParameterError
from .decoders import CONV_PRESETS, RNN_PRESETS, CausalConvDecoder, RnnFcDecoder
from .effects import Reverb, ReverbState
from .synths import FilteredNoise, HarmonicState, HarmonicSynth, NoiseState

__all__ = ["DDSPAutoencoder", "DDSPState"]

#: Reverb length of each preset (``None``: no reverb). DDSP's solo_instrument learns a 3 s IR at 16 kHz.
_PRESET_REVERB = {"solo_instrument": 48000, "vst": None, "tiny_instrument": None, "tiny": None,
                  "conv_tiny": None, "conv_base": 16000}


class DDSPState(NamedTuple):
    """Everything carried between streaming blocks."""

    decoder: Any  #: the decoder's state (GRU hidden state or conv history buffers)
    harmonic: HarmonicState
    noise: NoiseState
    reverb: ReverbState | None


class DDSPAutoencoder(nn.Module):
    """Decoder + :class:`HarmonicSynth` + :class:`FilteredNoise` (+ :class:`Reverb`).

    Parameters
    ----------
    decoder
        An :class:`RnnFcDecoder` or :class:`CausalConvDecoder` (anything with ``forward(f0, ld, state) -> (out,
        state)``, ``split_outputs`` and a ``config`` with ``n_harmonics`` and ``n_noise_bands``).
    sr, hop
        Sample rate and samples per frame (16000 / 64 = 250 frames/s).
    reverb_length
        Taps of the learned reverb IR, or None for a dry model.
    amplitude_upsampling
        Passed to :class:`HarmonicSynth`.
    """

    def __init__(
        self,
        decoder: nn.Module,
        *,
        sr: int = 16000,
        hop: int = 64,
        reverb_length: int | None = None,
        amplitude_upsampling: str = "windowed",
    ) -> None:
        super().__init__()
        self.decoder = decoder
        cfg = decoder.config
        self.sr, self.hop = sr, hop
        self.harmonic = HarmonicSynth(sr=sr, hop=hop, n_harmonics=cfg.n_harmonics,
                                      amplitude_upsampling=amplitude_upsampling)
        self.noise = FilteredNoise(n_bands=cfg.n_noise_bands, hop=hop)
        self.reverb = Reverb(ir_length=reverb_length) if reverb_length else None

    @classmethod
    def from_preset(cls, name: str, *, sr: int = 16000, hop: int = 64, **kwargs: Any) -> DDSPAutoencoder:
        """A model from a decoder preset (:data:`~audioforge.ddsp.decoders.RNN_PRESETS` or ``CONV_PRESETS``).

        ``reverb_length`` defaults to the preset's (48000 for ``solo_instrument``); other keywords go to the
        constructor.
        """
        if name in RNN_PRESETS:
            decoder: nn.Module = RnnFcDecoder(name)
        elif name in CONV_PRESETS:
            decoder = CausalConvDecoder(name)
        else:
            raise InvalidParameterError(
                f"unknown preset {name!r}; use one of {sorted(RNN_PRESETS) + sorted(CONV_PRESETS)}"
            )
        kwargs.setdefault("reverb_length", _PRESET_REVERB.get(name))
        return cls(decoder, sr=sr, hop=hop, **kwargs)

    def controls(self, f0_hz: torch.Tensor, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scaled synthesizer controls from the decoder's raw outputs."""
        amplitude, distribution = self.harmonic.get_controls(raw["amplitude"], raw["harmonic_distribution"], f0_hz)
        return {
            "f0_hz": f0_hz,
            "amplitude": amplitude,
            "harmonic_distribution": distribution,
            "noise_magnitudes": self.noise.get_controls(raw["noise_magnitudes"]),
        }

    def synthesize(
        self,
        controls: dict[str, torch.Tensor],
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        state: DDSPState | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple[HarmonicState, NoiseState, ReverbState | None]]:
        """Render scaled ``controls``; returns audio, the parts (``harmonic``, ``noise``, ``dry``) and synth states."""
        harm, h_state = self.harmonic(controls["amplitude"], controls["harmonic_distribution"], controls["f0_hz"],
                                      state=None if state is None else state.harmonic)
        filtered, n_state = self.noise(controls["noise_magnitudes"], noise=noise, generator=generator,
                                       state=None if state is None else state.noise)
        dry = harm + filtered
        r_state = None
        audio = dry
        if self.reverb is not None:
            audio, r_state = self.reverb(dry, state=None if state is None else state.reverb)
        return audio, {"harmonic": harm, "noise": filtered, "dry": dry}, (h_state, n_state, r_state)

    def forward(
        self,
        f0_hz: torch.Tensor,
        loudness_db: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Offline: ``(batch, n_frames)`` f0 (Hz, 0 = unvoiced) and loudness (dB) -> ``(audio, controls)``.

        ``audio`` is ``(batch, n_frames * hop)``; ``controls`` holds the scaled controls plus the rendered parts.
        ``noise`` (``(batch, n_frames * hop)``, uniform in [-1, 1]) or a seeded ``generator`` make it deterministic.
        """
        audio, controls, _ = self.stream(f0_hz, loudness_db, None, noise=noise, generator=generator)
        return audio, controls

    def stream(
        self,
        f0_hz: torch.Tensor,
        loudness_db: torch.Tensor,
        state: DDSPState | None,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], DDSPState]:
        """One block of frames with carried state (None to start): ``(audio, controls, state)``.

        Feeding a sequence block by block gives the offline output (same noise), see ``tests/ddsp``.
        """
        raw, dec_state = self.decoder(f0_hz, loudness_db, None if state is None else state.decoder)
        controls = self.controls(f0_hz, self.decoder.split_outputs(raw))
        audio, parts, (h, n, r) = self.synthesize(controls, noise=noise, generator=generator, state=state)
        controls.update(parts)
        return audio, controls, DDSPState(decoder=dec_state, harmonic=h, noise=n, reverb=r)
