"""Training data for the U2 models: a Dataset and a Lightning DataModule on :class:`audioforge.corpora.Manifest`.

Each manifest entry needs ``key``, ``wav`` and ``txt`` (WeNet's ``data.list`` works as is); ``duration`` is read from
the audio header when missing. Per utterance (training): speed perturbation (0.9 / 1.0 / 1.1, resampling with soxr
as sox's ``speed`` does), Kaldi fbank with dither, SpecAugment (time and frequency masks), tokenisation.
Batches are formed by :class:`DynamicBatchSampler`: utterances are shuffled, sorted by duration inside buckets of
``sort_window`` utterances, and cut into batches whose padded duration (longest utterance x batch size) stays under
``max_batch_seconds``; the batch order is shuffled per epoch and, with several processes (DDP), batches are dealt
to ranks round-robin (every rank gets the same number).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..audio import load, resample
from ..corpora.manifest import Manifest
from ..errors import InvalidParameterError, ManifestError
from .frontend import FbankConfig, compute_fbank
from .model import IGNORE_ID, SpecAugment
from .tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "AsrDataConfig",
    "AsrDataModule",
    "AsrDataset",
    "DynamicBatchSampler",
    "collate_batch",
    "entry_durations",
    "load_manifest",
    "speed_perturb",
]


@dataclass
class AsrDataConfig:
    """Data settings (the ``data`` section of a training configuration).

    Attributes
    ----------
    max_batch_seconds
        Padded audio per batch: longest utterance x batch size (seconds).
    max_batch_size
        Upper bound on utterances per batch.
    sort_window
        Utterances shuffled together, then sorted by duration and batched (bucketing); 0 sorts the whole set.
    min_duration, max_duration
        Utterances outside are dropped (seconds).
    speeds
        Speed perturbation factors drawn uniformly per utterance in training (``[1.0]``: none).
    vtlp
        Vocal tract length perturbation: ``[low, high]``, a VTLN warp factor drawn uniformly per utterance in
        training (Kaldi's piecewise linear warp of the mel banks; Jaitly and Hinton use ``[0.9, 1.1]``). It moves the
        formants without the tempo and pitch change of ``speeds``. None: no warp.
    dither
        Fbank dither in training (0 at validation).
    specaug
        SpecAugment settings (``num_t_mask``, ``max_t``, ``num_f_mask``, ``max_f``); None: no SpecAugment.
    num_workers
        DataLoader worker processes.
    seed
        Seed of shuffling and augmentation (the epoch is added).
    """

    max_batch_seconds: float = 120.0
    max_batch_size: int = 64
    sort_window: int = 500
    min_duration: float = 0.3
    max_duration: float = 20.0
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    vtlp: list[float] | None = None
    dither: float = 1.0
    specaug: dict[str, int] | None = field(
        default_factory=lambda: {"num_t_mask": 2, "max_t": 50, "num_f_mask": 2, "max_f": 10}
    )
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.max_batch_seconds > 0:
            raise InvalidParameterError(f"max_batch_seconds must be > 0, got {self.max_batch_seconds}")
        if self.max_batch_size < 1:
            raise InvalidParameterError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if not self.speeds or any(not 0.5 <= float(s) <= 2.0 for s in self.speeds):
            raise InvalidParameterError(f"speeds must be a non-empty list of factors in [0.5, 2], got {self.speeds}")
        if self.vtlp is not None:
            v = list(self.vtlp) if isinstance(self.vtlp, (list, tuple)) else None
            if v is None or len(v) != 2 or not all(isinstance(f, (int, float)) and 0.7 <= f <= 1.4 for f in v) \
                    or v[0] > v[1]:
                raise InvalidParameterError(
                    f"vtlp must be [low, high] warp factors with 0.7 <= low <= high <= 1.4 (e.g. [0.9, 1.1]) or "
                    f"null, got {self.vtlp!r}")
        if self.dither < 0:
            raise InvalidParameterError(f"dither must be >= 0, got {self.dither}")
        if self.min_duration >= self.max_duration:
            raise InvalidParameterError("min_duration must be smaller than max_duration")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> AsrDataConfig:
        """Build from a dict, rejecting unknown keys."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidParameterError(f"unknown data settings {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def load_manifest(manifest: Manifest | str | os.PathLike[str], *, split: str | None = None) -> Manifest:
    """A manifest object from a path (file or folder) or as is, optionally filtered by ``split``, with ``txt`` checked.

    Raises
    ------
    ManifestError
        Missing file, malformed lines, entries without ``txt``, or no entry left.
    """
    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    if split is not None:
        m = m.filter(split=split)
    if len(m) == 0:
        where = f" with split={split!r}" if split else ""
        raise ManifestError(f"the manifest has no entries{where}")
    bad = [e["key"] for e in m if not isinstance(e.get("txt"), str) or not e["txt"].strip()]
    if bad:
        raise ManifestError(f"{len(bad)} entries have no 'txt' transcript (first: {bad[:3]}); ASR needs txt")
    return m


def entry_durations(manifest: Manifest) -> list[float]:
    """Durations in seconds (the ``duration`` field, else the audio header)."""
    import soundfile as sf

    out = []
    for e in manifest:
        d = e.get("duration")
        if d is None:
            try:
                info = sf.info(str(manifest.audio_path(e)))
            except (RuntimeError, sf.LibsndfileError) as exc:
                raise ManifestError(f"{e['key']}: cannot read {manifest.audio_path(e)}: {exc}") from exc
            d = info.frames / info.samplerate
        out.append(float(d))
    return out


def speed_perturb(samples: np.ndarray, speed: float, sample_rate: int) -> np.ndarray:
    """Play ``samples`` ``speed`` times faster (pitch and tempo change together, as sox ``speed``)."""
    if speed == 1.0:
        return samples
    return resample(samples, round(sample_rate * speed), sample_rate).astype(np.float32, copy=False)


class AsrDataset(Dataset):
    """Utterances of a manifest as ``{"key", "feats" (T, 80), "tokens" (L,)}``.

    Parameters
    ----------
    manifest
        Entries with ``key``, ``wav``, ``txt``.
    tokenizer
        Turns ``txt`` into ids.
    frontend
        Fbank settings (its ``dither`` is replaced by ``config.dither`` when ``train``).
    config
        Augmentation settings.
    train
        Apply speed perturbation, VTLP, dither and SpecAugment.
    """

    def __init__(
        self,
        manifest: Manifest,
        tokenizer: Tokenizer,
        *,
        frontend: FbankConfig | None = None,
        config: AsrDataConfig | None = None,
        train: bool = True,
    ) -> None:
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.config = config or AsrDataConfig()
        base = frontend or FbankConfig()
        self.frontend = FbankConfig.from_dict({**base.to_dict(), "dither": self.config.dither if train else 0.0})
        self.train = train
        self.epoch = 0
        self.specaug = SpecAugment(**self.config.specaug).train() if train and self.config.specaug else None

    def __len__(self) -> int:
        return len(self.manifest)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws (called by the sampler each epoch)."""
        self.epoch = int(epoch)

    def waveform(self, index: int) -> np.ndarray:
        """The entry's samples at the front end's rate (float32)."""
        entry = self.manifest[index]
        samples, _ = load(self.manifest.audio_path(entry), sr=self.frontend.sample_rate)
        return samples.astype(np.float32, copy=False)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.manifest[index]
        samples = self.waveform(index)
        gen = torch.Generator().manual_seed((self.config.seed * 1_000_003 + self.epoch * 7919 + index) % (2**63))
        if self.train and self.config.speeds != [1.0]:
            k = int(torch.randint(0, len(self.config.speeds), (1,), generator=gen).item())
            samples = speed_perturb(samples, float(self.config.speeds[k]), self.frontend.sample_rate)
        warp = 1.0
        if self.train and self.config.vtlp is not None:
            low, high = (float(f) for f in self.config.vtlp)
            warp = low + (high - low) * float(torch.rand((), generator=gen))
        feats = compute_fbank(samples, self.frontend, generator=gen if self.train else None, vtln_warp=warp)
        if self.specaug is not None:
            self.specaug.generator = gen
            feats = self.specaug(feats.unsqueeze(0))[0]
        tokens = torch.tensor(self.tokenizer.encode(entry["txt"]), dtype=torch.long)
        return {"key": entry["key"], "feats": feats, "tokens": tokens}


def collate_batch(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad dataset items: ``feats (B, T, F)`` (zeros), ``feats_lens``, ``tokens (B, L)`` (-1), ``tokens_lens``."""
    if not items:
        raise InvalidParameterError("cannot collate an empty batch")
    feats = [it["feats"] for it in items]
    tokens = [it["tokens"] for it in items]
    return {
        "keys": [it["key"] for it in items],
        "feats": torch.nn.utils.rnn.pad_sequence(feats, batch_first=True, padding_value=0.0),
        "feats_lens": torch.tensor([f.shape[0] for f in feats], dtype=torch.long),
        "tokens": torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True, padding_value=IGNORE_ID),
        "tokens_lens": torch.tensor([t.shape[0] for t in tokens], dtype=torch.long),
    }


class DynamicBatchSampler(Sampler[list[int]]):
    """Batches of indices bounded by padded duration, bucketed by length, sharded over DDP ranks.

    Parameters
    ----------
    durations
        Seconds per utterance.
    max_batch_seconds, max_batch_size
        Bounds of a batch (a single utterance longer than ``max_batch_seconds`` still forms a batch).
    shuffle
        Shuffle utterances and batches per epoch (False: sorted by duration, fixed order).
    sort_window
        Bucket size for sorting when shuffling (0: sort all).
    seed
        Base seed (the epoch is added; see :meth:`set_epoch`).
    rank, world_size
        This process's share of the batches.
    """

    def __init__(
        self,
        durations: Sequence[float],
        *,
        max_batch_seconds: float,
        max_batch_size: int = 64,
        shuffle: bool = True,
        sort_window: int = 500,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        dataset: AsrDataset | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise InvalidParameterError(f"rank must be in [0, {world_size}), got {rank}")
        if max_batch_seconds <= 0 or max_batch_size < 1:
            raise InvalidParameterError("max_batch_seconds must be > 0 and max_batch_size >= 1")
        self.durations = [float(d) for d in durations]
        self.max_batch_seconds, self.max_batch_size = float(max_batch_seconds), int(max_batch_size)
        self.shuffle, self.sort_window, self.seed = shuffle, int(sort_window), int(seed)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffling of ``epoch`` (and tell the dataset, for its augmentation draws)."""
        self.epoch = int(epoch)
        if self.dataset is not None:
            self.dataset.set_epoch(epoch)

    def _batches(self) -> list[list[int]]:
        order = list(range(len(self.durations)))
        rng = random.Random(self.seed * 100_003 + self.epoch)
        if self.shuffle:
            rng.shuffle(order)
            window = self.sort_window if self.sort_window > 0 else len(order)
            buckets = [order[i : i + window] for i in range(0, len(order), window)]
            order = [i for b in buckets for i in sorted(b, key=lambda j: self.durations[j])]
        else:
            order.sort(key=lambda j: self.durations[j])
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0.0
        for i in order:
            d = self.durations[i]
            new_longest = max(longest, d)
            full = len(current) >= self.max_batch_size
            if current and (full or new_longest * (len(current) + 1) > self.max_batch_seconds):
                batches.append(current)
                current, new_longest = [], d
            current.append(i)
            longest = new_longest
        if current:
            batches.append(current)
        if self.shuffle:
            rng.shuffle(batches)
        if self.world_size > 1:
            usable = (len(batches) // self.world_size) * self.world_size
            if usable == 0:
                # fewer batches than ranks: every rank repeats the batches it would share
                batches = (batches * self.world_size)[: self.world_size]
                usable = self.world_size
            batches = batches[:usable][self.rank :: self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


class AsrDataModule(pl.LightningDataModule):
    """Training and validation loaders on manifests.

    Parameters
    ----------
    train, valid
        Manifests (objects or paths) with ``txt``.
    tokenizer
        The model's tokenizer.
    frontend
        Fbank settings (inference ones: dither 0; training dither comes from ``config``).
    config
        Batching and augmentation.
    """

    def __init__(
        self,
        train: Manifest | str | os.PathLike[str],
        valid: Manifest | str | os.PathLike[str],
        tokenizer: Tokenizer,
        *,
        frontend: FbankConfig | None = None,
        config: AsrDataConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config or AsrDataConfig()
        self._tokenizer_json = tokenizer.to_json()  # plain text travels to spawned DDP processes
        self._tokenizer: Tokenizer | None = tokenizer
        self.frontend = frontend or FbankConfig()
        self.train_manifest = self._prepare(load_manifest(train))
        self.valid_manifest = self._prepare(load_manifest(valid))
        self.train_sampler: DynamicBatchSampler | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer (rebuilt from its JSON after pickling)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self._tokenizer_json)
        return self._tokenizer

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tokenizer"] = None
        state["train_sampler"] = None
        return state

    def _prepare(self, manifest: Manifest) -> Manifest:
        durs = entry_durations(manifest)
        keep = [dict(e, duration=d) for e, d in zip(manifest, durs, strict=True)
                if self.config.min_duration <= d <= self.config.max_duration]
        if not keep:
            raise ManifestError(
                f"no utterance between {self.config.min_duration} and {self.config.max_duration} s in the manifest"
            )
        return Manifest(keep, root=manifest.root)

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def epoch_callback(self) -> pl.Callback:
        """A callback that reshuffles the training batches each epoch (add it to the Trainer)."""
        return _EpochSetterLazy(self)

    def train_dataloader(self) -> DataLoader:
        ds = AsrDataset(self.train_manifest, self.tokenizer, frontend=self.frontend, config=self.config, train=True)
        rank, world = self._rank()
        self.train_sampler = DynamicBatchSampler(
            [e["duration"] for e in self.train_manifest],
            max_batch_seconds=self.config.max_batch_seconds,
            max_batch_size=self.config.max_batch_size,
            shuffle=True,
            sort_window=self.config.sort_window,
            seed=self.config.seed,
            rank=rank,
            world_size=world,
            dataset=ds,
        )
        return DataLoader(ds, batch_sampler=self.train_sampler, collate_fn=collate_batch,
                          num_workers=self.config.num_workers, persistent_workers=False)

    def val_dataloader(self) -> DataLoader:
        ds = AsrDataset(self.valid_manifest, self.tokenizer, frontend=self.frontend, config=self.config, train=False)
        rank, world = self._rank()
        sampler = DynamicBatchSampler(
            [e["duration"] for e in self.valid_manifest],
            max_batch_seconds=self.config.max_batch_seconds,
            max_batch_size=self.config.max_batch_size,
            shuffle=False,
            rank=rank,
            world_size=world,
        )
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate_batch, num_workers=self.config.num_workers)

    @staticmethod
    def split_valid(manifest: Manifest, fraction: float = 0.02, *, min_count: int = 1) -> tuple[Manifest, Manifest]:
        """Split ``manifest`` into ``(train, valid)`` deterministically (a hash of each key picks the valid ones)."""
        if not 0 < fraction < 1:
            raise InvalidParameterError(f"fraction must be in (0, 1), got {fraction}")
        import zlib

        scored = sorted(manifest, key=lambda e: zlib.crc32(e["key"].encode("utf-8")))
        n_valid = max(min_count, math.ceil(len(scored) * fraction))
        if n_valid >= len(scored):
            raise ManifestError(f"{len(scored)} utterances are too few to hold out {n_valid} for validation")
        valid_keys = {e["key"] for e in scored[:n_valid]}
        train = Manifest([e for e in manifest if e["key"] not in valid_keys], root=manifest.root)
        valid = Manifest([e for e in manifest if e["key"] in valid_keys], root=manifest.root)
        return train, valid


class _EpochSetterLazy(pl.Callback):
    def __init__(self, datamodule: AsrDataModule) -> None:
        self.datamodule = datamodule

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.datamodule.train_sampler is not None:
            self.datamodule.train_sampler.set_epoch(trainer.current_epoch)

