"""Differentiable digital signal processing (DDSP) for timbre transfer: synthesizers, losses, features, decoders.

Modules: :mod:`.core` (scale functions, upsampling, phase accumulation), :mod:`.synths` (harmonic and filtered-noise
synthesizers), :mod:`.effects` (reverb), :mod:`.losses` (multi-scale spectral loss), :mod:`.loudness` (A-weighted
loudness), :mod:`.pitch` (YIN and CREPE tiny f0), :mod:`.decoders` (RNN and causal-conv decoders), :mod:`.model`
(:class:`DDSPAutoencoder`). Every synthesizer, effect and decoder streams with an explicit state.
"""

from __future__ import annotations

from .core import (
    angular_cumsum,
    exp_sigmoid,
    hz_to_midi,
    midi_to_hz,
    normalize_harmonics,
    remove_above_nyquist,
    upsample_linear,
    upsample_windowed,
)
from .decoders import CONV_PRESETS, RNN_PRESETS, CausalConvDecoder, RnnFcDecoder, parameter_bytes
from .effects import Reverb
from .losses import MultiScaleSpectralLoss, multiscale_spectral_loss
from .loudness import a_weighting_db, compute_loudness
from .model import DDSPAutoencoder, DDSPState
from .pitch import CrepeTiny, crepe_f0, estimate_f0, load_crepe_tiny, yin_f0
from .synths import FilteredNoise, HarmonicSynth

__all__ = [
    "CONV_PRESETS",
    "RNN_PRESETS",
    "CausalConvDecoder",
    "CrepeTiny",
    "DDSPAutoencoder",
    "DDSPState",
    "FilteredNoise",
    "HarmonicSynth",
    "MultiScaleSpectralLoss",
    "Reverb",
    "RnnFcDecoder",
    "a_weighting_db",
    "angular_cumsum",
    "compute_loudness",
    "crepe_f0",
    "estimate_f0",
    "exp_sigmoid",
    "hz_to_midi",
    "load_crepe_tiny",
    "midi_to_hz",
    "multiscale_spectral_loss",
    "normalize_harmonics",
    "parameter_bytes",
    "remove_above_nyquist",
    "upsample_linear",
    "upsample_windowed",
    "yin_f0",
]
