"""DDSP training data: recordings -> fixed-length examples with cached f0 and loudness, statistics, a DataModule.

:func:`build_cache` reads a folder of monophonic recordings or a corpus :class:`~audioforge.corpora.manifest.Manifest`,
resamples to 16 kHz, takes f0 from the score file next to a clip when there is one (the instrument corpus's
``.f0.npy``; 0 = no note) and otherwise from CREPE tiny or YIN, computes A-weighted loudness
(:func:`~audioforge.ddsp.loudness.compute_loudness`), and cuts everything into examples of ``example_frames`` frames
(default 1000 frames = 4 s at 250 frames/s, 64 samples per frame). Examples that are (almost) silent are dropped.
The cache folder holds ``audio.npy`` ``(N, frames * 64)``, ``f0_hz.npy``, ``loudness_db.npy``, ``note.npy``
(``(N, frames)``) and ``cache.json`` (settings, sources, statistics); a cache built with the same settings is reused.

The model's f0 input is never 0 inside an example: the score's 0 frames (rests, and the release tails that keep
sounding after note-off) carry the last f0 (:func:`hold_f0`), so the decoder hears the pitch that is still ringing;
inference does the same (see :mod:`audioforge.ddsp.transfer`).

:func:`compute_statistics` gives what timbre transfer needs (DDSP's ``dataset_statistics``): mean/std/min/max of pitch
(MIDI) and loudness (dB), the same on note frames only, and a quantile table of note-frame loudness (and pitch).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio import atomic_path, load
from ..corpora.manifest import Manifest
from ..errors import InvalidParameterError, ManifestError
from .loudness import compute_loudness
from .pitch import estimate_f0

__all__ = [
    "CACHE_VERSION",
    "FRAME_RATE",
    "HOP",
    "SR",
    "DDSPDataModule",
    "DDSPExamples",
    "before_onset",
    "build_cache",
    "compute_statistics",
    "hold_f0",
    "list_sources",
    "load_cache",
    "map_quantiles",
    "note_mask",
    "recording_features",
]

SR = 16000
HOP = 64
FRAME_RATE = SR // HOP  # 250 frames/s
CACHE_VERSION = 1
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")
N_QUANTILES = 256


def hold_f0(f0_hz: np.ndarray, *, max_gap: int | None = None, lead: int = 0) -> np.ndarray:
    """Carry the last voiced f0 through unvoiced (0) frames; leading zeros take the first voiced value.

    With ``lead`` > 0 the last ``lead`` frames of each gap take the *next* voiced value instead: a tracker becomes
    confident only some way into a note's attack (a flute needs ~30-50 ms to speak), so the frames just before a
    confident onset belong to the coming note, not to the previous one (offline use: it looks ahead).

    Parameters
    ----------
    f0_hz
        ``(n_frames,)`` f0 in Hz, 0 where there is no pitch.
    max_gap
        Longest gap (frames) bridged; longer gaps keep 0 after ``max_gap`` held frames. None bridges every gap.
    lead
        Frames before each voiced run that take that run's first value (0 = plain hold, causal).

    Returns
    -------
    np.ndarray
        float32 f0 with the gaps filled (all zeros stay zeros).
    """
    _check_frames(lead, "lead")
    f0 = np.asarray(f0_hz, dtype=np.float32).copy()
    voiced = f0 > 0
    if not voiced.any():
        return f0
    idx = np.where(voiced, np.arange(f0.size), -1)
    last = np.maximum.accumulate(idx)
    first = int(np.argmax(voiced))
    src = np.where(last >= 0, last, first)
    out = f0[src]
    if max_gap is not None:
        gap = np.arange(f0.size) - np.where(last >= 0, last, -(10**9))
        out = np.where(voiced | ((last >= 0) & (gap <= max_gap)) | (last < 0), out, 0.0).astype(np.float32)
    if lead:
        take, nxt = before_onset(voiced, lead)
        out = np.where(take, f0[nxt], out)
    return out.astype(np.float32)


def _check_frames(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidParameterError(f"{name}={value!r}: use a whole number of frames >= 0")


def before_onset(voiced: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Unvoiced frames at most ``frames`` frames before the start of a voiced run, and each frame's next voiced index.

    Returns ``(mask, next_index)``; ``next_index`` is clipped to the last frame where no voiced frame follows.
    """
    _check_frames(frames, "frames")
    voiced = np.asarray(voiced, dtype=bool)
    if voiced.ndim != 1:
        raise InvalidParameterError(f"voiced must be a 1-D mask of frames, got shape {voiced.shape}")
    n = voiced.size
    nxt = np.minimum.accumulate(np.where(voiced, np.arange(n), n)[::-1])[::-1]
    mask = ~voiced & (nxt < n) & (nxt - np.arange(n) <= frames)
    return mask, np.minimum(nxt, max(n - 1, 0))


