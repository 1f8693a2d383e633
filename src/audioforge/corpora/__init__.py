"""Offline corpus generators (speech, instruments, sound events) and the shared manifest reader."""

from __future__ import annotations

from .manifest import Manifest, read_jsonl, write_jsonl
from .runner import run_jobs

__all__ = ["Manifest", "read_jsonl", "run_jobs", "write_jsonl"]
