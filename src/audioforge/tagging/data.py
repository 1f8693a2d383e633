"""Data for training taggers on an :class:`audioforge.corpora.Manifest`: datasets, augmentation, sampler, DataModule.

Two input modes, chosen by :class:`TaggingDataModule` ``features=``:

``"wave"``
    :class:`WaveformDataset` loads each clip (mono, resampled to 32 kHz if the file has another rate), crops or
    zero-pads it to ``clip_seconds`` (a random crop in training, the start in evaluation), applies a random gain of
    ``+-gain_db`` dB and a random circular roll; the model's :class:`~audioforge.tagging.PasstFrontend` then computes
    the log-mels in training mode (band-edge jitter, SpecAugment) and mixup mixes waveforms.
``"mel"``
    The evaluation-mode log-mels of every clip are computed once (:func:`build_mel_cache`, float16 ``.npy`` next to
    the data) and :class:`MelDataset` serves them; gain, roll, mixup and SpecAugment are then applied to the mels
    (:func:`mel_gain`, roll along time, :func:`mixup` in the linear-power domain, :func:`spec_augment`, and with
    ``filter_db`` a random smooth equaliser, :func:`mel_filter_augment`, in both modes). Gain and
    mixup act on ``exp`` of the log-mel, so they equal their waveform versions up to the cross terms of the mixed
    signals; the band-edge jitter of the front end is not reproduced. On a CPU this removes the STFT from every
    step (see ``recipes/tagging/README.md`` for the measured difference).

Targets are multi-hot vectors over the labels of the corpus (``labels.json`` next to the manifest, or given).
With ``strong_labels=True`` (``"mel"`` mode) every training item also carries its frame activity ``(classes,
frames)`` from the manifest's strong labels (``events``: ``{label, onset, offset}``, :func:`activity_frames`); the
roll, mixup and time mask move it with the mels, so a frame-level loss sees exactly what the model sees.
The weighted sampler follows the PaSST AudioSet recipe: class weight ``1000 / (count + 100)``, clip weight the
sum of the weights of its labels.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from ..audio import atomic_path
from ..audio import load as load_audio
from ..corpora.manifest import Manifest
from ..errors import AudioFileError, InvalidParameterError, ManifestError, NonFiniteAudioError
from .frontend import PasstFrontend

__all__ = [
    "MelDataset",
    "TaggingDataModule",
    "WaveformDataset",
    "activity_frames",
    "build_mel_cache",
    "class_weights",
    "load_clip",
    "load_labels",
    "mel_filter_augment",
    "mel_gain",
    "mixup",
    "mixup_draw",
    "multi_hot",
    "sample_weights",
    "spec_augment",
    "spec_augment_masks",
]

_LOG_OFFSET = 1e-5  # PasstFrontend: log(mel + 1e-5), then (x + 4.5) / 5


def load_labels(manifest: Manifest, labels: Sequence[str] | str | os.PathLike[str] | None = None) -> list[str]:
    """The class list: ``labels`` if given (a list or a JSON file), else ``labels.json`` next to the manifest.

    Raises
    ------
    ManifestError
        No labels file, a malformed one, duplicate labels, or manifest entries with labels outside the list.
    """
    if labels is None or isinstance(labels, (str, os.PathLike)):
        path = Path(labels) if labels is not None else manifest.root / "labels.json"
        if not path.is_file():
            raise ManifestError(f"no class list: {path} does not exist; pass labels=[...] or a labels.json path")
        try:
            names = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ManifestError(f"cannot read the class list {path}: {exc}") from exc
    else:
        names = list(labels)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ManifestError("the class list must be a non-empty JSON list of label strings")
    if len(set(names)) != len(names):
        raise ManifestError("the class list has duplicate labels")
    known = set(names)
    for e in manifest:
        labs = e.get("labels")
        if not isinstance(labs, list) or not labs:
            raise ManifestError(f"entry {e['key']!r} has no 'labels' list; a tagging manifest needs clip labels")
        bad = [lab for lab in labs if lab not in known]
        if bad:
            raise ManifestError(f"entry {e['key']!r} has labels {bad} that are not in the class list")
    return list(names)


def multi_hot(entry_labels: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """``(classes,)`` float32 vector with 1 at every label of the clip."""
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.zeros(len(labels), dtype=np.float32)
    for lab in entry_labels:
        y[index[lab]] = 1.0
    return y


def activity_frames(events: Sequence[dict[str, Any]], labels: Sequence[str], frames: int, *,
                    hop_seconds: float = 0.01) -> np.ndarray:
    """Frame activity ``(classes, frames)`` uint8 of strong labels ``[{label, onset, offset}, ...]`` (seconds).

    Frame ``i`` is centred at ``i * hop_seconds`` (the PaSST front end: ``center=True``, hop 320 at 32 kHz) and
    covers ``hop_seconds`` around it; it is active for a class when one of the class's events overlaps that span,
    so even an event shorter than a hop marks one frame.

    Raises
    ------
    ManifestError
        An event with a label outside ``labels``, or with ``offset < onset`` / non-finite times.
    """
    if frames < 1 or hop_seconds <= 0:
        raise InvalidParameterError(f"frames must be >= 1 and hop_seconds > 0, got {frames}, {hop_seconds}")
    index = {name: i for i, name in enumerate(labels)}
    out = np.zeros((len(labels), int(frames)), dtype=np.uint8)
    for ev in events:
        try:
            c = index[ev["label"]]
            onset, offset = float(ev["onset"]), float(ev["offset"])
        except KeyError as exc:
            raise ManifestError(f"strong label {ev!r} lacks {exc} or names a class outside the class list") from exc
        if not (math.isfinite(onset) and math.isfinite(offset)) or offset < onset:
            raise ManifestError(f"strong label {ev!r}: onset/offset must be finite with offset >= onset")
        lo = max(0, math.ceil(onset / hop_seconds - 0.5))
        hi = min(int(frames), math.floor(offset / hop_seconds + 0.5) + 1)
        if hi > lo:
            out[c, lo:hi] = 1
    return out


def class_weights(manifest: Manifest, labels: Sequence[str], *, offset: float = 100.0,
                  scale: float = 1000.0) -> np.ndarray:
    """Per-class sampling weights ``scale / (count + offset)`` (PaSST: 1000 / (count + 100))."""
    counts = np.zeros(len(labels), dtype=np.float64)
    index = {lab: i for i, lab in enumerate(labels)}
    for e in manifest:
        for lab in set(e.get("labels", [])):
            counts[index[lab]] += 1
    return scale / (counts + offset)


def sample_weights(manifest: Manifest, labels: Sequence[str]) -> np.ndarray:
    """Per-clip sampling weights: the sum of the class weights of each clip's labels."""
    cw = class_weights(manifest, labels)
    index = {lab: i for i, lab in enumerate(labels)}
    return np.array([sum(cw[index[lab]] for lab in set(e["labels"])) for e in manifest], dtype=np.float64)


