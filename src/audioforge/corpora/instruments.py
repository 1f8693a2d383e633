"""A solo-instrument corpus with exact pitch ground truth, for DDSP timbre models and pitch trackers.

For each instrument, :func:`generate_instrument_corpus` writes ``minutes`` of training clips rendered with one
soundfont (FluidR3_GM) and ``heldout_minutes`` of test clips rendered with another (TimGM6mb), from melodies whose
seeds come from a separate stream, so no held-out melody is ever heard in training. Next to every clip::

    <split>/<instrument>/<key>.wav          16-bit PCM, mono, ``sr`` (16 kHz)
    <split>/<instrument>/<key>.f0.npy       float32 f0 in Hz per frame (0 = no note sounding), bends included
    <split>/<instrument>/<key>.notes.json   the score: notes (onset, offset, pitch, velocity), tempo, bend range
    <split>/<instrument>/<key>.mid          the score as a standard MIDI file (for listening and other tools)

f0 frame ``i`` is the instant ``i / frame_rate`` s (default 250 Hz: a 4 ms hop, as DDSP and CREPE use), and a clip of
``d`` seconds has ``floor(d * frame_rate) + 1`` frames. ``manifest.jsonl`` (all clips), ``train.jsonl`` and
``test.jsonl`` list the clips; ``instruments.json`` records the settings so a resumed run cannot mix corpora.

Every clip depends only on its own job (its seed), so the corpus is byte-identical for any number of workers, and an
interrupted run resumes where it stopped (files are written atomically; the wav, written last, marks a finished job).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import atomic_path
from ..errors import InvalidParameterError
from .fluid import init_worker, render_midi, resolve_soundfont
from .manifest import Manifest, write_jsonl
from .melody import BEND_RANGE, INSTRUMENTS, f0_from_midi, generate_melody, get_instrument, notes_from_midi
from .runner import run_jobs

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_CLIP_SECONDS",
    "FRAME_RATE",
    "SPLITS",
    "generate_instrument_corpus",
    "job_seed",
    "plan_jobs",
    "worker",
]

FRAME_RATE = 250  # f0 frames per second: 4 ms hop (64 samples at 16 kHz)
DEFAULT_CLIP_SECONDS = 10.0
CONFIG_NAME = "instruments.json"
SPLITS = ("train", "test")
_VERSION = 1  # bump when the generator's output for a given seed changes
_SPLIT_CODE = {"train": 0, "test": 1}


def job_seed(seed: int, split: str, program: int, index: int) -> int:
    """The seed of one clip: a 53-bit integer (exact in JSON) from its own ``SeedSequence`` stream.

    Train and test clips draw from different spawn keys, so held-out melodies never repeat training ones; growing
    ``minutes`` later only appends clips (existing indices keep their seeds).
    """
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(_SPLIT_CODE[split], int(program), int(index)))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(11))


def _parse_programs(programs: str | Iterable[str | int]) -> list[str]:
    items = [p.strip() for p in programs.split(",")] if isinstance(programs, str) else list(programs)
    items = [p for p in items if not (isinstance(p, str) and not p)]
    if not items:
        raise InvalidParameterError(
            f"no instruments given; pass names such as 'sax,violin,flute' (known: {', '.join(sorted(INSTRUMENTS))})"
        )
    names: list[str] = []
    for p in items:
        name = get_instrument(p).name
        if name not in names:
            names.append(name)
    return names


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) < 0 or (float(value) == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidParameterError(f"{name}={value!r}; it must be a number of minutes {bound}")
    return float(value)


def plan_jobs(
    programs: str | Iterable[str | int],
    minutes: float,
    *,
    seed: int = 0,
    clip_seconds: float = DEFAULT_CLIP_SECONDS,
    heldout_minutes: float | None = None,
    soundfont: str = "FluidR3_GM",
    heldout_soundfont: str = "TimGM6mb",
    sr: int = 16_000,
    frame_rate: float = FRAME_RATE,
) -> list[dict[str, Any]]:
    """The job list of a corpus (one dict per clip, in manifest order), after validating every argument.

    See :func:`generate_instrument_corpus` for the parameters.
    """
    names = _parse_programs(programs)
    minutes = _positive("minutes", minutes)
    held = minutes / 10 if heldout_minutes is None else _positive("heldout_minutes", heldout_minutes, allow_zero=True)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidParameterError(f"seed={seed!r}; use a non-negative integer")
    if not isinstance(clip_seconds, (int, float)) or not 1.0 <= float(clip_seconds) <= 120.0:
        raise InvalidParameterError(f"clip_seconds={clip_seconds!r}; use 1 to 120 seconds per clip")
    if not isinstance(frame_rate, (int, float)) or not 1 <= frame_rate <= 2000:
        raise InvalidParameterError(f"frame_rate={frame_rate!r}; use 1 to 2000 frames per second (250 = 4 ms hop)")
    if held > 0 and str(soundfont) == str(heldout_soundfont):
        raise InvalidParameterError(
            f"the held-out split must use another soundfont than training (both are {soundfont!r}); "
            "pass a different heldout_soundfont or heldout_minutes=0"
        )
    clip = float(clip_seconds)
    jobs: list[dict[str, Any]] = []
    for split, mins, sf in (("train", minutes, soundfont), ("test", held, heldout_soundfont)):
        n = math.ceil(round(mins * 60 / clip, 6)) if mins > 0 else 0
        for name in names:
            inst = INSTRUMENTS[name]
            for i in range(n):
                key = f"{split}-{name}-{i:05d}"
                jobs.append({
                    "key": key,
                    "split": split,
                    "instrument": name,
                    "program": inst.program,
                    "index": i,
                    "seed": job_seed(int(seed), split, inst.program, i),
                    "duration": clip,
                    "soundfont": str(sf),
                    "sr": int(sr),
                    "frame_rate": float(frame_rate),
                })
    train_seeds = {j["seed"] for j in jobs if j["split"] == "train"}
    if any(j["seed"] in train_seeds for j in jobs if j["split"] == "test"):  # pragma: no cover - 2**-53 odds
        raise InvalidParameterError("a held-out seed collides with a training seed; choose another seed")
    return jobs


def _write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj) + "\n", encoding="utf-8")


def _write_wav(path: Path, y: np.ndarray, sr: int) -> None:
    import soundfile as sf

    pcm = np.clip(np.round(y.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), pcm, sr, subtype="PCM_16", format="WAV")


def worker(job: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Render one clip (melody, audio, f0, notes, MIDI) into ``out_dir`` and return its manifest entry."""
    out_dir = Path(out_dir)
    inst = INSTRUMENTS[job["instrument"]]
    sr, duration, frame_rate = int(job["sr"]), float(job["duration"]), float(job["frame_rate"])
    rng = np.random.default_rng(job["seed"])
    pm = generate_melody(inst, duration, rng)
    y = render_midi(pm, job["soundfont"], sr=sr, duration=duration)
    peak = float(np.abs(y).max(initial=0.0))
    gain = 1.0
    if peak > 0.99:  # never clip: scale this clip down and say so
        gain = 0.99 / peak
        y = (y * gain).astype(np.float32)
    n_frames = math.floor(duration * frame_rate + 1e-9) + 1
    f0 = f0_from_midi(pm, frame_rate, n_frames)
    notes = notes_from_midi(pm)

    rel = Path(job["split"]) / job["instrument"]
    folder = out_dir / rel
    folder.mkdir(parents=True, exist_ok=True)
    stem = job["key"]
    with atomic_path(folder / f"{stem}.mid") as tmp:
        pm.write(str(tmp))
    with atomic_path(folder / f"{stem}.f0.npy") as tmp, tmp.open("wb") as fh:
        np.save(fh, f0)
    _write_json(folder / f"{stem}.notes.json", {
        "key": stem,
        "instrument": inst.name,
        "program": inst.program,
        "tempo": round(float(pm.get_tempo_changes()[1][0]), 3),
        "bend_range": BEND_RANGE,
        "columns": ["onset", "offset", "pitch", "velocity"],
        "notes": [[round(float(a), 6), round(float(b), 6), int(p), int(v)] for a, b, p, v in notes],
    })
    _write_wav(folder / f"{stem}.wav", y, sr)  # last: its presence marks the job done
    return {
        "key": stem,
        "wav": (rel / f"{stem}.wav").as_posix(),
        "duration": round(len(y) / sr, 6),
        "sr": sr,
        "instrument": inst.name,
        "program": inst.program,
        "family": inst.family,
        "soundfont": job["soundfont"],
        "split": job["split"],
        "f0": (rel / f"{stem}.f0.npy").as_posix(),
        "frame_rate": frame_rate,
        "notes": (rel / f"{stem}.notes.json").as_posix(),
        "midi": (rel / f"{stem}.mid").as_posix(),
        "n_notes": len(notes),
        "voiced": round(float(np.mean(f0 > 0)), 4),
        "gain": round(gain, 6),
        "seed": job["seed"],
    }


