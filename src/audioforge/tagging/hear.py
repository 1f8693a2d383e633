"""The HEAR 2021 API (https://hearbenchmark.com, ``docs/hear-api.md``) for PaSST, following hear21passt.

``load_model(model_file_path)`` returns a module with ``sample_rate`` (32000), ``scene_embedding_size`` and
``timestamp_embedding_size``; ``get_scene_embeddings(audio, model)`` and ``get_timestamp_embeddings(audio, model)``
take mono audio ``(n_sounds, n_samples)`` in [-1, 1] at ``model.sample_rate`` and return float32 CPU tensors.

Conventions (those of hear21passt 0.0.26):

* an embedding is ``concat(logits, features)`` (mode ``"all"``: 527 + 768 = 1295 for PaSST-S), or only the logits
  (``"logits"``) or only the features (``"features"``);
* scene embeddings: clips up to 10 s in one pass (clips shorter than one patch, about 0.15 s, are zero-padded on
  the right); longer clips are reflect-padded by 5 s on both sides, cut into 10 s windows every 2.5 s, and the
  window embeddings averaged;
* timestamp embeddings: the clip is reflect-padded by 80 ms on both sides and cut into 160 ms windows every 50 ms;
  each window is embedded on its own; timestamps are the window centres in milliseconds: ``0, 50, 100, ...``
  (``1 + n // 1600`` of them at 32 kHz, the last one never after the end of the clip).

``load_model("")`` uses the shipped default tagger bundle when one ships. None does yet: then it builds a randomly
initialised ``passt_mini`` and warns that its embeddings are only good for exercising the API.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..audio import validate_audio
from ..bundle import Bundle, available_bundles
from ..errors import AudioShapeError, InvalidParameterError
from ..features.stft import pad_signal
from .frontend import PasstFrontend
from .infer import DEFAULT_BUNDLE, build_tagging_modules
from .model import PaSST, build_passt

__all__ = ["PasstHearModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]

_MODES = ("all", "logits", "features")


class PasstHearModel(nn.Module):
    """A PaSST model and its front end wrapped for the HEAR API.

    Parameters
    ----------
    model, frontend
        The network and its front end (eval mode).
    mode
        ``"all"`` (logits and features concatenated), ``"logits"`` or ``"features"``.
    timestamp_window_ms, timestamp_hop_ms
        Window and hop of the timestamp embeddings (160 ms and 50 ms).
    scene_window_ms, scene_hop_ms
        Window and hop for scene embeddings of clips longer than the window (10 s and 2.5 s).
    max_batch
        Windows (times sounds) per forward pass, to bound memory.
    """

    def __init__(
        self,
        model: PaSST,
        frontend: PasstFrontend,
        *,
        mode: str = "all",
        timestamp_window_ms: float = 160.0,
        timestamp_hop_ms: float = 50.0,
        scene_window_ms: float = 10000.0,
        scene_hop_ms: float = 2500.0,
        max_batch: int = 64,
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise InvalidParameterError(f"mode={mode!r}; use one of {list(_MODES)}")
        self.model = model.eval()
        self.frontend = frontend.eval()
        self.mode = mode
        self.sample_rate = int(frontend.sample_rate)
        sizes = {"all": model.num_classes + model.embed_dim, "logits": model.num_classes, "features": model.embed_dim}
        self.scene_embedding_size = int(sizes[mode])
        self.timestamp_embedding_size = int(sizes[mode])
        sr = self.sample_rate
        self.min_samples = frontend.min_samples_for_frames(model.min_frames)
        max_samples = model.max_frames * frontend.hop_length
        self.timestamp_window = round(timestamp_window_ms * sr / 1000)
        self.timestamp_hop = round(timestamp_hop_ms * sr / 1000)
        self.scene_window = round(scene_window_ms * sr / 1000)
        self.scene_hop = round(scene_hop_ms * sr / 1000)
        self.timestamp_hop_ms = float(timestamp_hop_ms)
        for name, size in (("timestamp_window_ms", self.timestamp_window), ("scene_window_ms", self.scene_window)):
            if not self.min_samples <= size <= max_samples:
                raise InvalidParameterError(
                    f"{name} gives {size} samples; the model needs [{self.min_samples}, {max_samples}] per pass"
                )
        if self.timestamp_hop < 1 or self.scene_hop < 1:
            raise InvalidParameterError("timestamp_hop_ms and scene_hop_ms must be at least one sample")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise InvalidParameterError(f"max_batch must be a positive integer, got {max_batch!r}")
        self.max_batch = max_batch

    @property
    def device(self) -> torch.device:
        return self.frontend.window.device

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(batch, size)`` of equal-length clips ``(batch, n)``, one pass each (n within the span)."""
        logits, features = self.model(self.frontend(audio))
        if self.mode == "logits":
            return logits
        if self.mode == "features":
            return features
        return torch.cat([logits, features], dim=1)

    def _embed_windows(self, segments: torch.Tensor) -> torch.Tensor:
        """Embed ``segments`` ``(n_sounds, windows, samples)`` (an ``unfold`` view: copied one chunk at a time)."""
        n_sounds, windows, size = segments.shape
        per_pass = max(1, self.max_batch // n_sounds)
        out = []
        for i in range(0, windows, per_pass):
            chunk = segments[:, i : i + per_pass]
            out.append(self(chunk.reshape(-1, size)).reshape(n_sounds, chunk.shape[1], -1))
        return torch.cat(out, dim=1)

    def _check(self, audio: Any) -> torch.Tensor:
        validate_audio(audio, name="audio", max_ndim=2)
        if audio.ndim != 2:
            raise AudioShapeError(f"audio has shape {tuple(audio.shape)}; the HEAR API takes (n_sounds, n_samples)")
        if audio.shape[0] == 0:
            raise AudioShapeError("audio has shape (0, n): no sound to embed")
        x = audio.detach() if isinstance(audio, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(audio))
        return x.to(device=self.device, dtype=torch.float32)

    @torch.inference_mode()
    def scene_embeddings(self, audio: Any) -> torch.Tensor:
        """See :func:`get_scene_embeddings`."""
        x = self._check(audio)
        n = x.shape[1]
        if n <= self.scene_window:
            if n < self.min_samples:
                x = torch.nn.functional.pad(x, (0, self.min_samples - n))
            return self._embed_windows(x.unsqueeze(1))[:, 0].float().cpu()
        pad = self.scene_window // 2
        padded = pad_signal(x, pad, pad, "reflect")
        segments = padded.unfold(-1, self.scene_window, self.scene_hop)  # (n_sounds, windows, window)
        return self._embed_windows(segments).mean(dim=1).float().cpu()

    @torch.inference_mode()
    def timestamp_embeddings(self, audio: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """See :func:`get_timestamp_embeddings`."""
        x = self._check(audio)
        n_sounds = x.shape[0]
        pad = self.timestamp_window // 2
        padded = pad_signal(x, pad, self.timestamp_window - pad, "reflect")
        segments = padded.unfold(-1, self.timestamp_window, self.timestamp_hop)  # (n_sounds, T, window)
        count = segments.shape[1]
        emb = self._embed_windows(segments)
        times = torch.arange(count, dtype=torch.float64) * (self.timestamp_hop * 1000.0 / self.sample_rate)
        return emb.float().cpu(), times.float().unsqueeze(0).expand(n_sounds, -1).contiguous()


def load_model(model_file_path: str | os.PathLike[str] = "", **kwargs: Any) -> PasstHearModel:
    """Load a PaSST model for the HEAR API.

    Parameters
    ----------
    model_file_path
        A bundle folder, the name of a shipped bundle, or an official PaSST ``.pt`` checkpoint (converted with
        :func:`audioforge.tagging.load_official_checkpoint`; pass ``arch=`` for non-default strides). ``""``: the
        shipped default tagger bundle (``"tagger"``); if no tagger is installed, a randomly initialised
        ``passt_mini`` is built instead, with a warning (its embeddings carry no learned information).
    **kwargs
        ``mode`` (``"all"``, ``"logits"``, ``"features"``), ``device``, ``arch`` (for ``.pt`` files), ``seed``
        (for the random fallback, default 0), and the window settings of :class:`PasstHearModel`.

    Returns
    -------
    PasstHearModel
        With ``sample_rate``, ``scene_embedding_size`` and ``timestamp_embedding_size``.
    """
    device = kwargs.pop("device", "cpu")
    arch = kwargs.pop("arch", "passt_s")
    seed = kwargs.pop("seed", 0)
    path = os.fspath(model_file_path) if model_file_path is not None else ""
    if path == "" and DEFAULT_BUNDLE in available_bundles():
        path = DEFAULT_BUNDLE
    if path == "":
        warnings.warn(
            "audioforge ships no trained tagger bundle yet: load_model('') returns a randomly initialised "
            "passt_mini whose embeddings carry no learned information; pass a bundle folder or an official "
            "PaSST .pt checkpoint for real embeddings",
            UserWarning,
            stacklevel=2,
        )
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(int(seed))
        try:
            model = build_passt("passt_mini")
        finally:
            torch.random.set_rng_state(gen_state)
        frontend = PasstFrontend()
        return PasstHearModel(model.to(device), frontend.to(device), **kwargs)
    if Path(path).suffix in (".pt", ".pth", ".ckpt") and Path(path).is_file():
        from .checkpoint import load_official_checkpoint

        bundle = load_official_checkpoint(path, arch=arch)
    else:
        bundle = Bundle.load(path)
    model, frontend = build_tagging_modules(bundle, device=device)
    return PasstHearModel(model, frontend, **kwargs)


def get_scene_embeddings(audio: Any, model: PasstHearModel) -> torch.Tensor:
    """One embedding per clip: ``audio`` ``(n_sounds, n_samples)`` -> float32 ``(n_sounds, scene_embedding_size)``."""
    return model.scene_embeddings(audio)


def get_timestamp_embeddings(audio: Any, model: PasstHearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings every 50 ms: float32 ``(n_sounds, T, timestamp_embedding_size)`` and timestamps ``(n_sounds, T)``.

    Timestamps are the centres of the 160 ms windows in milliseconds (``0, 50, 100, ...``).
    """
    return model.timestamp_embeddings(audio)
