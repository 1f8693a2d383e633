"""A resumable, parallel, deterministic job runner for corpus generators.

A generator describes its corpus as a list of small job dicts (everything needed to render one item, including its
own seed) and a module-level worker function that renders one job to files and returns the manifest entry. The runner:

* skips jobs whose key is already recorded in ``<out>/.progress.jsonl`` and whose files still exist (resume),
* runs the rest on a process pool, each job independent of scheduling (determinism comes from the job's own seed),
* appends each finished entry to the progress log only after the worker returned (its files were written
  atomically), so an interruption never leaves a truncated file referenced,
* writes the final ``manifest.jsonl`` atomically in job order, and shows a progress bar.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from .manifest import Manifest, write_jsonl

__all__ = ["PROGRESS_NAME", "run_jobs"]

PROGRESS_NAME = ".progress.jsonl"


def _load_progress(out_dir: Path, valid_keys: set[str]) -> dict[str, dict[str, Any]]:
    path = out_dir / PROGRESS_NAME
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption: that job is simply redone
            key = row.get("key")
            if key in valid_keys and (out_dir / row.get("wav", "")).is_file():
                done[key] = row
    return done


def run_jobs(
    jobs: Sequence[dict[str, Any]],
    worker: Callable[[dict[str, Any], Path], dict[str, Any]],
    out_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
    desc: str = "generating",
    manifest_name: str = "manifest.jsonl",
    progress: bool = True,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Manifest:
    """Run ``worker(job, out_dir)`` for every job not already done and write the manifest.

    Parameters
    ----------
    jobs
        Job dicts, each with a unique ``key``. Their order is the manifest's order.
    worker
        A picklable (module-level) function rendering one job into ``out_dir`` and returning its manifest entry
        (``wav`` relative to ``out_dir``). It must write files atomically (``audioforge.audio.atomic_path``).
    out_dir
        Output folder; created if needed.
    workers
        Processes; default ``os.cpu_count()``. ``1`` runs in this process (easier to debug, used by tests).
    initializer, initargs
        Per-process set-up (for example loading a soundfont once per process).

    Returns
    -------
    Manifest
        The full manifest, also written to ``out_dir / manifest_name``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = [j["key"] for j in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("job keys must be unique")
    done = _load_progress(out, set(keys))
    todo = [j for j in jobs if j["key"] not in done]
    n_workers = max(1, workers if workers is not None else (os.cpu_count() or 1))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), initial=len(done), desc=desc, unit="item", dynamic_ncols=True)

    with (out / PROGRESS_NAME).open("a", encoding="utf-8") as log:

        def record(entry: dict[str, Any]) -> None:
            done[entry["key"]] = entry
            log.write(json.dumps(entry, ensure_ascii=False) + "\n")
            log.flush()
            if bar is not None:
                bar.update(1)

        if n_workers == 1 or len(todo) <= 1:
            if initializer is not None:
                initializer(*initargs)
            for job in todo:
                record(worker(job, out))
        else:
            with ProcessPoolExecutor(max_workers=n_workers, initializer=initializer, initargs=initargs) as pool:
                pending = set()
                it = iter(todo)
                for job in it:  # keep a bounded number of jobs in flight
                    pending.add(pool.submit(worker, job, out))
                    if len(pending) >= 4 * n_workers:
                        break
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        record(fut.result())
                        nxt = next(it, None)
                        if nxt is not None:
                            pending.add(pool.submit(worker, nxt, out))
    if bar is not None:
        bar.close()
    entries = [done[k] for k in keys]
    write_jsonl(out / manifest_name, entries)
    return Manifest(entries, root=out)