def note_mask(
    loudness_db: np.ndarray,
    confidence: np.ndarray | None = None,
    *,
    score_f0: np.ndarray | None = None,
    confidence_threshold: float = 0.6,
    loudness_floor_db: float = -60.0,
) -> np.ndarray:
    """Frames where a note sounds: the score says so (when given), else confident pitch above a loudness floor."""
    ld = np.asarray(loudness_db)
    if score_f0 is not None:
        return (np.asarray(score_f0) > 0) & (ld > loudness_floor_db)
    if confidence is None:
        raise InvalidParameterError("note_mask needs a confidence or a score f0")
    return (np.asarray(confidence) >= confidence_threshold) & (ld > loudness_floor_db)


def recording_features(
    audio: np.ndarray,
    *,
    score_f0: np.ndarray | None = None,
    f0_method: str = "crepe",
) -> dict[str, np.ndarray]:
    """f0 (held through gaps), raw f0, confidence, loudness and note mask of 16 kHz mono ``audio``.

    ``score_f0`` (frames at 250 Hz, 0 = no note) replaces the tracker when given; it is padded or cut to
    ``len(audio) // 64 + 1`` frames. Confidence is 1 on score note frames.
    """
    n_frames = audio.shape[-1] // HOP + 1
    loud = compute_loudness(audio.astype(np.float32), SR).astype(np.float32)
    if score_f0 is not None:
        raw = np.zeros(n_frames, dtype=np.float32)
        m = min(n_frames, score_f0.shape[0])
        raw[:m] = score_f0[:m]
        conf = (raw > 0).astype(np.float32)
        notes = note_mask(loud, score_f0=raw)
    else:
        raw, conf = estimate_f0(audio, SR, method=f0_method)
        raw = np.where(conf >= 0.5, raw, 0.0).astype(np.float32)
        notes = note_mask(loud, conf)
    return {"f0_hz": hold_f0(raw), "f0_raw": raw, "confidence": conf.astype(np.float32), "loudness_db": loud,
            "note": notes}


def list_sources(
    source: str | os.PathLike[str] | Manifest,
    *,
    split: str | None = None,
    instrument: str | None = None,
) -> list[dict[str, Any]]:
    """Recordings of a folder (recursively, by audio extension) or a manifest, as ``{"key", "path", "f0"}`` dicts.

    For a manifest, entries are filtered by ``split`` and ``instrument`` and their ``f0`` field (a score f0 file)
    is used; for a folder a ``<stem>.f0.npy`` next to a file is used when present.
    """
    rows: list[dict[str, Any]] = []
    if isinstance(source, Manifest) or Path(source).is_file() or (Path(source) / "manifest.jsonl").is_file():
        man = source if isinstance(source, Manifest) else Manifest.load(source)
        man = man.filter(split=split, where=(lambda e: instrument in (None, e.get("instrument"))))
        for e in man:
            f0 = e.get("f0")
            rows.append({"key": e["key"], "path": str(man.audio_path(e)),
                         "f0": str(man.root / f0) if isinstance(f0, str) else None})
    elif Path(source).is_dir():
        for p in sorted(Path(source).rglob("*")):
            if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                f0p = p.with_name(p.name[: -len(p.suffix)] + ".f0.npy")
                rows.append({"key": p.relative_to(source).as_posix(), "path": str(p),
                             "f0": str(f0p) if f0p.is_file() else None})
    else:
        raise ManifestError(f"{source} is neither a folder of recordings nor a manifest")
    if not rows:
        raise ManifestError(f"no recordings found in {source} (split={split!r}, instrument={instrument!r})")
    return rows


