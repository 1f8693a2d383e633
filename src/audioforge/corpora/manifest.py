"""JSONL manifests: one JSON object per line, WeNet ``data.list`` compatible.

Every entry has ``key`` (unique) and ``wav`` (a path, relative to the manifest's folder or absolute). Task-specific
fields ride along: ``txt`` for speech, ``labels``/``events`` for tagging, ``f0``/``notes`` for instruments,
``duration`` (seconds), ``sr``, ``split``, ``voice``, ``augment`` ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..audio import atomic_path
from ..errors import ManifestError

__all__ = ["Manifest", "read_jsonl", "write_jsonl"]


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSONL file; blank lines are skipped, a malformed line raises ManifestError with its line number."""
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"manifest not found: {p}")
    rows: list[dict[str, Any]] = []
    with p.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{p}:{i}: not valid JSON ({exc.msg}); each line must be one JSON object") from exc
            if not isinstance(row, dict):
                raise ManifestError(f"{p}:{i}: expected a JSON object per line, got {type(row).__name__}")
            rows.append(row)
    return rows


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSONL atomically (a temporary file renamed into place)."""
    p = Path(path)
    with atomic_path(p) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
    return p


class Manifest:
    """A list of corpus entries loaded from (or destined for) a JSONL manifest.

    Parameters
    ----------
    entries
        The rows; each needs ``key`` and ``wav``.
    root
        Folder that relative ``wav`` paths are resolved against (the manifest's folder when loaded).

    Examples
    --------
    >>> m = Manifest.load("corpus/manifest.jsonl")  # doctest: +SKIP
    >>> train = m.filter(split="train", max_duration=15.0)  # doctest: +SKIP
    """

    def __init__(self, entries: Iterable[dict[str, Any]], *, root: str | os.PathLike[str] | None = None) -> None:
        self.entries: list[dict[str, Any]] = [dict(e) for e in entries]
        self.root = Path(root) if root is not None else Path.cwd()
        seen: set[str] = set()
        for i, e in enumerate(self.entries):
            for field in ("key", "wav"):
                if not isinstance(e.get(field), str) or not e[field]:
                    raise ManifestError(f"entry {i} has no {field!r} string: {e!r}")
            if e["key"] in seen:
                raise ManifestError(f"duplicate key {e['key']!r}; keys must be unique within a manifest")
            seen.add(e["key"])

    # construction -------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Manifest:
        """Load a JSONL manifest (WeNet data.list format works as is)."""
        p = Path(path)
        if p.is_dir():
            p = p / "manifest.jsonl"
        return cls(read_jsonl(p), root=p.parent)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically; ``wav`` paths are stored as given."""
        return write_jsonl(path, self.entries)

    # access ---------------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.entries[i]

    def audio_path(self, entry: dict[str, Any]) -> Path:
        """The absolute path of an entry's audio."""
        p = Path(entry["wav"])
        return p if p.is_absolute() else self.root / p

    @property
    def total_duration(self) -> float:
        """Sum of the ``duration`` fields in seconds (entries without one count 0)."""
        return float(sum(float(e.get("duration", 0.0)) for e in self.entries))

    # selection ----------------------------------------------------------------------------------------------------
    def filter(
        self,
        *,
        split: str | Iterable[str] | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Manifest:
        """Return a new manifest with the entries that pass every given condition."""
        splits = {split} if isinstance(split, str) else (set(split) if split is not None else None)

        def keep(e: dict[str, Any]) -> bool:
            if splits is not None and e.get("split") not in splits:
                return False
            d = e.get("duration")
            if min_duration is not None and (d is None or d < min_duration):
                return False
            if max_duration is not None and (d is None or d > max_duration):
                return False
            return where is None or bool(where(e))

        return Manifest([e for e in self.entries if keep(e)], root=self.root)

    # validation ---------------------------------------------------------------------------------------------------
    def validate(
        self,
        *,
        check_files: bool = True,
        sample_rate: int | None = None,
        require: Iterable[str] = (),
        max_problems: int = 20,
    ) -> Manifest:
        """Check the entries and raise one ManifestError listing every problem found (up to ``max_problems``).

        Parameters
        ----------
        check_files
            Each ``wav`` must exist; with ``sample_rate`` its header must also report that rate.
        sample_rate
            Required sample rate of every file (read from the header, not decoded).
        require
            Fields every entry must have, non-empty (``"txt"`` for speech, ``"labels"`` for tagging).
        """
        import soundfile as sf

        problems: list[str] = []
        fields = tuple(require)
        for e in self.entries:
            for f in fields:
                v = e.get(f)
                if v is None or (isinstance(v, (str, list, dict)) and len(v) == 0) or (
                    isinstance(v, str) and not v.strip()
                ):
                    problems.append(f"{e['key']}: empty or missing {f!r}")
            if check_files:
                path = self.audio_path(e)
                if not path.is_file():
                    problems.append(f"{e['key']}: audio file missing: {path}")
                elif sample_rate is not None:
                    try:
                        rate = sf.info(str(path)).samplerate
                    except (RuntimeError, sf.LibsndfileError) as exc:
                        problems.append(f"{e['key']}: unreadable audio {path} ({exc})")
                        continue
                    if rate != sample_rate:
                        problems.append(f"{e['key']}: {path.name} is {rate} Hz, expected {sample_rate} Hz")
            if len(problems) >= max_problems:
                break
        if problems:
            more = " (stopped at the first {max_problems})" if len(problems) >= max_problems else ""
            raise ManifestError(f"{len(problems)} problem(s) in manifest{more}:\n  " + "\n  ".join(problems))
        return self