def _check_config(out: Path, config: dict[str, Any]) -> None:
    path = out / CONFIG_NAME
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if isinstance(old, dict) and old != config:
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in config if old.get(k) != config.get(k))
            raise InvalidParameterError(
                f"{out} holds an instrument corpus made with other settings ({diff}); resume with the same settings "
                "or write to a new --out folder"
            )
    _write_json(path, config)


def generate_instrument_corpus(
    out_dir: str | os.PathLike[str],
    *,
    programs: str | Sequence[str | int],
    minutes: float,
    seed: int = 0,
    workers: int | None = None,
    clip_seconds: float = DEFAULT_CLIP_SECONDS,
    heldout_minutes: float | None = None,
    soundfont: str = "FluidR3_GM",
    heldout_soundfont: str = "TimGM6mb",
    sr: int = 16_000,
    frame_rate: float = FRAME_RATE,
    progress: bool = True,
) -> Manifest:
    """Generate (or resume) a solo-instrument corpus with f0 and note ground truth.

    Parameters
    ----------
    out_dir
        Output folder (created; an existing corpus made with the same settings is resumed).
    programs
        Instruments: names, aliases or GM program numbers (``"sax,violin,flute"`` or a list); see
        :data:`audioforge.corpora.melody.INSTRUMENTS`.
    minutes
        Training audio per instrument, in minutes (> 0), rendered with ``soundfont``.
    seed
        Corpus seed; every clip's seed derives from it, its split, its program and its index.
    workers
        Processes (default: all cores; 1 renders in this process).
    clip_seconds
        Length of every clip (1-120 s; default 10).
    heldout_minutes
        Held-out audio per instrument, rendered with ``heldout_soundfont`` from melodies never used in training;
        default a tenth of ``minutes``; 0 for none.
    soundfont, heldout_soundfont
        Soundfont names (``"FluidR3_GM"``, ``"TimGM6mb"``) or ``.sf2`` paths; they must differ.
    sr
        Sample rate of the wav files (16 kHz, as DDSP uses).
    frame_rate
        f0 frames per second (250 = 4 ms hop).
    progress
        Show a progress bar.

    Returns
    -------
    Manifest
        All clips (train then test), also written to ``manifest.jsonl``; ``train.jsonl`` and ``test.jsonl`` hold
        each split. Entry fields: key, wav, duration, sr, instrument, program, family, soundfont, split, f0,
        frame_rate, notes, midi, n_notes, voiced (fraction of voiced frames), gain (1.0 unless the clip had to be
        scaled down to avoid clipping), seed.

    Raises
    ------
    InvalidParameterError
        Unknown instruments (the message lists the known ones), ``minutes <= 0``, equal soundfonts, or an existing
        corpus in ``out_dir`` made with other settings.
    MissingToolError
        pyfluidsynth or a soundfont is missing (the message names the Debian package).
    """
    from ..audio import validate_sample_rate

    sr = validate_sample_rate(sr)
    jobs = plan_jobs(
        programs, minutes, seed=seed, clip_seconds=clip_seconds, heldout_minutes=heldout_minutes,
        soundfont=soundfont, heldout_soundfont=heldout_soundfont, sr=sr, frame_rate=frame_rate,
    )
    used = [soundfont] + ([heldout_soundfont] if any(j["split"] == "test" for j in jobs) else [])
    for sf in used:
        resolve_soundfont(sf)  # fail before writing anything
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, {
        "generator": "audioforge.corpora.instruments",
        "version": _VERSION,
        "seed": int(seed),
        "clip_seconds": float(clip_seconds),
        "sr": sr,
        "frame_rate": float(frame_rate),
        "soundfont": str(soundfont),
        "heldout_soundfont": str(heldout_soundfont),
        "bend_range": BEND_RANGE,
    })
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise InvalidParameterError(f"workers={workers!r}; use a positive number of processes")
    manifest = run_jobs(
        jobs, worker, out, workers=min(n_workers, max(1, len(jobs))), desc="instruments", progress=progress,
        initializer=init_worker, initargs=(tuple(str(s) for s in used), sr),
    )
    for split in SPLITS:
        write_jsonl(out / f"{split}.jsonl", [e for e in manifest if e["split"] == split])
    return manifest
