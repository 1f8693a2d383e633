"""Audio tagging with a PaSST bundle: :class:`Tagger` (load once, call on audio) and its :class:`TaggingResult`.

Input handling, stated explicitly because nothing happens silently:

* audio of shape ``(n,)`` or ``(batch, n)`` (numpy or torch, float) at any supported rate is resampled to the
  bundle's rate (32 kHz for PaSST) with :func:`audioforge.audio.resample` (soxr HQ);
* a clip no longer than the analysis window (10 s by default, at most what the time embeddings cover) runs in one
  pass; shorter clips use the first time embeddings, as in the official evaluation;
* a clip shorter than one patch (16 frames = 4801 samples, about 0.15 s at 32 kHz) is zero-padded on the right to
  that length (:attr:`TaggingResult.padded` tells);
* a longer clip is cut into windows of ``window_seconds`` every ``hop_seconds`` (the last window ends at the end of
  the clip); the clip-level probabilities and embeddings are the means over windows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..audio import resample, validate_audio, validate_sample_rate
from ..bundle import Bundle
from ..errors import AudioShapeError, CheckpointError, InvalidParameterError
from .frontend import PasstFrontend
from .model import PaSST

__all__ = ["DEFAULT_BUNDLE", "Tagger", "TaggingResult", "build_tagging_modules"]

#: Name of the shipped default tagger bundle (used when it exists under ``audioforge/assets/bundles/``).
DEFAULT_BUNDLE = "tagger"


def build_tagging_modules(bundle: Bundle, *, device: str | torch.device = "cpu") -> tuple[PaSST, PasstFrontend]:
    """Build the model (weights loaded strictly, eval mode) and the front end described by a tagging bundle.

    The model is created on the meta device and the bundle's tensors are assigned to it (no random initialisation
    of a model that is overwritten anyway), then moved to ``device``: on the CPU the parameters share memory with
    ``bundle.state_dict`` (clone the bundle's tensors first if you will modify the model in place and keep the
    bundle).

    Raises
    ------
    CheckpointError
        Not a tagging bundle, hyper-parameters or front-end settings PaSST does not accept, weights whose keys or
        shapes differ from the architecture, or a label count that differs from the classes.
    """
    if bundle.task != "tagging":
        raise CheckpointError(f"the bundle is for task {bundle.task!r}, not 'tagging'")
    try:
        with torch.device("meta"):
            model = PaSST(**bundle.hyperparameters)
        frontend = PasstFrontend(**bundle.frontend)
    except (TypeError, InvalidParameterError) as exc:
        raise CheckpointError(f"the bundle's configuration is not a valid PaSST set-up: {exc}") from exc
    bundle.check_state_dict(model.state_dict())
    model.load_state_dict({k: v.float() for k, v in bundle.state_dict.items()}, strict=True, assign=True)
    if bundle.labels and len(bundle.labels) != model.num_classes:
        raise CheckpointError(f"the bundle has {len(bundle.labels)} labels for {model.num_classes} classes")
    return model.to(device).eval(), frontend.to(device).eval()


@dataclass
class TaggingResult:
    """Tagging output for one clip (1-D input) or a batch (2-D input).

    Attributes
    ----------
    probs
        ``(classes,)`` or ``(batch, classes)``: sigmoid (multi-label) or softmax (single-label) probabilities,
        averaged over windows for long clips.
    logits
        Raw scores, same shape (mean over windows).
    embeddings
        ``(D,)`` or ``(batch, D)``: the model's pooled features (768-d for PaSST-S), mean over windows.
    labels
        Class names in output order.
    duration
        Seconds of input audio (before any padding).
    n_windows
        Analysis windows used per clip.
    padded
        True when the clip was shorter than one patch and was zero-padded.
    """

    probs: np.ndarray
    logits: np.ndarray
    embeddings: np.ndarray
    labels: list[str]
    duration: float
    n_windows: int
    padded: bool
    frame_times: np.ndarray = field(repr=False)
    frame_probs: np.ndarray = field(repr=False)

    @property
    def batched(self) -> bool:
        """True when the input was a batch ``(batch, n)``."""
        return self.probs.ndim == 2

    def top_k(self, k: int = 5) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
        """The ``k`` most probable ``(label, probability)`` pairs, best first (a list per clip for a batch)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidParameterError(f"k must be a positive integer, got {k!r}")
        k = min(int(k), self.probs.shape[-1])

        def one(p: np.ndarray) -> list[tuple[str, float]]:
            idx = np.argsort(-p, kind="stable")[:k]
            return [(self.labels[i], float(p[i])) for i in idx]

        return [one(p) for p in self.probs] if self.batched else one(self.probs)

    def timeline(self, hop_seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frame-level probabilities over time (an audioforge extension; see :meth:`PaSST.forward_timeline`).

        Parameters
        ----------
        hop_seconds
            None: the model's native resolution (one value per time patch: 0.1 s for stride 10, centred on each
            patch's 16 frames). Otherwise the curves are linearly interpolated onto a grid with this spacing,
            starting at the first native time.

        Returns
        -------
        (times, probs)
            ``times`` in seconds ``(T,)``; ``probs`` ``(T, classes)`` or ``(batch, T, classes)``.
        """
        if hop_seconds is None:
            return self.frame_times.copy(), self.frame_probs.copy()
        if isinstance(hop_seconds, bool) or not isinstance(hop_seconds, (int, float)) or not hop_seconds > 0:
            raise InvalidParameterError(f"hop_seconds must be a positive number of seconds, got {hop_seconds!r}")
        t0, t1 = float(self.frame_times[0]), float(self.frame_times[-1])
        times = t0 + hop_seconds * np.arange(math.floor((t1 - t0) / hop_seconds + 1e-9) + 1)
        return times, _interp_last_axis(times, self.frame_times, self.frame_probs)


def _interp_last_axis(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """``np.interp`` along the time axis (-2) of ``fp`` (``(..., T, C)``)."""
    if len(xp) == 1:
        return np.repeat(fp, len(x), axis=-2)
    pos = np.clip(np.searchsorted(xp, x, side="right") - 1, 0, len(xp) - 2)
    w = ((x - xp[pos]) / (xp[pos + 1] - xp[pos])).clip(0.0, 1.0)[:, None]
    return (fp[..., pos, :] * (1.0 - w) + fp[..., pos + 1, :] * w).astype(fp.dtype)


class Tagger:
    """A PaSST audio tagger: ``Tagger.load(bundle)(audio, sr)`` -> :class:`TaggingResult`.

    Parameters
    ----------
    model, frontend
        The network and its front end (put in eval mode here).
    labels
        Class names (index names when empty).
    multi_label
        Sigmoid outputs (True, AudioSet) or softmax (False, single-label tasks such as ESC-50).
    window_seconds
        Length of the analysis window for long clips (default 10 s, the official models' span); at most the span
        the time embeddings cover.
    hop_seconds
        Hop between windows (default 5 s); at most ``window_seconds``.
    max_batch
        Segments (windows times clips) per forward pass, to bound memory (a batch larger than this still runs
        one window of every clip per pass).
    """

    def __init__(
        self,
        model: PaSST,
        frontend: PasstFrontend,
        labels: Sequence[str] = (),
        *,
        multi_label: bool = True,
        window_seconds: float = 10.0,
        hop_seconds: float = 5.0,
        max_batch: int = 8,
    ) -> None:
        self.model = model.eval()
        self.frontend = frontend.eval()
        self.labels = list(labels) if labels else [f"class_{i:03d}" for i in range(model.num_classes)]
        if len(self.labels) != model.num_classes:
            raise InvalidParameterError(f"{len(self.labels)} labels for a model with {model.num_classes} classes")
        self.multi_label = bool(multi_label)
        sr = frontend.sample_rate
        self.max_samples = model.max_frames * frontend.hop_length
        self.min_samples = frontend.min_samples_for_frames(model.min_frames)
        for name, value in (("window_seconds", window_seconds), ("hop_seconds", hop_seconds)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidParameterError(f"{name} must be a positive number of seconds, got {value!r}")
        self.window = round(window_seconds * sr)
        self.hop = round(hop_seconds * sr)
        if not self.min_samples <= self.window <= self.max_samples:
            raise InvalidParameterError(
                f"window_seconds={window_seconds} is outside what the model covers in one pass: "
                f"[{self.min_samples / sr:.3f}, {self.max_samples / sr:.3f}] s"
            )
        if not 1 <= self.hop <= self.window:
            raise InvalidParameterError(f"hop_seconds={hop_seconds} must be in (0, window_seconds={window_seconds}]")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise InvalidParameterError(f"max_batch must be a positive integer, got {max_batch!r}")
        self.max_batch = max_batch

    @classmethod
    def load(
        cls,
        bundle_or_path: Bundle | str | os.PathLike[str] = DEFAULT_BUNDLE,
        *,
        device: str | torch.device = "cpu",
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        max_batch: int = 8,
    ) -> Tagger:
        """Build a tagger from a :class:`~audioforge.bundle.Bundle`, a bundle folder or a shipped bundle name.

        ``window_seconds`` defaults to 10 s, or to the span of the model's time embeddings when that is shorter;
        ``hop_seconds`` defaults to half the window.

        Raises
        ------
        CheckpointError
            The bundle cannot be found or does not describe a valid PaSST tagger with matching weights.
        """
        bundle = bundle_or_path if isinstance(bundle_or_path, Bundle) else Bundle.load(bundle_or_path)
        model, frontend = build_tagging_modules(bundle, device=device)
        if window_seconds is None:
            window_seconds = min(10.0, model.max_frames * frontend.hop_length / frontend.sample_rate)
        if hop_seconds is None:
            hop_seconds = window_seconds / 2
        return cls(
            model,
            frontend,
            bundle.labels,
            multi_label=bool(bundle.options.get("multi_label", True)),
            window_seconds=window_seconds,
            hop_seconds=hop_seconds,
            max_batch=max_batch,
        )

    @property
    def sample_rate(self) -> int:
        """The rate the model runs at (inputs at other rates are resampled to it)."""
        return self.frontend.sample_rate

    @property
    def device(self) -> torch.device:
        return self.frontend.window.device

    # ------------------------------------------------------------------------------------------------------------

    def _prepare(self, audio: Any, sr: Any) -> tuple[torch.Tensor, bool, int]:
        sr = validate_sample_rate(sr)
        validate_audio(audio, name="audio", max_ndim=2)
        single = audio.ndim == 1
        if not single and audio.shape[0] == 0:
            raise AudioShapeError("audio has shape (0, n): an empty batch")
        if sr != self.sample_rate:
            audio = resample(audio, sr, self.sample_rate)
        x = audio.detach() if isinstance(audio, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(audio))
        x = x.to(device=self.device, dtype=torch.float32)
        if single:
            x = x.unsqueeze(0)
        return x, single, x.shape[-1]

    def _starts(self, n: int) -> list[int]:
        if n <= self.window:
            return [0]
        starts = list(range(0, n - self.window + 1, self.hop))
        if starts[-1] + self.window < n:
            starts.append(n - self.window)
        return starts

    def _frame_centres(self, n_columns: int) -> np.ndarray:
        """Seconds (from the window start) of the centre of each time patch: frame k is centred at k * hop."""
        m = self.model
        centre_frames = np.arange(n_columns) * m.stride[1] + (m.patch_size - 1) / 2
        return centre_frames * self.frontend.hop_length / self.sample_rate

    @torch.inference_mode()
    def __call__(self, audio: Any, sr: int) -> TaggingResult:
        """Tag ``audio`` of shape ``(n,)`` or ``(batch, n)`` sampled at ``sr`` Hz.

        Raises
        ------
        AudioDTypeError, AudioShapeError, EmptyAudioError, NonFiniteAudioError
            Integer samples, rank other than 1 or 2, no samples, NaN or Inf.
        UnsupportedSampleRateError
            ``sr`` is not a whole number of Hz in [1 kHz, 768 kHz].
        """
        x, single, n = self._prepare(audio, sr)
        duration = n / self.sample_rate
        padded = n < self.min_samples
        if padded:
            x = torch.nn.functional.pad(x, (0, self.min_samples - n))
            n = self.min_samples
        starts = self._starts(n)
        length = min(n, self.window)
        batch = x.shape[0]
        per_pass = max(1, self.max_batch // batch)  # windows per forward pass (each brings `batch` clips)
        logits, feats, frames = [], [], []
        for i in range(0, len(starts), per_pass):
            chunk = starts[i : i + per_pass]
            seg = torch.stack([x[:, s : s + length] for s in chunk], dim=1).reshape(-1, length)  # (batch * w, L)
            lg, ft, fr = self.model.forward_timeline(self.frontend(seg))
            logits.append(lg.reshape(batch, len(chunk), -1))
            feats.append(ft.reshape(batch, len(chunk), -1))
            frames.append(fr.reshape(batch, len(chunk), fr.shape[1], -1))
        lg, ft, fr = torch.cat(logits, dim=1), torch.cat(feats, dim=1), torch.cat(frames, dim=1)
        act = torch.sigmoid if self.multi_label else (lambda t: torch.softmax(t, dim=-1))
        probs = act(lg).mean(dim=1).float().cpu().numpy()
        frame_probs = act(fr).float().cpu().numpy()  # (batch, windows, columns, classes)
        times, merged = self._merge_timeline(frame_probs, starts)
        out_logits = lg.mean(dim=1).float().cpu().numpy()
        emb = ft.mean(dim=1).float().cpu().numpy()
        if single:
            probs, out_logits, emb, merged = probs[0], out_logits[0], emb[0], merged[0]
        return TaggingResult(
            probs=probs,
            logits=out_logits,
            embeddings=emb,
            labels=list(self.labels),
            duration=duration,
            n_windows=len(starts),
            padded=padded,
            frame_times=times,
            frame_probs=merged,
        )

    def _merge_timeline(self, frame_probs: np.ndarray, starts: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Average the windows' per-column curves on one grid spaced like the columns (overlaps averaged)."""
        centres = self._frame_centres(frame_probs.shape[2])
        if len(starts) == 1:
            return centres, frame_probs[:, 0]
        sr = self.sample_rate
        step = self.model.stride[1] * self.frontend.hop_length / sr
        end = starts[-1] / sr + centres[-1]
        grid = centres[0] + step * np.arange(math.floor((end - centres[0]) / step + 1e-9) + 1)
        total = np.zeros((frame_probs.shape[0], len(grid), frame_probs.shape[-1]), dtype=np.float64)
        count = np.zeros(len(grid))
        for w, s in enumerate(starts):
            t = s / sr + centres
            inside = (grid >= t[0] - 1e-9) & (grid <= t[-1] + 1e-9)
            if inside.any():
                total[:, inside] += _interp_last_axis(grid[inside], t, frame_probs[:, w])
                count[inside] += 1
        if (count == 0).any():  # gaps between windows (hop close to the window): interpolate the merged curve
            ok = count > 0
            total[:, ok] /= count[ok, None]
            total[:, ~ok] = _interp_last_axis(grid[~ok], grid[ok], total[:, ok])
            return grid, total.astype(np.float32)
        return grid, (total / count[:, None]).astype(np.float32)