def load_clip(path: str | os.PathLike[str], *, sample_rate: int, n_samples: int,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """Load a clip as mono float32 at ``sample_rate`` and crop or zero-pad it to exactly ``n_samples``.

    With ``rng`` a longer clip is cropped at a random position (training), else from its start.

    Raises
    ------
    AudioFileError
        Missing or unreadable file.
    NonFiniteAudioError
        The file holds NaN or Inf samples.
    """
    y, _ = load_audio(path, sr=sample_rate, mono=True)
    if not np.isfinite(y).all():
        raise NonFiniteAudioError(f"{path} contains NaN or Inf samples; regenerate or remove that clip")
    if len(y) > n_samples:
        start = int(rng.integers(0, len(y) - n_samples + 1)) if rng is not None else 0
        y = y[start : start + n_samples]
    elif len(y) < n_samples:
        y = np.pad(y, (0, n_samples - len(y)))
    return np.ascontiguousarray(y, dtype=np.float32)


class WaveformDataset(Dataset):
    """Clips of a manifest as ``(waveform (n,), multi-hot target (classes,))`` pairs.

    Parameters
    ----------
    manifest
        Entries with ``wav`` and ``labels``.
    labels
        The class list (target order).
    sample_rate, clip_seconds
        Output rate and fixed length.
    train
        Random crop, gain (``+-gain_db`` dB, uniform in dB) and roll (uniform circular shift) when True.
    gain_db, roll
        Augmentation settings (training only); ``gain_db=0`` / ``roll=False`` disable them.
    seed
        Base seed; each item's randomness comes from ``(seed, epoch, index)`` so workers do not repeat each other.
    """

    def __init__(self, manifest: Manifest, labels: Sequence[str], *, sample_rate: int = 32000,
                 clip_seconds: float = 10.0, train: bool = False, gain_db: float = 7.0, roll: bool = True,
                 seed: int = 0) -> None:
        if len(manifest) == 0:
            raise ManifestError("the manifest has no entries for this split")
        self.manifest = manifest
        self.labels = list(labels)
        self.sample_rate = int(sample_rate)
        self.n_samples = round(clip_seconds * sample_rate)
        self.train = bool(train)
        self.gain_db = float(gain_db)
        self.roll = bool(roll)
        self.seed = int(seed)
        self.epoch = 0
        self.targets = np.stack([multi_hot(e["labels"], self.labels) for e in manifest])

    def __len__(self) -> int:
        return len(self.manifest)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws (called by the DataModule at every epoch)."""
        self.epoch = int(epoch)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, int(i)]) if self.train else None
        y = load_clip(self.manifest.audio_path(self.manifest[i]), sample_rate=self.sample_rate,
                      n_samples=self.n_samples, rng=rng)
        if rng is not None:
            if self.gain_db:
                y = y * np.float32(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20))
            if self.roll:
                y = np.roll(y, int(rng.integers(0, len(y))))
        return torch.from_numpy(y), torch.from_numpy(self.targets[i])


# --------------------------------------------------------------------------------------------------------------------
# cached mels


_TRAINING_ONLY = ("freqm", "timem", "fmin_aug_range", "fmax_aug_range")


def _cache_key(manifest: Manifest, frontend: PasstFrontend, n_samples: int) -> str:
    h = hashlib.sha256()
    # only what the evaluation-mode mels depend on: the training-only augmentation widths do not change the cache
    cfg = {k: v for k, v in frontend.config().items() if k not in _TRAINING_ONLY}
    h.update(json.dumps(cfg, sort_keys=True).encode())
    h.update(str(n_samples).encode())
    for e in manifest:
        p = manifest.audio_path(e)
        st = p.stat() if p.exists() else None
        h.update(f"{e['key']}|{p}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode())
    return h.hexdigest()[:16]


def build_mel_cache(manifest: Manifest, frontend: PasstFrontend, cache_dir: str | os.PathLike[str], *,
                    clip_seconds: float = 10.0, batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """Evaluation-mode log-mels of every clip, ``(clips, n_mels, frames)`` float16, cached in ``cache_dir``.

    The cache file is named by a hash of the clips (key, path, size, mtime), the front-end settings and the clip
    length, so a changed corpus or front end is recomputed, never served stale. It is written atomically and
    returned memory-mapped.

    Raises
    ------
    ManifestError
        Empty manifest.
    AudioFileError, NonFiniteAudioError
        A clip is missing, unreadable or holds NaN/Inf.
    """
    if len(manifest) == 0:
        raise ManifestError("cannot cache mels of an empty manifest")
    sr = frontend.sample_rate
    n = round(clip_seconds * sr)
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"mels-{_cache_key(manifest, frontend, n)}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    fe = PasstFrontend(**frontend.config()).eval()
    frames = fe.num_frames(n)
    out = np.zeros((len(manifest), fe.n_mels, frames), dtype=np.float16)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(manifest), desc="log-mel cache", unit="clip", dynamic_ncols=True)
    with torch.inference_mode():
        for start in range(0, len(manifest), batch_size):
            rows = [load_clip(manifest.audio_path(e), sample_rate=sr, n_samples=n)
                    for e in manifest.entries[start : start + batch_size]]
            mel = fe(torch.from_numpy(np.stack(rows)))[:, 0]
            out[start : start + len(rows)] = mel.numpy().astype(np.float16)
            if bar is not None:
                bar.update(len(rows))
    if bar is not None:
        bar.close()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, out)
    return np.load(path, mmap_mode="r")


class MelDataset(Dataset):
    """Cached log-mels as ``(mel (n_mels, frames) float32, target)``; in training a random circular time roll.

    With ``activity`` (``(clips, classes, frames)``, from :func:`activity_frames`) items are ``(mel, target,
    activity float32)`` and the roll moves the activity with the mel.
    """

    def __init__(self, mels: np.ndarray, targets: np.ndarray, *, train: bool = False, roll: bool = True,
                 seed: int = 0, activity: np.ndarray | None = None) -> None:
        if len(mels) != len(targets):
            raise InvalidParameterError(f"{len(mels)} cached mels for {len(targets)} targets")
        if activity is not None and (len(activity) != len(mels) or activity.shape[-1] != mels.shape[-1]):
            raise InvalidParameterError(f"activity {tuple(activity.shape)} does not match the mels "
                                        f"{tuple(mels.shape)}: one (classes, frames) row per clip is needed")
        self.mels = mels
        self.targets = np.asarray(targets, dtype=np.float32)
        self.activity = activity
        self.train = bool(train)
        self.roll = bool(roll)
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.mels)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws (called by the DataModule at every epoch)."""
        self.epoch = int(epoch)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        m = np.asarray(self.mels[i], dtype=np.float32)
        a = None if self.activity is None else np.asarray(self.activity[i], dtype=np.float32)
        if self.train and self.roll:
            rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            shift = int(rng.integers(0, m.shape[-1]))
            m = np.roll(m, shift, axis=-1)
            if a is not None:
                a = np.roll(a, shift, axis=-1)
        item = (torch.from_numpy(np.ascontiguousarray(m)), torch.from_numpy(self.targets[i]))
        return item if a is None else (*item, torch.from_numpy(np.ascontiguousarray(a)))


# --------------------------------------------------------------------------------------------------------------------
# batch augmentations


def _to_power(x: torch.Tensor) -> torch.Tensor:
    return (torch.exp(5.0 * x - 4.5) - _LOG_OFFSET).clamp_min(0.0)


def _from_power(p: torch.Tensor) -> torch.Tensor:
    return (torch.log(p + _LOG_OFFSET) + 4.5) / 5.0


def mel_gain(mels: torch.Tensor, gain_db: float) -> torch.Tensor:
    """Random gain of ``+-gain_db`` dB per example applied to normalised PaSST log-mels ``(batch, ...)``."""
    if gain_db <= 0:
        return mels
    g = (torch.rand(mels.shape[0]) * 2 - 1) * gain_db
    scale = (10 ** (g / 10)).to(mels).reshape(-1, *([1] * (mels.dim() - 1)))  # power ratio
    return _from_power(_to_power(mels) * scale)


def mel_filter_augment(mels: torch.Tensor, max_db: float, *, bands: tuple[int, int] = (3, 6),
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """A random smooth equaliser per example on normalised PaSST log-mels ``(batch, n_mels, frames)``.

    Each example gets ``n`` control points (``n`` uniform in ``bands``, inclusive) at sorted random mel bins (the
    first and last bins included) with gains uniform in ``+-max_db`` dB, linearly interpolated over the bins (the
    "linear" FilterAugment of Nam et al., 2022), and applied in the power domain like :func:`mel_gain`. It imitates
    other microphones, rooms and instrument timbres (another soundfont's spectral envelope).
    """
    if max_db <= 0:
        return mels
    lo, hi = int(bands[0]), int(bands[1])
    if not 2 <= lo <= hi:
        raise InvalidParameterError(f"bands={bands!r}: need 2 <= low <= high control points")
    batch, n_mels = mels.shape[0], mels.shape[-2]
    grid = torch.arange(n_mels, dtype=torch.float32)
    gains = torch.empty(batch, n_mels)
    for b in range(batch):
        n = int(torch.randint(lo, hi + 1, (1,), generator=generator))
        inner = torch.randperm(max(n_mels - 2, 0), generator=generator)[: max(n - 2, 0)] + 1
        points = torch.cat([torch.tensor([0.0]), inner.float().sort().values, torch.tensor([float(n_mels - 1)])])
        values = (torch.rand(points.numel(), generator=generator) * 2 - 1) * max_db
        gains[b] = torch.from_numpy(np.interp(grid.numpy(), points.numpy(), values.numpy())).float()
    scale = (10 ** (gains / 10)).to(mels).reshape(batch, *([1] * (mels.dim() - 3)), n_mels, 1)
    return _from_power(_to_power(mels) * scale)


def mixup_draw(batch: int, *, alpha: float = 0.3,
               device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The draws of :func:`mixup`: ``lam (batch,)`` (``max(l, 1 - l)``, ``l ~ Beta(alpha, alpha)``) and ``perm``.

    Use it to mix further per-example tensors (frame activity) exactly like the inputs: ``lam * a + (1 - lam) *
    a[perm]``.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidParameterError(f"batch must be a positive integer, got {batch!r}")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise InvalidParameterError(f"alpha must be a finite number > 0 (mixup off: do not draw), got {alpha!r}")
    lam = torch.distributions.Beta(float(alpha), float(alpha)).sample((batch,))
    lam = torch.maximum(lam, 1 - lam).to(device)
    perm = torch.randperm(batch).to(device)
    return lam, perm


def mixup(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 0.3, domain: str = "wave",
          draw: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix every example with a random other one of the batch: ``lam * a + (1 - lam) * b`` for inputs and targets.

    ``lam ~ Beta(alpha, alpha)`` per example, taken as ``max(lam, 1 - lam)`` so the first clip dominates (PaSST).
    Draws use torch's global generator (seed with ``torch.manual_seed`` / Lightning's ``seed_everything``).

    Parameters
    ----------
    x
        Waveforms ``(batch, n)`` (``domain="wave"``) or normalised log-mels (``domain="mel"``: mixed as power).
    y
        Targets ``(batch, ...)``.
    alpha
        Beta parameter; ``0`` returns the inputs unchanged.
    draw
        ``(lam, perm)`` from :func:`mixup_draw` to reuse; None draws new ones.
    """
    if domain not in ("wave", "mel"):
        raise InvalidParameterError(f"domain={domain!r}; use 'wave' or 'mel'")
    if alpha <= 0 or x.shape[0] < 2:
        return x, y
    lam, perm = draw if draw is not None else mixup_draw(x.shape[0], alpha=alpha, device=x.device)
    lx = lam.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    ly = lam.reshape(-1, *([1] * (y.dim() - 1))).to(y.dtype)
    if domain == "wave":
        xm = lx * x + (1 - lx) * x[perm]
    else:
        xm = _from_power(lx * _to_power(x) + (1 - lx) * _to_power(x[perm]))
    return xm, ly * y + (1 - ly) * y[perm]


def spec_augment_masks(batch: int, n_mels: int, frames: int, *, freqm: int = 48, timem: int = 192,
                       device: torch.device | str | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The masks of :func:`spec_augment`: ``(batch, n_mels)`` and ``(batch, frames)`` booleans (True = masked).

    One frequency band of width ``< freqm`` and one time span of width ``< timem`` per example, drawn independently
    per example (torchaudio ``iid_masks``); a width of 0 gives None for that axis.
    """
    for name, v, least in (("batch", batch, 1), ("n_mels", n_mels, 1), ("frames", frames, 1), ("freqm", freqm, 0),
                           ("timem", timem, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise InvalidParameterError(f"{name} must be an integer >= {least}, got {v!r}")
    masks: list[torch.Tensor | None] = []
    for size, width in ((n_mels, freqm), (frames, timem)):
        if not width:
            masks.append(None)
            continue
        w = torch.rand(batch, device=device) * min(width, size)
        lo = (torch.rand(batch, device=device) * (size - w)).long()
        hi = lo + w.long()
        idx = torch.arange(size, device=device)
        masks.append((idx[None, :] >= lo[:, None]) & (idx[None, :] < hi[:, None]))
    return masks[0], masks[1]


def spec_augment(mels: torch.Tensor, *, freqm: int = 48, timem: int = 192,
                 masks: tuple[torch.Tensor | None, torch.Tensor | None] | None = None) -> torch.Tensor:
    """One frequency mask (width < ``freqm``) and one time mask (width < ``timem``) per example, filled with 0.

    ``mels`` is ``(batch, n_mels, frames)`` or ``(batch, 1, n_mels, frames)``; the draws are independent per example
    (torchaudio ``iid_masks``), as in :class:`~audioforge.tagging.PasstFrontend`. ``masks`` from
    :func:`spec_augment_masks` reuses given draws (to mask frame targets at the same place).
    """
    x = mels
    b = x.shape[0]
    if masks is None:
        masks = spec_augment_masks(b, x.shape[-2], x.shape[-1], freqm=freqm, timem=timem, device=x.device)
    for dim, mask in ((-2, masks[0]), (-1, masks[1])):
        if mask is None:
            continue
        shape = [b] + [1] * (x.dim() - 1)
        shape[dim] = x.shape[dim]
        x = x.masked_fill(mask.reshape(shape), 0.0)
    return x


# --------------------------------------------------------------------------------------------------------------------
# DataModule

try:  # Lightning is an optional ("train") dependency
    from lightning.pytorch import LightningDataModule as _DataModuleBase
except ImportError:  # pragma: no cover - exercised only without lightning
    _DataModuleBase = object  # type: ignore[assignment,misc]


class TaggingDataModule(_DataModuleBase):  # type: ignore[misc,valid-type]
    """Train/validation loaders for a tagging manifest (Lightning ``DataModule``).

    Parameters
    ----------
    manifest
        A :class:`Manifest` or its path; entries need ``labels`` and a ``split`` field.
    labels
        Class list, or None for ``labels.json`` next to the manifest.
    train_split, val_split
        Values of the ``split`` field used for training and validation (``val_split=None``: no validation).
    features
        ``"wave"`` (front end on the fly) or ``"mel"`` (cached evaluation log-mels, see the module docs).
    frontend
        Front-end settings (keyword arguments of :class:`PasstFrontend`); used for the cache in ``"mel"`` mode.
    cache_dir
        Where ``"mel"`` mode stores its cache (default ``<manifest folder>/.mel_cache``).
    batch_size, num_workers
        Loader settings (per process under DDP).
    weighted_sampler
        Draw training clips with :func:`sample_weights` (with replacement, ``len(train)`` per epoch) instead of
        shuffling.
    clip_seconds, gain_db, roll, seed
        Clip length and training augmentation (see :class:`WaveformDataset`).
    max_train_clips
        Use only the first clips of the training split (quick experiments and tests).
    strong_labels
        ``"mel"`` mode only: training items also carry the frame activity of the clip's strong labels (every
        training entry needs an ``events`` list, as the event corpus writes).
    """

    def __init__(self, manifest: Manifest | str | os.PathLike[str], *, labels: Sequence[str] | None = None,
                 train_split: str = "train", val_split: str | None = "test", features: str = "wave",
                 frontend: dict[str, Any] | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 batch_size: int = 16, num_workers: int = 0, weighted_sampler: bool = True,
                 clip_seconds: float = 10.0, gain_db: float = 7.0, roll: bool = True, seed: int = 0,
                 max_train_clips: int | None = None, strong_labels: bool = False) -> None:
        if _DataModuleBase is object:  # pragma: no cover
            from ..errors import MissingToolError

            raise MissingToolError("training needs lightning: pip install 'audioforge[train]'")
        super().__init__()
        self.manifest = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
        if features not in ("wave", "mel"):
            raise InvalidParameterError(f"features={features!r}; use 'wave' or 'mel'")
        for name, v in (("batch_size", batch_size),):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidParameterError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise InvalidParameterError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        self.labels = load_labels(self.manifest, labels)
        self.train_manifest = self.manifest.filter(split=train_split)
        if max_train_clips is not None:
            self.train_manifest = Manifest(self.train_manifest.entries[: int(max_train_clips)],
                                           root=self.manifest.root)
        if len(self.train_manifest) == 0:
            splits = sorted({str(e.get("split")) for e in self.manifest})
            raise ManifestError(f"no clips with split={train_split!r} in the manifest (splits present: {splits})")
        self.val_manifest = self.manifest.filter(split=val_split) if val_split is not None else None
        if self.val_manifest is not None and len(self.val_manifest) == 0:
            self.val_manifest = None
        _check_audio_exists(self.train_manifest)
        if self.val_manifest is not None:
            _check_audio_exists(self.val_manifest)
        self.strong_labels = bool(strong_labels)
        if self.strong_labels:
            if features != "mel":
                raise InvalidParameterError("strong_labels needs features='mel' (cached log-mels)")
            lacking = [e["key"] for e in self.train_manifest if not isinstance(e.get("events"), list)]
            if lacking:
                raise ManifestError(f"strong_labels=True but {len(lacking)} training entries have no 'events' list "
                                    f"(e.g. {lacking[0]!r}); generate the corpus with strong labels or set "
                                    "strong_labels to false")
        self.features = features
        self.frontend_config = dict(frontend or {})
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.manifest.root / ".mel_cache"
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.weighted_sampler = bool(weighted_sampler)
        self.clip_seconds = float(clip_seconds)
        self.gain_db = float(gain_db)
        self.roll = bool(roll)
        self.seed = int(seed)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def sample_rate(self) -> int:
        return int(self.frontend_config.get("sample_rate", 32000))

    def _frontend(self) -> PasstFrontend:
        return PasstFrontend(**{**self.frontend_config, "dft": "fft"})

    def prepare_data(self) -> None:
        """Build the mel caches (``"mel"`` mode; once, on the main process)."""
        if self.features == "mel":
            fe = self._frontend()
            build_mel_cache(self.train_manifest, fe, self.cache_dir, clip_seconds=self.clip_seconds, progress=True)
            if self.val_manifest is not None:
                build_mel_cache(self.val_manifest, fe, self.cache_dir, clip_seconds=self.clip_seconds, progress=True)

    def _dataset(self, manifest: Manifest, train: bool) -> Dataset:
        if self.features == "mel":
            mels = build_mel_cache(manifest, self._frontend(), self.cache_dir, clip_seconds=self.clip_seconds)
            targets = np.stack([multi_hot(e["labels"], self.labels) for e in manifest])
            activity = None
            if train and self.strong_labels:
                fe = self._frontend()
                hop = fe.hop_length / fe.sample_rate
                activity = np.stack([activity_frames(e["events"], self.labels, mels.shape[-1], hop_seconds=hop)
                                     for e in manifest])
            return MelDataset(mels, targets, train=train, roll=self.roll, seed=self.seed, activity=activity)
        return WaveformDataset(manifest, self.labels, sample_rate=self.sample_rate, clip_seconds=self.clip_seconds,
                               train=train, gain_db=self.gain_db, roll=self.roll, seed=self.seed)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._dataset(self.train_manifest, True)
        if self.val_set is None and self.val_manifest is not None:
            self.val_set = self._dataset(self.val_manifest, False)

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        assert self.train_set is not None
        self.train_set.set_epoch(self._epoch())  # type: ignore[attr-defined]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self._epoch())
        if self.weighted_sampler:
            w = torch.as_tensor(sample_weights(self.train_manifest, self.labels))
            sampler = WeightedRandomSampler(w, num_samples=len(self.train_set), replacement=True, generator=g)
            return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler,
                              num_workers=self.num_workers, drop_last=len(self.train_set) > self.batch_size,
                              persistent_workers=False)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=g,
                          num_workers=self.num_workers, drop_last=len(self.train_set) > self.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        self.setup("validate")
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=max(self.batch_size, 32), shuffle=False,
                          num_workers=self.num_workers)

    def steps_per_epoch(self, world_size: int = 1) -> int:
        """Optimizer-independent batches per epoch per process."""
        n = math.ceil(len(self.train_manifest) / max(1, world_size))
        return max(1, n // self.batch_size if n > self.batch_size else 1)


def _check_audio_exists(manifest: Manifest) -> None:
    missing = [str(manifest.audio_path(e)) for e in manifest if not manifest.audio_path(e).is_file()]
    if missing:
        raise AudioFileError(f"{len(missing)} audio file(s) of the manifest are missing, e.g. {missing[0]}")
