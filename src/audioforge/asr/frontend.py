"""WeNet's acoustic features: Kaldi fbank on the waveform scaled to the int16 range, batch and streaming.

80 mel bins, 25 ms frames, 10 ms shift, povey window, no energy floor, snipped edges, 16 kHz; ``dither`` is 0 at
inference and 0.1 - 1.0 in training. Input samples are floats in ``[-1, 1]``; they are multiplied by 32768 before
the fbank, as WeNet's ``compute_fbank`` does. Streaming (:class:`StreamingFbank`) gives exactly the frames of the
batch path for any chunking of the input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from ..audio import validate_audio
from ..errors import InvalidParameterError
from ..features.kaldi import kaldi_fbank
from ..features.kaldi_stream import OnlineKaldiFbank

__all__ = ["FbankConfig", "StreamingFbank", "compute_fbank"]

PCM_SCALE = 32768.0


@dataclass(frozen=True)
class FbankConfig:
    """Front-end settings (the ``frontend`` section of an ASR bundle)."""

    num_mel_bins: int = 80
    frame_length: float = 25.0
    frame_shift: float = 10.0
    dither: float = 0.0
    sample_rate: int = 16000
    energy_floor: float = 0.0

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> FbankConfig:
        """Build from a dict, rejecting unknown keys."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidParameterError(f"unknown front-end settings {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def kaldi_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~audioforge.features.kaldi.kaldi_fbank`."""
        return {
            "num_mel_bins": self.num_mel_bins,
            "frame_length": self.frame_length,
            "frame_shift": self.frame_shift,
            "dither": self.dither,
            "energy_floor": self.energy_floor,
            "sample_frequency": float(self.sample_rate),
            "window_type": "povey",
        }

    @property
    def window_samples(self) -> int:
        """Samples per frame."""
        return int(self.sample_rate * 0.001 * self.frame_length)

    @property
    def shift_samples(self) -> int:
        """Samples per frame shift."""
        return int(self.sample_rate * 0.001 * self.frame_shift)


def compute_fbank(
    waveform: Any,
    config: FbankConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    vtln_warp: float = 1.0,
) -> torch.Tensor:
    """Fbank features ``(frames, num_mel_bins)`` (float32) of a mono float waveform at ``config.sample_rate``.

    ``vtln_warp`` warps the mel banks' frequency axis (Kaldi's VTLN, piecewise linear): training uses it as vocal
    tract length perturbation (:attr:`~audioforge.asr.data.AsrDataConfig.vtlp`); 1.0 (no warp) at inference.

    Raises
    ------
    InvalidAudioError
        Not a finite float 1-D signal (subclasses: dtype, shape, non-finite, empty).
    """
    cfg = config or FbankConfig()
    validate_audio(waveform, name="waveform", allow_multichannel=False)
    x = torch.as_tensor(waveform).to(torch.float32) * PCM_SCALE
    return kaldi_fbank(x, generator=generator, vtln_warp=vtln_warp, **cfg.kaldi_options())


class StreamingFbank:
    """Online version of :func:`compute_fbank`: feed float chunks of any size, get the completed frames."""

    def __init__(self, config: FbankConfig | None = None, *, generator: torch.Generator | None = None) -> None:
        self.config = config or FbankConfig()
        self._fbank = OnlineKaldiFbank(generator=generator, **self.config.kaldi_options())

    @property
    def num_frames_ready(self) -> int:
        """Frames returned since the last reset."""
        return self._fbank.num_frames_ready

    def reset(self) -> None:
        """Start a new stream."""
        self._fbank.reset()

    def accept_waveform(self, chunk: Any) -> torch.Tensor:
        """Append float samples (1-D numpy or torch, ``[-1, 1]``); return the new frames ``(k, num_mel_bins)``."""
        arr = chunk.detach().cpu().numpy() if isinstance(chunk, torch.Tensor) else np.asarray(chunk)
        if not np.issubdtype(arr.dtype, np.floating):
            validate_audio(arr, name="chunk", min_samples=0)
        return self._fbank.accept_waveform(arr.astype(np.float32, copy=False) * np.float32(PCM_SCALE))