def compute_statistics(
    f0_hz: np.ndarray, loudness_db: np.ndarray, note: np.ndarray, *, n_quantiles: int = N_QUANTILES
) -> dict[str, Any]:
    """Dataset statistics for auto-adjust and the browser page (JSON-ready).

    Parameters
    ----------
    f0_hz, loudness_db, note
        Frames of any shape (flattened): f0 (held, Hz), loudness (dB), note mask.
    n_quantiles
        Entries of the quantile tables (levels ``linspace(0, 1, n)``).

    Returns
    -------
    dict
        ``pitch`` and ``loudness`` (mean, std, min, max over all frames with f0 > 0), ``pitch_note`` and
        ``loudness_note`` (the same on note frames), ``quantiles`` (``levels``, ``loudness_db``, ``pitch_midi`` on
        note frames), ``n_frames``, ``note_ratio``.
    """
    f0 = np.asarray(f0_hz, dtype=np.float64).ravel()
    ld = np.asarray(loudness_db, dtype=np.float64).ravel()
    nt = np.asarray(note, dtype=bool).ravel()
    if not nt.any():
        raise InvalidParameterError("no note frames: the recordings have no detectable pitch above -60 dB")
    midi = 69.0 + 12.0 * np.log2(np.maximum(f0, 1e-3) / 440.0)

    def summary(x: np.ndarray) -> dict[str, float]:
        return {"mean": round(float(x.mean()), 4), "std": round(float(x.std()), 4),
                "min": round(float(x.min()), 4), "max": round(float(x.max()), 4)}

    levels = np.linspace(0.0, 1.0, n_quantiles)
    return {
        "pitch": summary(midi[f0 > 0]) if (f0 > 0).any() else summary(midi[nt]),
        "loudness": summary(ld),
        "pitch_note": summary(midi[nt]),
        "loudness_note": summary(ld[nt]),
        "quantiles": {
            "levels": [round(float(v), 5) for v in levels],
            "loudness_db": [round(float(v), 4) for v in np.quantile(ld[nt], levels)],
            "pitch_midi": [round(float(v), 4) for v in np.quantile(midi[nt], levels)],
        },
        "n_frames": int(ld.size),
        "note_ratio": round(float(nt.mean()), 4),
    }


def map_quantiles(values: np.ndarray, source_quantiles: Sequence[float], target_quantiles: Sequence[float]
                  ) -> np.ndarray:
    """Quantile mapping: ``values`` placed in ``source_quantiles`` (same levels) and read from ``target_quantiles``.

    Both tables must be non-decreasing and of equal length (equal level grids); a value shared by several source
    quantiles maps to the middle of their levels; values beyond the source range are shifted by their distance to
    its end.
    """
    src = np.maximum.accumulate(np.asarray(source_quantiles, dtype=np.float64))
    tgt = np.maximum.accumulate(np.asarray(target_quantiles, dtype=np.float64))
    if src.shape != tgt.shape or src.size < 2:
        raise InvalidParameterError("quantile tables must have the same length (>= 2)")
    levels = np.linspace(0.0, 1.0, src.size)
    # strictly increasing source for interpolation (ties get tiny steps)
    src_s = src + np.arange(src.size) * 1e-9
    v = np.asarray(values, dtype=np.float64)
    q = np.interp(v, src_s, levels)
    lo = np.searchsorted(src, v, side="left")
    hi = np.searchsorted(src, v, side="right")
    tie = (hi - lo) > 1  # a value shared by several quantiles (a steady level): the middle of their levels
    q = np.where(tie, 0.5 * (levels[np.clip(lo, 0, src.size - 1)] + levels[np.clip(hi - 1, 0, src.size - 1)]), q)
    out = np.interp(q, levels, tgt)
    out = np.where(v < src[0], tgt[0] + (v - src[0]), out)
    out = np.where(v > src[-1], tgt[-1] + (v - src[-1]), out)
    return out.astype(np.float32)


