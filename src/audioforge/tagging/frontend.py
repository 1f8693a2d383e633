"""PaSST's log-mel front end, numerically equal to the official ``AugmentMelSTFT`` (kkoutini/PaSST, preprocess.py).

Steps, for ``waveform`` of shape ``(batch, n)`` at 32 kHz:

1. pre-emphasis ``y[i] = x[i + 1] - 0.97 x[i]`` (a ``[-0.97, 1]`` convolution): ``n - 1`` samples;
2. STFT with ``torch.stft`` semantics: ``n_fft`` 1024, a *symmetric* Hann window of 800 samples
   (``torch.hann_window(800, periodic=False)``) zero-padded centred to 1024, hop 320, ``center=True`` with reflect
   padding of 512 samples on each side; ``1 + (n - 1) // 320`` frames (a 10 s clip gives 1000; the model's nominal
   input is 998);
3. power ``re**2 + im**2``;
4. Kaldi mel banks ``(128, 512)`` plus one zero Nyquist column (``torchaudio.compliance.kaldi.get_mel_banks``),
   band ``[fmin, fmax]``; with the pretrained configuration (``fmin=0``, ``fmax=None``, ``fmin_aug_range=10``,
   ``fmax_aug_range=2000``) evaluation uses 0 - 15000 Hz;
5. ``log(mel + 1e-5)``;
6. training only: the band edges are drawn once per batch (``fmin + U{0..fmin_aug_range-1}``,
   ``fmax + fmax_aug_range // 2 - U{0..fmax_aug_range-1}``, i.e. fmin in [0, 9] Hz and fmax in [14001, 16000] Hz),
   then SpecAugment: one frequency mask (width < ``freqm``) and one time mask (width < ``timem``) per example,
   drawn independently for every example (torchaudio's ``iid_masks=True`` semantics), filled with 0;
7. ``(x + 4.5) / 5`` and a channel axis: ``(batch, 1, 128, frames)``.

Reflect padding follows ``numpy.pad`` for inputs of any length (``torch.stft`` refuses inputs shorter than the
padding). ``dft="matmul"`` replaces the FFT by one matmul with the window folded into a real DFT basis (no complex
tensors: exportable to ONNX), equal to the FFT path to float32 rounding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import nn

from ..errors import InvalidParameterError
from ..features._io import check_finite_number, check_positive_int
from ..features.dft import rdft_basis
from ..features.kaldi import kaldi_mel_banks
from ..features.stft import pad_signal

__all__ = ["PasstFrontend"]

_DFT_MODES = ("fft", "matmul")


class PasstFrontend(nn.Module):
    """PaSST's mel spectrogram (``AugmentMelSTFT``): waveform ``(batch, n)`` -> ``(batch, 1, n_mels, frames)``.

    Parameters
    ----------
    sample_rate
        Input rate in Hz (32000 for every official checkpoint).
    n_mels, n_fft, win_length, hop_length
        Mel bins, FFT size, Hann window length (symmetric, centred in ``n_fft``), hop in samples.
    fmin, fmax
        Mel band edges in Hz used in evaluation. ``fmax=None`` gives ``sample_rate // 2 - fmax_aug_range // 2``
        (15000 Hz for the pretrained configuration), as the official code does.
    fmin_aug_range, fmax_aug_range
        Training-time jitter of the band edges (1 disables it). The defaults are the values every official
        checkpoint was trained with (10 and 2000); note the official class defaults (1 and 1000) differ.
    freqm, timem
        Maximum SpecAugment mask widths (frequency bins, frames) applied in training; 0 disables a mask.
    preemphasis
        The pre-emphasis coefficient (0.97).
    dft
        ``"fft"`` (``torch.fft.rfft``) or ``"matmul"`` (DFT as a matrix product, for ONNX export).

    Notes
    -----
    ``forward`` in evaluation mode has no host synchronisation and no branch on tensor values. In training mode the
    band edges are drawn with ``torch.randint`` on the CPU (seed with ``torch.manual_seed``) and the mel banks are
    rebuilt for every batch, as in the official code.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 32000,
        n_mels: int = 128,
        n_fft: int = 1024,
        win_length: int = 800,
        hop_length: int = 320,
        fmin: float = 0.0,
        fmax: float | None = None,
        fmin_aug_range: int = 10,
        fmax_aug_range: int = 2000,
        freqm: int = 48,
        timem: int = 192,
        preemphasis: float = 0.97,
        dft: str = "fft",
    ) -> None:
        super().__init__()
        self.sample_rate = check_positive_int(sample_rate, "sample_rate")
        self.n_mels = check_positive_int(n_mels, "n_mels", minimum=3)
        self.n_fft = check_positive_int(n_fft, "n_fft", minimum=2)
        if self.n_fft % 2:
            raise InvalidParameterError(f"n_fft={n_fft} must be even")
        self.win_length = check_positive_int(win_length, "win_length", minimum=2)
        if self.win_length > self.n_fft:
            raise InvalidParameterError(f"win_length={win_length} must be <= n_fft={n_fft}")
        self.hop_length = check_positive_int(hop_length, "hop_length")
        self.fmin_aug_range = check_positive_int(fmin_aug_range, "fmin_aug_range")
        self.fmax_aug_range = check_positive_int(fmax_aug_range, "fmax_aug_range")
        self.freqm = check_positive_int(freqm, "freqm", minimum=0)
        self.timem = check_positive_int(timem, "timem", minimum=0)
        self.preemphasis = check_finite_number(preemphasis, "preemphasis")
        self.fmin = check_finite_number(fmin, "fmin", minimum=0.0)
        nyquist = self.sample_rate / 2
        if fmax is None:
            fmax = self.sample_rate // 2 - self.fmax_aug_range // 2
        self.fmax = check_finite_number(fmax, "fmax")
        if not self.fmin < self.fmax <= nyquist:
            raise InvalidParameterError(f"need 0 <= fmin < fmax <= {nyquist:g} Hz, got fmin={fmin}, fmax={self.fmax}")
        lowest_max = self.fmax + self.fmax_aug_range // 2 - (self.fmax_aug_range - 1)
        highest_max = self.fmax + self.fmax_aug_range // 2
        if highest_max > nyquist or self.fmin + self.fmin_aug_range - 1 >= lowest_max:
            raise InvalidParameterError(
                f"the training jitter (fmin in [{self.fmin:g}, {self.fmin + self.fmin_aug_range - 1:g}], fmax in "
                f"[{lowest_max:g}, {highest_max:g}]) leaves [0, {nyquist:g}] Hz or crosses; reduce the aug ranges"
            )
        if dft not in _DFT_MODES:
            raise InvalidParameterError(f"dft={dft!r}; use one of {list(_DFT_MODES)}")
        self.dft = dft

        win = torch.hann_window(self.win_length, periodic=False, dtype=torch.float64)
        left = (self.n_fft - self.win_length) // 2
        window = F.pad(win, (left, self.n_fft - self.win_length - left))
        self.register_buffer("window", window.float(), persistent=False)
        if dft == "matmul":
            basis = window[:, None] * rdft_basis(self.n_fft, dtype=torch.float64)
            self.register_buffer("dft_basis", basis.float(), persistent=False)
        else:
            self.dft_basis = None
        banks = kaldi_mel_banks(self.n_mels, self.n_fft, self.sample_rate, self.fmin, self.fmax, dtype=torch.float64)
        self.register_buffer("mel_banks", banks.float(), persistent=False)
        self._f64: dict[str, dict[str, torch.Tensor]] = {}

    def _constants(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Window, eval mel banks and DFT basis in ``dtype``: the buffers for float32, rebuilt exactly for float64."""
        if dtype != torch.float64:
            return self.window, self.mel_banks, self.dft_basis
        key = str(device)
        if key not in self._f64:
            win = torch.hann_window(self.win_length, periodic=False, dtype=torch.float64)
            left = (self.n_fft - self.win_length) // 2
            window = F.pad(win, (left, self.n_fft - self.win_length - left))
            banks = kaldi_mel_banks(self.n_mels, self.n_fft, self.sample_rate, self.fmin, self.fmax,
                                    dtype=torch.float64)
            basis = window[:, None] * rdft_basis(self.n_fft, dtype=torch.float64) if self.dft == "matmul" else None
            self._f64[key] = {"window": window.to(device), "banks": banks.to(device),
                              "basis": basis.to(device) if basis is not None else None}
        c = self._f64[key]
        return c["window"], c["banks"], c["basis"]

    # ------------------------------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this front end (JSON values; ``fmax`` resolved)."""
        return {
            "sample_rate": self.sample_rate,
            "n_mels": self.n_mels,
            "n_fft": self.n_fft,
            "win_length": self.win_length,
            "hop_length": self.hop_length,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "fmin_aug_range": self.fmin_aug_range,
            "fmax_aug_range": self.fmax_aug_range,
            "freqm": self.freqm,
            "timem": self.timem,
            "preemphasis": self.preemphasis,
        }

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_mels={self.n_mels}, n_fft={self.n_fft}, win={self.win_length}, "
            f"hop={self.hop_length}, band=[{self.fmin:g}, {self.fmax:g}] Hz, dft={self.dft!r}"
        )

    def num_frames(self, n_samples: int) -> int:
        """Number of frames for ``n_samples`` input samples (``1 + (n - 1) // hop``, pre-emphasis drops one)."""
        return 1 + (int(n_samples) - 1) // self.hop_length

    def min_samples_for_frames(self, frames: int) -> int:
        """The fewest input samples that give at least ``frames`` frames."""
        return (int(frames) - 1) * self.hop_length + 1

    # ------------------------------------------------------------------------------------------------------------

    def power_spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """Pre-emphasis, framing and power spectrum: ``(batch, n)`` -> ``(batch, n_fft // 2 + 1, frames)``."""
        x = waveform[..., 1:] - self.preemphasis * waveform[..., :-1]
        pad = self.n_fft // 2
        if x.shape[-1] > pad:
            x = F.pad(x, (pad, pad), mode="reflect")
        else:  # shorter than the padding: numpy's repeated reflection (torch refuses)
            x = pad_signal(x, pad, pad, "reflect")
        frames = x.unfold(-1, self.n_fft, self.hop_length)  # (batch, frames, n_fft)
        window, _, basis = self._constants(x.dtype, x.device)
        if basis is not None:
            spec = frames @ basis
            half = spec.shape[-1] // 2
            re, im = spec[..., :half], spec[..., half:]
        else:
            z = torch.fft.rfft(frames * window, dim=-1)
            re, im = z.real, z.imag
        return (re * re + im * im).transpose(-1, -2)

    def _train_banks(self, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        fmin = self.fmin + int(torch.randint(self.fmin_aug_range, (1,)))
        fmax = self.fmax + self.fmax_aug_range // 2 - int(torch.randint(self.fmax_aug_range, (1,)))
        banks = kaldi_mel_banks(self.n_mels, self.n_fft, self.sample_rate, fmin, fmax, dtype=torch.float64)
        return banks.to(dtype=dtype, device=device)

    @staticmethod
    def _mask_iid(spec: torch.Tensor, max_width: int, dim: int) -> torch.Tensor:
        """One mask of random width ``< max_width`` and random position per example along ``dim`` (1 or 2)."""
        size = spec.shape[dim]
        param = min(max_width, size)
        batch = spec.shape[0]
        width = torch.rand(batch, device=spec.device) * param
        start = torch.rand(batch, device=spec.device) * (size - width)
        lo = start.long()[:, None]
        hi = lo + width.long()[:, None]
        idx = torch.arange(size, device=spec.device)[None, :]
        mask = (idx >= lo) & (idx < hi)  # (batch, size)
        mask = mask[:, :, None] if dim == 1 else mask[:, None, :]
        return spec.masked_fill(mask, 0.0)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel features ``(batch, 1, n_mels, frames)`` of ``waveform`` ``(batch, n)`` (or ``(n,)``), n >= 2.

        Computed in float32 (as the official code) unless the input is float64, which is computed in float64 end to
        end (window, banks and DFT rebuilt in float64). The input is not checked for NaN (that would synchronise
        the device); validate it beforehand.
        """
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.dim() != 2 or waveform.shape[-1] < 2:
            raise InvalidParameterError(
                f"PasstFrontend expects a waveform of shape (batch, n) with n >= 2, got {tuple(waveform.shape)}"
            )
        x = waveform if waveform.dtype == torch.float64 else waveform.float()
        power = self.power_spectrogram(x)
        banks = self._train_banks(x.device, x.dtype) if self.training else self._constants(x.dtype, x.device)[1]
        mel = torch.matmul(banks, power)
        mel = torch.log(mel + 1e-5)
        if self.training:
            if self.freqm:
                mel = self._mask_iid(mel, self.freqm, 1)
            if self.timem:
                mel = self._mask_iid(mel, self.timem, 2)
        mel = (mel + 4.5) / 5.0
        return mel.unsqueeze(1)
