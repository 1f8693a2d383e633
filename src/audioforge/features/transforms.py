"""``nn.Module`` transforms for the librosa-style features: :class:`MelSpectrogram`, :class:`LogMel`, :class:`MFCC`.

Each module validates its parameters once in ``__init__`` and caches its constants (window, mel basis, DFT basis,
DCT matrix) as non-persistent buffers, so ``forward`` is a short chain of tensor ops with no ``.item()``, no Python
branch on tensor values, no input validation and therefore no host sync: it runs under
``torch.compile(fullgraph=True)`` and CUDA-graph capture. Call :meth:`MelSpectrogram.validate` (or
:func:`audioforge.audio.validate_audio`) outside hot loops when the input is untrusted.

The results equal the functional API (:func:`~audioforge.features.melspectrogram`,
:func:`~audioforge.features.power_to_db`, :func:`~audioforge.features.mfcc`) with the same arguments. The buffers
are rebuilt from their float64 definitions whenever the module changes dtype or device (``module.double()``,
``module.to("cuda")``), so a float64 module is float64 end to end rather than a float32 basis cast up; the input
must have the module's dtype.

``dft="fft"`` (default) uses ``torch.fft.rfft``; ``dft="matmul"`` multiplies the frames by a cached
``(n_fft, 2 * (n_fft // 2 + 1))`` real DFT basis with the window folded in (:func:`~audioforge.features.rdft_basis`):
no complex tensors, so it exports to ONNX with any opset and compiles with inductor; it costs ``O(n_fft**2)`` per
frame instead of ``O(n_fft log n_fft)``, which is cheap for the usual 400-1024 point frames on accelerators.
``dft="factored"`` keeps those properties at ``O(n_fft**1.5)``: one Cooley-Tukey step as two matmuls
(:func:`~audioforge.features.dft.factored_power`, composite ``n_fft`` only), 3-4x faster than ``"matmul"`` over many
frames at ``n_fft = 1024`` (more at 2048), slower for one frame at a time (more, smaller ops).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..audio import validate_audio
from ..errors import InvalidParameterError
from ._io import check_finite_number, check_positive_int, check_power
from .dft import factored_power, factored_rdft_bases, rdft_basis, rdft_factors
from .mel import mel_filterbank, mel_filterbank_tensor
from .spectral import dct_matrix
from .stft import check_pad_mode, frame_signal, pad_signal, resolve_frame_params, stft_window

__all__ = ["DFT_MODES", "MFCC", "LogMel", "MelSpectrogram"]

#: The ways the modules compute the DFT of a frame.
DFT_MODES = ("fft", "matmul", "factored")


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_dft(dft: Any) -> str:
    if dft not in DFT_MODES:
        raise InvalidParameterError(
            f"dft={dft!r}; use 'fft' (torch.fft.rfft), 'matmul' (real DFT basis: ONNX/inductor friendly) or "
            "'factored' (the same as two smaller matmuls: faster over many frames)"
        )
    return dft


def _check_db(ref: Any, amin: Any, top_db: Any) -> tuple[float, float, float | None]:
    if isinstance(ref, str) or callable(ref):
        raise InvalidParameterError(
            f"ref={ref!r}: the modules take a fixed number; 'max'/callables depend on the data (use the functional "
            "power_to_db for those)"
        )
    ref = abs(check_finite_number(ref, "ref"))
    amin = check_finite_number(amin, "amin")
    if amin <= 0:
        raise InvalidParameterError(f"amin must be strictly positive, got {amin}")
    if top_db is not None:
        top_db = check_finite_number(top_db, "top_db", minimum=0.0)
    return ref, amin, top_db


class _RebuildOnApply(nn.Module):
    """A module whose constant buffers are rebuilt by :meth:`_make_buffers` when its dtype or device changes.

    ``module.double()`` would otherwise cast float32 constants up (a float32 mel basis in float64 clothing); here the
    buffers are recomputed for the new dtype and device from their float64 definitions, exactly as the functional
    API builds them for input of that dtype.
    """

    def _make_buffers(self, dtype: torch.dtype, device: Any) -> dict[str, torch.Tensor]:
        raise TypeError(f"{type(self).__name__} must define _make_buffers(dtype, device) returning its constants")

    def _register_constants(self, dtype: torch.dtype, device: Any) -> None:
        for name, value in self._make_buffers(dtype, device).items():
            self.register_buffer(name, value, persistent=False)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> nn.Module:
        super()._apply(fn, recurse)
        names = list(self._make_buffers_names())
        if names:
            probe = getattr(self, names[0])
            if probe is not None and probe.is_floating_point():
                for name, value in self._make_buffers(probe.dtype, probe.device).items():
                    setattr(self, name, value)
        return self

    def _make_buffers_names(self) -> tuple[str, ...]:
        return ()


class MelSpectrogram(_RebuildOnApply):
    """Mel spectrogram as a module, equal to :func:`~audioforge.features.melspectrogram` with the same arguments.

    Parameters
    ----------
    sr, n_fft, hop_length, win_length, window, center, pad_mode, power
        STFT settings with librosa's ``melspectrogram`` defaults (22050 Hz, 2048, hop 512, ``win_length=n_fft``,
        Hann, centred, ``pad_mode='constant'``, power 2).
    n_mels, fmin, fmax, htk, norm
        Mel filterbank settings (:func:`~audioforge.features.mel_filterbank`).
    dft
        ``"fft"`` (``torch.fft.rfft``), ``"matmul"`` (window folded into a real DFT basis: no complex tensors,
        exports to ONNX, compiles with inductor) or ``"factored"`` (as ``"matmul"`` but one Cooley-Tukey step as two
        smaller matmuls: faster over many frames; ``n_fft`` must not be prime).
    dtype
        dtype of the cached constants and of the expected input (float32 default; ``.double()`` also works).

    Notes
    -----
    ``forward(y)`` maps ``(..., n)`` to ``(..., n_mels, n_frames)``. It does not validate ``y`` (that would sync the
    device); with ``center=False`` an input shorter than ``n_fft`` raises (a shape check, no sync).
    """

    def __init__(
        self,
        *,
        sr: float = 22050,
        n_fft: int = 2048,
        hop_length: int = 512,
        win_length: int | None = None,
        window: Any = "hann",
        center: bool = True,
        pad_mode: str = "constant",
        power: float = 2.0,
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: float | None = None,
        htk: bool = False,
        norm: str | float | None = "slaney",
        dft: str = "fft",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        n_fft, hop_length, win_length = resolve_frame_params(n_fft, hop_length, win_length)
        self.center = _check_bool(center, "center")
        check_pad_mode(pad_mode, self.center)
        power = check_power(power)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise InvalidParameterError(f"dtype must be a torch float dtype, got {dtype!r}")
        n_mels = check_positive_int(n_mels, "n_mels")
        mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)  # validates
        self.sr, self.n_fft, self.hop_length, self.win_length = sr, n_fft, hop_length, win_length
        self.window_spec, self.pad_mode, self.power = window, pad_mode, power
        self.n_mels, self.fmin, self.fmax, self.htk, self.norm = n_mels, fmin, fmax, htk, norm
        self.dft = _check_dft(dft)
        if self.dft == "factored" and rdft_factors(n_fft) is None:
            raise InvalidParameterError(f"dft='factored' needs a composite n_fft, got the prime {n_fft}; use "
                                        "dft='matmul'")
        self.n_freq = n_fft // 2 + 1
        self._register_constants(dtype, "cpu")

    def _make_buffers_names(self) -> tuple[str, ...]:
        return ("window", "mel_basis", "dft_basis", "dft_stage1", "dft_stage2")

    def _make_buffers(self, dtype: torch.dtype, device: Any) -> dict[str, torch.Tensor]:
        window = stft_window(self.window_spec, self.win_length, self.n_fft, dtype=dtype, device=device).clone()
        basis = mel_filterbank_tensor(sr=self.sr, n_fft=self.n_fft, n_mels=self.n_mels, fmin=self.fmin,
                                      fmax=self.fmax, htk=self.htk, norm=self.norm, dtype=dtype, device=device)
        out = {"window": window, "mel_basis": basis.clone()}
        if self.dft == "matmul":
            w64 = stft_window(self.window_spec, self.win_length, self.n_fft, dtype=torch.float64)
            folded = w64[:, None] * rdft_basis(self.n_fft, dtype=torch.float64)
            out["dft_basis"] = folded.to(dtype=dtype, device=device)
        else:
            out["dft_basis"] = torch.empty(0, dtype=dtype, device=device)
        if self.dft == "factored":
            out["dft_stage1"], out["dft_stage2"] = factored_rdft_bases(self.n_fft, dtype=dtype, device=device)
        else:
            out["dft_stage1"] = out["dft_stage2"] = torch.empty(0, dtype=dtype, device=device)
        return out

    def extra_repr(self) -> str:
        return (
            f"sr={self.sr}, n_fft={self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length}, "
            f"center={self.center}, pad_mode={self.pad_mode!r}, power={self.power}, n_mels={self.n_mels}, "
            f"fmin={self.fmin}, fmax={self.fmax}, htk={self.htk}, norm={self.norm!r}, dft={self.dft!r}"
        )

    def validate(self, y: Any) -> None:
        """Check ``y`` as the functional API does (float dtype, finite samples; syncs the device)."""
        validate_audio(y, name="y", min_samples=1 if self.center else self.n_fft)

    def frame_power(self, frames: torch.Tensor) -> torch.Tensor:
        """``|rfft(frames * window)|**power`` of frames already cut: ``(..., n_fft)`` -> ``(..., 1 + n_fft // 2)``."""
        if self.dft == "matmul":
            out = torch.matmul(frames, self.dft_basis)
            re, im = out[..., : self.n_freq], out[..., self.n_freq :]
            sq = re * re + im * im
            if self.power == 2.0:
                return sq
            return torch.sqrt(sq) if self.power == 1.0 else torch.pow(sq, self.power / 2.0)
        if self.dft == "factored":
            sq = factored_power(frames * self.window, self.dft_stage1, self.dft_stage2)
            if self.power == 2.0:
                return sq
            return torch.sqrt(sq) if self.power == 1.0 else torch.pow(sq, self.power / 2.0)
        spec = torch.fft.rfft(frames * self.window, dim=-1)
        if self.power == 2.0:
            return spec.real.square() + spec.imag.square()
        mag = spec.abs()
        return mag if self.power == 1.0 else mag**self.power

    def frame_mel(self, frames: torch.Tensor) -> torch.Tensor:
        """Mel spectrum of frames already cut (time-major): ``(..., n_fft)`` -> ``(..., n_mels)``."""
        return torch.matmul(self.frame_power(frames), self.mel_basis.T)

    def frames(self, y: torch.Tensor) -> torch.Tensor:
        """Cut ``y`` ``(..., n)`` into (centre-padded) frames ``(..., n_frames, n_fft)`` as the batch function does.

        For the usual case (signal longer than the padding) the index-based pad modes are written with slices and
        flips, which export to ONNX with a dynamic length; shorter signals take :func:`pad_signal`'s general path
        (numpy's repeated reflection). Both give the same samples.
        """
        half = self.n_fft // 2
        n = y.shape[-1]
        if not self.center or half == 0:
            return frame_signal(y, n_fft=self.n_fft, hop_length=self.hop_length, center=self.center,
                                pad_mode=self.pad_mode)
        mode = self.pad_mode
        if mode == "reflect" and n > half:
            y = torch.cat([y[..., 1 : half + 1].flip(-1), y, y[..., n - half - 1 : n - 1].flip(-1)], dim=-1)
        elif mode == "symmetric" and n >= half:
            y = torch.cat([y[..., :half].flip(-1), y, y[..., n - half :].flip(-1)], dim=-1)
        elif mode == "edge":
            lead = y.shape[:-1]
            y = torch.cat([y[..., :1].expand(*lead, half), y, y[..., n - 1 :].expand(*lead, half)], dim=-1)
        else:
            y = pad_signal(y, half, half, mode)
        return y.unfold(-1, self.n_fft, self.hop_length)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Mel spectrogram of ``y`` ``(..., n)`` -> ``(..., n_mels, n_frames)``."""
        return self.frame_mel(self.frames(y)).transpose(-1, -2)


def _mel_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    if "S" in kwargs or "y" in kwargs:
        raise InvalidParameterError("the modules take the samples in forward(); do not pass y or S to __init__")
    return kwargs


class LogMel(_RebuildOnApply):
    """Log-power mel spectrogram: :class:`MelSpectrogram` followed by ``power_to_db``.

    Parameters
    ----------
    ref, amin, top_db
        As :func:`~audioforge.features.power_to_db` (``ref`` must be a number here).
    top_db_per_example
        librosa's ``top_db`` floor uses the maximum over the WHOLE array: for a batch ``(B, n)`` one loud item
        raises the floor of all the others. With ``top_db_per_example=True`` the maximum is taken per example,
        over each item's last two dims (mel bands and frames), as torchaudio's ``AmplitudeToDB`` does. For a
        single example both agree.
    **mel_kwargs
        Keyword arguments of :class:`MelSpectrogram` (``sr``, ``n_fft``, ``hop_length``, ..., ``dft``, ``dtype``).

    Notes
    -----
    Equal to ``power_to_db(melspectrogram(y, ...), ref=ref, amin=amin, top_db=top_db)``, computed with tensor ops only
    (no ``.item()``).
    """

    def __init__(
        self,
        *,
        ref: float = 1.0,
        amin: float = 1e-10,
        top_db: float | None = 80.0,
        top_db_per_example: bool = False,
        **mel_kwargs: Any,
    ) -> None:
        super().__init__()
        self.mel = MelSpectrogram(**_mel_kwargs(mel_kwargs))
        self.ref, self.amin, self.top_db = _check_db(ref, amin, top_db)
        self.top_db_per_example = _check_bool(top_db_per_example, "top_db_per_example")
        self._register_constants(self.mel.window.dtype, "cpu")

    def _make_buffers_names(self) -> tuple[str, ...]:
        return ("amin_t", "ref_db")

    def _make_buffers(self, dtype: torch.dtype, device: Any) -> dict[str, torch.Tensor]:
        amin = torch.tensor(self.amin, dtype=dtype, device=device)
        ref = torch.tensor(self.ref, dtype=dtype, device=device)
        # the same ops as power_to_db, so the offset is bit-identical to the functional API's
        return {"amin_t": amin, "ref_db": 10.0 * torch.log10(torch.maximum(ref, amin))}

    def extra_repr(self) -> str:
        return f"ref={self.ref}, amin={self.amin}, top_db={self.top_db}, top_db_per_example={self.top_db_per_example}"

    def validate(self, y: Any) -> None:
        """Check ``y`` as the functional API does (syncs the device)."""
        self.mel.validate(y)

    def db(self, mel: torch.Tensor) -> torch.Tensor:
        """``power_to_db`` of a mel spectrogram ``(..., n_mels, t)`` with this module's settings."""
        log_spec = 10.0 * torch.log10(torch.maximum(mel, self.amin_t)) - self.ref_db
        if self.top_db is not None:
            # an explicit dim list (not amax()) keeps the dynamo ONNX exporter happy
            dims = (-2, -1) if self.top_db_per_example else tuple(range(log_spec.dim()))
            peak = log_spec.amax(dim=dims, keepdim=True)
            log_spec = torch.maximum(log_spec, peak - self.top_db)
        return log_spec

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Log-mel spectrogram (dB) of ``y`` ``(..., n)`` -> ``(..., n_mels, n_frames)``."""
        return self.db(self.mel(y))


class MFCC(_RebuildOnApply):
    """MFCCs as a module, equal to :func:`~audioforge.features.mfcc` with the same arguments.

    Parameters
    ----------
    n_mfcc, dct_type, norm, lifter
        As :func:`~audioforge.features.mfcc` (20, type-2, ``'ortho'``, no liftering). ``norm`` is the DCT's; the mel
        filterbank's normalisation is ``mel_norm``.
    mel_norm
        ``norm`` of the mel filterbank (``'slaney'`` default, as ``librosa.feature.mfcc``).
    ref, amin, top_db, top_db_per_example
        The ``power_to_db`` step (librosa's ``mfcc`` uses ``ref=1``, ``amin=1e-10``, ``top_db=80`` over the whole
        array); see :class:`LogMel`.
    **mel_kwargs
        Keyword arguments of :class:`MelSpectrogram` except ``norm`` (``sr``, ``n_fft``, ..., ``dft``, ``dtype``).

    Notes
    -----
    ``forward`` maps ``(..., n)`` to ``(..., n_mfcc, n_frames)``. The lifter is folded into the cached DCT matrix
    (computed in float64).
    """

    def __init__(
        self,
        *,
        n_mfcc: int = 20,
        dct_type: int = 2,
        norm: str | None = "ortho",
        lifter: float = 0.0,
        mel_norm: str | float | None = "slaney",
        ref: float = 1.0,
        amin: float = 1e-10,
        top_db: float | None = 80.0,
        top_db_per_example: bool = False,
        **mel_kwargs: Any,
    ) -> None:
        super().__init__()
        self.log_mel = LogMel(ref=ref, amin=amin, top_db=top_db, top_db_per_example=top_db_per_example,
                              norm=mel_norm, **_mel_kwargs(mel_kwargs))
        n_mels = self.log_mel.mel.n_mels
        lifter = check_finite_number(lifter, "lifter")
        if lifter < 0:
            raise InvalidParameterError(f"lifter must be a non-negative number, got {lifter}")
        dct_matrix(n_mels, check_positive_int(n_mfcc, "n_mfcc"), dct_type=dct_type, norm=norm)  # validates
        self.n_mfcc, self.dct_type, self.dct_norm, self.lifter = int(n_mfcc), dct_type, norm, lifter
        self._register_constants(self.log_mel.mel.window.dtype, "cpu")

    def _make_buffers_names(self) -> tuple[str, ...]:
        return ("dct",)

    def _make_buffers(self, dtype: torch.dtype, device: Any) -> dict[str, torch.Tensor]:
        D = dct_matrix(self.log_mel.mel.n_mels, self.n_mfcc, dct_type=self.dct_type, norm=self.dct_norm,
                       dtype=torch.float64)
        if self.lifter > 0:
            k = torch.arange(1, 1 + self.n_mfcc, dtype=torch.float64)
            D = D * (1.0 + (self.lifter / 2.0) * torch.sin(torch.pi * k / self.lifter))[:, None]
        return {"dct": D.to(dtype=dtype, device=device)}

    def extra_repr(self) -> str:
        return f"n_mfcc={self.n_mfcc}, dct_type={self.dct_type}, norm={self.dct_norm!r}, lifter={self.lifter}"

    def validate(self, y: Any) -> None:
        """Check ``y`` as the functional API does (syncs the device)."""
        self.log_mel.validate(y)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """MFCCs of ``y`` ``(..., n)`` -> ``(..., n_mfcc, n_frames)``."""
        return torch.matmul(self.dct, self.log_mel(y))