def _settings_key(settings: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def build_cache(
    source: str | os.PathLike[str] | Manifest,
    cache_dir: str | os.PathLike[str],
    *,
    split: str | None = None,
    instrument: str | None = None,
    example_frames: int = 1000,
    f0_method: str = "crepe",
    use_score: bool = True,
    min_note_ratio: float = 0.05,
    progress: bool = False,
) -> Path:
    """Slice recordings into examples with f0/loudness and write (or reuse) a cache folder.

    Parameters
    ----------
    source
        A folder of monophonic recordings, a manifest file / corpus folder, or a :class:`Manifest`.
    cache_dir
        Output folder (reused when its ``cache.json`` has the same settings and sources).
    split, instrument
        Manifest filters.
    example_frames
        Frames per example (1000 = 4 s); the audio of an example is ``example_frames * 64`` samples.
    f0_method
        ``"crepe"`` or ``"yin"`` for recordings without a score f0.
    use_score
        Use the score f0 files when present.
    min_note_ratio
        Drop examples with fewer note frames than this fraction.
    progress
        Print one line per recording.

    Returns
    -------
    Path
        ``cache_dir``.
    """
    if isinstance(example_frames, bool) or not isinstance(example_frames, int) or example_frames < 32:
        raise InvalidParameterError(f"example_frames={example_frames!r}; use an integer >= 32 (1000 = 4 s)")
    rows = list_sources(source, split=split, instrument=instrument)
    settings = {"version": CACHE_VERSION, "example_frames": example_frames, "f0_method": f0_method,
                "use_score": bool(use_score), "min_note_ratio": float(min_note_ratio),
                "sources": [r["key"] for r in rows]}
    out = Path(cache_dir)
    meta_path = out / "cache.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            meta = {}
        if meta.get("settings_key") == _settings_key(settings):
            return out
    out.mkdir(parents=True, exist_ok=True)
    n = example_frames * HOP
    audio_l, f0_l, ld_l, note_l, origin = [], [], [], [], []
    for r in rows:
        y, _ = load(r["path"], sr=SR)
        score = np.load(r["f0"]).astype(np.float32) if (use_score and r["f0"]) else None
        feats = recording_features(y, score_f0=score, f0_method=f0_method)
        for k in range(y.shape[0] // n):
            sl = slice(k * example_frames, (k + 1) * example_frames)
            if feats["note"][sl].mean() < min_note_ratio:
                continue
            audio_l.append(y[k * n: (k + 1) * n].astype(np.float32))
            f0_l.append(feats["f0_hz"][sl])
            ld_l.append(feats["loudness_db"][sl])
            note_l.append(feats["note"][sl])
            origin.append([r["key"], k])
        if progress:
            print(f"cache {out.name}: {r['key']} -> {len(audio_l)} examples", flush=True)
    if not audio_l:
        raise ManifestError(f"no usable examples in {source}: every recording is too short or silent")
    arrays = {"audio": np.stack(audio_l), "f0_hz": np.stack(f0_l), "loudness_db": np.stack(ld_l),
              "note": np.stack(note_l)}
    for name, arr in arrays.items():
        with atomic_path(out / f"{name}.npy") as tmp, tmp.open("wb") as fh:
            np.save(fh, arr)
    stats = compute_statistics(arrays["f0_hz"], arrays["loudness_db"], arrays["note"])
    meta = {"settings": settings, "settings_key": _settings_key(settings), "n_examples": len(audio_l),
            "source": str(source) if not isinstance(source, Manifest) else str(source.root),
            "seconds": round(len(audio_l) * n / SR, 3), "origin": origin, "statistics": stats}
    with atomic_path(meta_path) as tmp:  # written last: marks the cache complete
        tmp.write_text(json.dumps(meta) + "\n", encoding="utf-8")
    return out


class DDSPExamples(torch.utils.data.Dataset):
    """Examples of a cache folder, optionally randomly cropped to ``crop_frames`` frames (training)."""

    def __init__(self, cache_dir: str | os.PathLike[str], *, crop_frames: int | None = None, seed: int = 0) -> None:
        data = load_cache(cache_dir)
        self.audio, self.f0, self.loudness = data["audio"], data["f0_hz"], data["loudness_db"]
        self.frames = self.f0.shape[1]
        if crop_frames is not None and not 32 <= crop_frames <= self.frames:
            raise InvalidParameterError(f"crop_frames={crop_frames}; use 32..{self.frames}")
        self.crop = crop_frames
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.audio.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        start = 0
        t = self.crop or self.frames
        if self.crop is not None and self.crop < self.frames:
            start = int(self.rng.integers(0, self.frames - self.crop + 1))
        return {
            "audio": torch.from_numpy(np.array(self.audio[i, start * HOP: (start + t) * HOP], dtype=np.float32)),
            "f0_hz": torch.from_numpy(np.array(self.f0[i, start: start + t], dtype=np.float32)),
            "loudness_db": torch.from_numpy(np.array(self.loudness[i, start: start + t], dtype=np.float32)),
        }


def load_cache(cache_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Arrays (memory-mapped) and ``meta`` of a cache folder written by :func:`build_cache`."""
    folder = Path(cache_dir)
    meta_path = folder / "cache.json"
    if not meta_path.is_file():
        raise ManifestError(f"{folder} is not a DDSP feature cache (no cache.json); build it with build_cache")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    out: dict[str, Any] = {"meta": meta}
    for name in ("audio", "f0_hz", "loudness_db", "note"):
        out[name] = np.load(folder / f"{name}.npy", mmap_mode="r")
    return out


def _lightning() -> Any:
    import lightning.pytorch as pl

    return pl


class DDSPDataModule(_lightning().LightningDataModule):
    """Train / validation loaders over cache folders.

    Parameters
    ----------
    train_cache, val_cache
        Cache folders (:func:`build_cache`); ``val_cache`` may be None.
    batch_size
        Examples per batch.
    crop_frames
        Training crop length in frames (None: whole examples); validation always uses whole examples.
    val_examples
        At most this many validation examples (the first ones), to keep validation cheap.
    seed
        Seed of the crop positions.
    """

    def __init__(self, train_cache: str | os.PathLike[str], val_cache: str | os.PathLike[str] | None = None, *,
                 batch_size: int = 8, crop_frames: int | None = 250, val_examples: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.train_cache, self.val_cache = train_cache, val_cache
        self.batch_size, self.crop_frames = int(batch_size), crop_frames
        self.val_examples, self.seed = int(val_examples), int(seed)

    def setup(self, stage: str | None = None) -> None:
        """Open the caches."""
        self.train_set = DDSPExamples(self.train_cache, crop_frames=self.crop_frames, seed=self.seed)
        self.val_set = None
        if self.val_cache is not None:
            full = DDSPExamples(self.val_cache)
            self.val_set = torch.utils.data.Subset(full, range(min(len(full), self.val_examples)))

    def statistics(self) -> dict[str, Any]:
        """The training cache's statistics."""
        return load_cache(self.train_cache)["meta"]["statistics"]

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        """Shuffled, whole batches."""
        g = torch.Generator().manual_seed(self.seed)
        return torch.utils.data.DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                                           generator=g, num_workers=0)

    def val_dataloader(self) -> Iterable[Any]:
        """Whole validation examples (empty when there is no validation cache)."""
        if self.val_set is None:
            return []
        return torch.utils.data.DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=0)
