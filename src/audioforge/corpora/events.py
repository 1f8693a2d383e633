"""Sound-event corpus for audio tagging: 10 s clips mixing 1-4 labelled sources, with clip and strong labels.

Every clip mixes one to four sources of distinct classes from :data:`CLASSES`:

* **instruments** by General MIDI family (``piano``, ``guitar``, ``bass``, ``strings``, ``brass``, ``reed``, ``flute``):
  a melody from :mod:`audioforge.corpora.melody` rendered with FluidSynth (:mod:`audioforge.corpora.fluid`);
* **speech** by voice gender (``male_speech``, ``female_speech``): sentences from :mod:`audioforge.corpora.text`
  spoken by a voice of :mod:`audioforge.corpora.tts`;
* **synthesised events** (alarm beeps, sirens, engines, rain, footsteps, ...): :mod:`audioforge.corpora.sfx`.

Each source gets a class-dependent length, a random onset inside the clip and a random level (-12 to 0 dB relative to
the loudest source, measured on its active frames); a coloured noise floor is usually added and the mix is scaled to a
random peak level, never clipped. Strong labels (``events``: ``{label, onset, offset}``) come from where each source
is actually active -- from its own frame-energy envelope, so leading silence of a speech file or the gaps between
footsteps are not labelled -- and the clip labels are exactly the set of strong-label classes.

Held-out split: clips of split ``"test"`` (a ``heldout_fraction`` of them) render instruments with the TimGM6mb
soundfont and speech with the held-out voices; ``"train"`` clips use the training voices and render each instrument
source with FluidR3_GM or MuseScore_General (drawn per source: two timbres of every program, so a tagger learns the
instrument rather than one soundfont's samples). Sources are
drawn class-balanced (successive shuffled decks of the class list, separately per split). Generation is
deterministic for a seed whatever the number of worker processes, resumable, and prefix-stable: the first ``n``
clips of a larger corpus are the clips of the corpus of ``n``.

Examples
--------
>>> m = generate_event_corpus("data/events", clips=1000, seed=0)  # doctest: +SKIP
>>> m.filter(split="test")[0]["events"]  # doctest: +SKIP
[{'label': 'siren', 'onset': 1.23, 'offset': 7.9}, {'label': 'female_speech', 'onset': 3.1, 'offset': 5.84}]
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import atomic_path, resample, save, validate_audio, validate_sample_rate
from ..errors import InvalidParameterError, MissingToolError, UnsupportedSampleRateError
from .manifest import Manifest
from .runner import run_jobs
from .sfx import SFX_CLASSES, synthesize_sfx

__all__ = [
    "CLASSES",
    "CLASS_NAMES",
    "CONFIG_NAME",
    "LABELS_NAME",
    "SPLIT_SOUNDFONTS",
    "EventClass",
    "Source",
    "activity_segments",
    "generate_event_corpus",
    "mix_sources",
    "plan_event_jobs",
    "render_event_clip",
    "summarize_event_corpus",
]

LABELS_NAME = "labels.json"
CONFIG_NAME = "events_config.json"
SPLIT_SOUNDFONTS: dict[str, tuple[str, ...]] = {"train": ("FluidR3_GM", "MuseScore_General"), "test": ("TimGM6mb",)}
"""Soundfonts of the instrument sources of each split (one drawn per source)."""

_FORMAT_VERSION = 2  # 2: several training soundfonts, entries list the soundfonts they used
_SOURCE_COUNT_WEIGHTS = (0.3, 0.3, 0.25, 0.15)  # P(1 source), P(2), P(3), P(4)


@dataclass(frozen=True)
class EventClass:
    """A class of the event corpus.

    Attributes
    ----------
    name
        The label.
    kind
        ``"instrument"``, ``"speech"`` or ``"sfx"``.
    min_duration, max_duration
        Range of the length (seconds) a source of this class is given in a clip (speech: the most it may take).
    source
        What renders it: the melody family for instruments, the voice gender for speech, the sfx class name.
    description
        One line for tables and docs.
    """

    name: str
    kind: str
    min_duration: float
    max_duration: float
    source: str
    description: str


_INSTRUMENT_CLASSES = (
    # label, melody family, description
    ("piano", "keyboard", "Piano (GM keyboard family)"),
    ("guitar", "guitar", "Nylon and steel acoustic guitars (GM guitar family)"),
    ("bass", "bass", "Acoustic and electric bass (GM bass family)"),
    ("strings", "strings", "Solo bowed strings: violin, viola, cello, contrabass (GM strings family)"),
    ("brass", "brass", "Trumpet, trombone, tuba, French horn (GM brass family)"),
    ("reed", "reed", "Saxophones, oboe, English horn, bassoon, clarinet (GM reed family)"),
    ("flute", "pipe", "Piccolo, flute, recorder (GM pipe family)"),
)

CLASSES: tuple[EventClass, ...] = (
    *(EventClass(n, "instrument", 2.0, 10.0, fam, d) for n, fam, d in _INSTRUMENT_CLASSES),
    EventClass("male_speech", "speech", 1.5, 10.0, "male", "Speech by a male synthetic voice"),
    EventClass("female_speech", "speech", 1.5, 10.0, "female", "Speech by a female synthetic voice"),
    *(EventClass(c.name, "sfx", c.min_duration, c.max_duration, c.name, c.description) for c in SFX_CLASSES.values()),
)
"""Every class, in label-index order (the order of ``labels.json``)."""

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
_BY_NAME = {c.name: c for c in CLASSES}


# --------------------------------------------------------------------------------------------------------------------
# activity and mixing
# --------------------------------------------------------------------------------------------------------------------
def _frame_power(y: np.ndarray, sr: int, frame: float, hop: float) -> tuple[np.ndarray, int, int]:
    win = max(1, round(frame * sr))
    step = max(1, round(hop * sr))
    y = np.asarray(y, dtype=np.float64)
    n_frames = max(1, 1 + (len(y) - win) // step) if len(y) >= win else 1
    c = np.concatenate([[0.0], np.cumsum(y * y)])
    starts = np.arange(n_frames) * step
    ends = np.minimum(starts + win, len(y))
    power = (c[ends] - c[starts]) / np.maximum(ends - starts, 1)
    return power, win, step


def activity_segments(
    y: np.ndarray,
    sr: int,
    *,
    threshold_db: float = -35.0,
    frame: float = 0.02,
    hop: float = 0.01,
    min_gap: float = 0.3,
) -> list[tuple[float, float]]:
    """Where a (clean, single) source is active: frames within ``threshold_db`` of its loudest frame.

    Parameters
    ----------
    y
        Mono samples of the source alone.
    sr
        Sample rate in Hz.
    threshold_db
        A frame is active when its mean power is above the loudest frame's power times this (in dB, negative).
    frame, hop
        Analysis window and hop in seconds.
    min_gap
        Active runs separated by less than this many seconds are merged into one segment.

    Returns
    -------
    list of (onset, offset)
        Disjoint segments in seconds, sorted, inside ``[0, len(y) / sr]``; empty for digital silence.
    """
    sr = validate_sample_rate(sr)
    validate_audio(y, name="y", allow_multichannel=False)
    if threshold_db >= 0 or frame <= 0 or hop <= 0 or min_gap < 0:
        raise InvalidParameterError(
            f"need threshold_db < 0, frame > 0, hop > 0, min_gap >= 0; got {threshold_db}, {frame}, {hop}, {min_gap}"
        )
    power, win, step = _frame_power(y, sr, frame, hop)
    peak = float(power.max(initial=0.0))
    if peak <= 1e-20:
        return []
    active = power > peak * 10 ** (threshold_db / 10)
    idx = np.flatnonzero(active)
    length = len(y) / sr
    segments: list[list[float]] = []
    for i in idx:
        on, off = i * step / sr, min(length, (i * step + win) / sr)
        if segments and on - segments[-1][1] < min_gap:
            segments[-1][1] = off
        else:
            segments.append([on, off])
    return [(float(a), float(b)) for a, b in segments]


@dataclass
class Source:
    """One source to be mixed into a clip.

    Attributes
    ----------
    label
        Its class name.
    audio
        Mono samples at the clip's rate (at most a clip long).
    info
        Free metadata kept in the manifest's ``sources`` (voice, instrument, program ...).
    """

    label: str
    audio: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def _coloured_noise(n: int, rng: np.random.Generator, alpha: float) -> np.ndarray:
    """Noise with a 1/f^alpha power spectrum (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (alpha / 2), n)
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)


def mix_sources(
    sources: Sequence[Source],
    *,
    sr: int,
    clip_seconds: float,
    rng: np.random.Generator,
    gain_range_db: tuple[float, float] = (-12.0, 0.0),
    noise_floor_prob: float = 0.85,
    snr_range_db: tuple[float, float] = (20.0, 45.0),
    peak_range: tuple[float, float] = (0.3, 0.9),
    threshold_db: float = -35.0,
) -> tuple[np.ndarray, list[dict[str, Any]], list[dict[str, Any]]]:
    """Place sources at random onsets and levels in a clip and derive the strong labels.

    Parameters
    ----------
    sources
        The sources; each at most ``clip_seconds`` long (longer ones are cut with a 10 ms fade).
    sr
        Sample rate of the sources and the clip.
    clip_seconds
        Clip length in seconds.
    rng
        Draws onsets, levels, the noise floor and the output level.
    gain_range_db
        Level of each source relative to the loudest (active-frame RMS), drawn uniformly; a lone source gets 0 dB.
    noise_floor_prob
        Chance of a coloured noise floor (white to brown) under the whole clip.
    snr_range_db
        Level of the mix's active frames above the noise floor, drawn uniformly.
    peak_range
        The output peak is drawn uniformly in this range (so the clip never clips).
    threshold_db
        Activity threshold of :func:`activity_segments`.

    Returns
    -------
    (audio, events, placements)
        ``audio`` float32 ``(round(clip_seconds * sr),)``; ``events`` sorted ``{label, onset, offset}`` in seconds
        (3 decimals) inside ``[0, clip_seconds]``; ``placements`` one dict per source (label, onset, offset of the
        placed signal, gain_db and its ``info``), in the order given.
    """
    sr = validate_sample_rate(sr)
    n = round(clip_seconds * sr)
    if n <= 0:
        raise InvalidParameterError(f"clip_seconds={clip_seconds} gives an empty clip")
    if not sources:
        raise InvalidParameterError("mix_sources needs at least one source")
    lo, hi = gain_range_db
    gains = [0.0] if len(sources) == 1 else [float(rng.uniform(lo, hi)) for _ in sources]
    top = max(gains)
    gains = [g - top for g in gains]
    mix = np.zeros(n)
    events: list[dict[str, Any]] = []
    placements: list[dict[str, Any]] = []
    fade = max(1, int(0.01 * sr))
    for src, gain_db in zip(sources, gains, strict=True):
        y = np.asarray(src.audio, dtype=np.float64)
        validate_audio(y, name=f"source {src.label!r}", allow_multichannel=False)
        if len(y) > n:
            y = y[:n].copy()
            y[-fade:] *= np.linspace(1.0, 0.0, fade)
        power, _, _ = _frame_power(y, sr, 0.02, 0.01)
        active = power > power.max(initial=0.0) * 10 ** (threshold_db / 10)
        level = float(np.sqrt(power[active].mean())) if active.any() else 0.0
        if level <= 0.0:
            continue  # a silent source contributes nothing and gets no label
        start = int(rng.integers(0, n - len(y) + 1))
        mix[start : start + len(y)] += y * (10 ** (gain_db / 20) / level)
        onset = start / sr
        for a, b in activity_segments(y, sr, threshold_db=threshold_db):
            events.append({"label": src.label, "onset": round(onset + a, 3),
                           "offset": round(min(clip_seconds, onset + b), 3)})
        placements.append({"label": src.label, "onset": round(onset, 3), "offset": round(onset + len(y) / sr, 3),
                           "gain_db": round(gain_db, 2), **src.info})
    if not events:
        raise InvalidParameterError("every source is silent; nothing to label")
    if rng.random() < noise_floor_prob:
        power, _, _ = _frame_power(mix, sr, 0.02, 0.01)
        active = power > power.max() * 10 ** (threshold_db / 10)
        mix_rms = float(np.sqrt(power[active].mean()))
        snr = float(rng.uniform(*snr_range_db))
        floor = _coloured_noise(n, rng, float(rng.uniform(0.0, 2.0)))
        mix += floor * mix_rms * 10 ** (-snr / 20)
    peak = float(np.abs(mix).max())
    mix *= float(rng.uniform(*peak_range)) / peak
    events.sort(key=lambda e: (e["onset"], e["label"]))
    return mix.astype(np.float32), events, placements


# --------------------------------------------------------------------------------------------------------------------
# rendering the sources of one clip
# --------------------------------------------------------------------------------------------------------------------
def _tts() -> Any:
    try:
        from . import tts
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise MissingToolError(
            f"the speech classes need audioforge.corpora.tts, which cannot be imported ({exc})"
        ) from exc
    return tts


_TEXT_SOURCES = ("fortune", "templates")  # quick to load (0.3 s per process) and a few thousand sentences


def _sentences(seed: int, split: str) -> list[Any]:
    """The sentence pool of a split: sentences are held out by transcript like voices are held out by speaker."""
    from . import text

    pool = text.sentence_pool(seed, sources=_TEXT_SOURCES, max_words=20, n_templates=2000)
    train, test = text.split_sentences(pool, 0.2, seed=seed)
    return test if split == "test" else train


def _synthesize_speech(tts: Any, texts: list[str], voice: Any, sr: int) -> list[np.ndarray]:
    """Speech at ``sr``: asked of the engine directly where it supports that rate, else made at 16 kHz and resampled."""
    try:
        return [np.asarray(c, dtype=np.float64) for c in tts.synthesize(texts, voice, sr=sr)]
    except UnsupportedSampleRateError:
        return [resample(np.asarray(c, dtype=np.float64), 16_000, sr) for c in tts.synthesize(texts, voice, sr=16_000)]


def _render_speech(cls: EventClass, job: dict[str, Any], rng: np.random.Generator, sr: int,
                   max_seconds: float) -> Source:
    import dataclasses

    tts = _tts()
    names = job["voices"][cls.source]
    engines = sorted({tts.VOICES[n].engine for n in names})  # engine first: espeak-ng variants would swamp the rest
    engine = engines[int(rng.integers(len(engines)))]
    names = [n for n in names if tts.VOICES[n].engine == engine]
    voice = tts.VOICES[names[int(rng.integers(len(names)))]]
    if voice.engine == "espeak-ng":  # per-utterance speaking rate and pitch, as a speaker varies
        voice = dataclasses.replace(voice, speed=int(np.clip(voice.speed * rng.uniform(0.85, 1.2), 80, 450)),
                                    pitch=int(np.clip(voice.pitch + rng.integers(-10, 11), 0, 99)))
    target = float(rng.uniform(cls.min_duration, cls.max_duration))
    pool = _sentences(job["text_seed"], job["split"])
    chosen = [pool[int(i)] for i in rng.choice(len(pool), size=3, replace=False)]
    pause = np.zeros(0)
    parts: list[np.ndarray] = []
    said: list[str] = []
    total = 0
    for k, sentence in enumerate(chosen):  # one sentence at a time: stop once the next one would not fit
        if k > 0 and total + len(pause) > target * sr:
            break
        c = _synthesize_speech(tts, [sentence.spoken], voice, sr)[0]
        if k > 0 and total + len(pause) + len(c) > target * sr:
            break
        parts.extend([pause, c])
        said.append(sentence.txt)
        total += len(pause) + len(c)
        pause = np.zeros(int(rng.uniform(0.2, 0.6) * sr))
    y = np.concatenate(parts)[: round(max_seconds * sr)]
    return Source(cls.name, y, {"voice": voice.name, "txt": " ".join(said)})


def _render_instrument(cls: EventClass, job: dict[str, Any], rng: np.random.Generator, sr: int) -> Source:
    from . import fluid, melody

    names = sorted(n for n, inst in melody.INSTRUMENTS.items() if inst.family == cls.source)
    if not names:
        raise MissingToolError(f"audioforge.corpora.melody has no instrument of family {cls.source!r} for {cls.name}")
    fonts = job["soundfonts"]
    font = fonts[int(rng.integers(len(fonts)))] if len(fonts) > 1 else fonts[0]  # one font: the stream of v1
    inst = melody.INSTRUMENTS[names[int(rng.integers(len(names)))]]
    d = float(rng.uniform(cls.min_duration, cls.max_duration))
    pm = melody.generate_melody(inst, d, rng)
    y = fluid.render_midi(pm, font, sr=sr, duration=d)
    return Source(cls.name, y, {"instrument": inst.name, "program": int(inst.program), "soundfont": font})


def _render_source(label: str, job: dict[str, Any], rng: np.random.Generator) -> Source:
    cls = _BY_NAME[label]
    sr, clip = job["sr"], job["clip_seconds"]
    if cls.kind == "sfx":
        d = float(rng.uniform(cls.min_duration, min(cls.max_duration, clip)))
        return Source(label, synthesize_sfx(cls.source, d, sr, rng))
    if cls.kind == "instrument":
        return _render_instrument(cls, job, rng, sr)
    return _render_speech(cls, job, rng, sr, clip)


def render_event_clip(job: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Render one planned clip (a job of :func:`plan_event_jobs`) in memory.

    Returns
    -------
    (audio, entry)
        float32 samples and the manifest entry without ``wav``.
    """
    rng = np.random.default_rng(job["seed"])
    sources: list[Source] = []
    for label in job["classes"]:
        src_rng = np.random.default_rng(rng.integers(2**63))  # each source its own stream
        for _attempt in range(3):
            src = _render_source(label, job, src_rng)
            if np.abs(src.audio).max(initial=0.0) > 1e-4:
                sources.append(src)
                break
    audio, events, placements = mix_sources(sources, sr=job["sr"], clip_seconds=job["clip_seconds"], rng=rng)
    entry = {
        "key": job["key"],
        "duration": round(len(audio) / job["sr"], 6),
        "sr": job["sr"],
        "split": job["split"],
        "labels": sorted({e["label"] for e in events}, key=CLASS_NAMES.index),
        "events": events,
        "soundfonts": sorted({p["soundfont"] for p in placements if "soundfont" in p}),
        "voices": sorted({p["voice"] for p in placements if "voice" in p}),
        "sources": placements,
        "seed": job["seed"],
    }
    return audio, entry


def _worker(job: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    audio, entry = render_event_clip(job)
    rel = f"audio/{job['key']}.wav"
    save(out_dir / rel, audio, job["sr"], subtype="PCM_16")
    return {"key": entry["key"], "wav": rel, **{k: v for k, v in entry.items() if k != "key"}}


def _init_worker(soundfonts: tuple[str, ...], sr: int, text_seed: int | None) -> None:
    """Per-process set-up: load the soundfonts once, and read the sentence pool once when speech is rendered."""
    if soundfonts:
        from . import fluid

        fluid.init_worker(soundfonts, sr=sr)
    if text_seed is not None:
        _sentences(text_seed, "train")


# --------------------------------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------------------------------
def _clip_seed(seed: int, index: int) -> int:
    a, b = np.random.SeedSequence([seed, index, 0xE7E]).generate_state(2)
    return int((int(a) << 31) ^ int(b)) & (2**63 - 1)


def _is_test(index: int, fraction: float) -> bool:
    # clip i is held out when floor((i + 1) f + 1/2) > floor(i f + 1/2): evenly spread, prefix-stable, and the first
    # n clips hold floor(n f + 1/2) held-out ones
    return int(np.floor((index + 1) * fraction + 0.5)) > int(np.floor(index * fraction + 0.5))


def _deck(classes: Sequence[str], seed: int, split: str) -> Iterator[str]:
    rng = np.random.default_rng([seed, 0xDEC, 0 if split == "train" else 1])
    while True:
        yield from (classes[i] for i in rng.permutation(len(classes)))


def _voice_split(seed: int) -> dict[str, dict[str, list[str]]]:
    """Voice names by split and gender, from the tts module's own train/test split."""
    tts = _tts()
    split_fn = getattr(tts, "voice_split", None)
    if split_fn is None:
        raise MissingToolError("audioforge.corpora.tts has no voice_split(); the held-out voices cannot be chosen")
    parts = split_fn(seed)
    if isinstance(parts, dict):
        train, test = parts["train"], parts["test"]
    else:
        train, test = parts
    out: dict[str, dict[str, list[str]]] = {}
    for split, voices in (("train", train), ("test", test)):
        names = [v if isinstance(v, str) else v.name for v in voices]
        out[split] = {g: sorted(n for n in names if tts.VOICES[n].gender == g) for g in ("male", "female")}
    overlap = {n for g in out["train"].values() for n in g} & {n for g in out["test"].values() for n in g}
    if overlap:
        raise MissingToolError(f"the tts voice split puts {sorted(overlap)} in both train and test")
    return out


def _check_args(clips: Any, seed: Any, heldout_fraction: Any, sr: Any, clip_seconds: Any, max_sources: Any,
                classes: Sequence[str] | None) -> tuple[str, ...]:
    if isinstance(clips, bool) or not isinstance(clips, (int, np.integer)) or clips < 1:
        raise InvalidParameterError(f"clips={clips!r}; give a positive whole number of clips")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidParameterError(f"seed={seed!r}; give a non-negative integer seed")
    if not isinstance(heldout_fraction, (int, float)) or not 0.0 <= heldout_fraction <= 1.0:
        raise InvalidParameterError(f"heldout_fraction={heldout_fraction!r}; give a fraction in [0, 1] (e.g. 0.2)")
    validate_sample_rate(sr)
    if not isinstance(clip_seconds, (int, float)) or not 1.0 <= clip_seconds <= 60.0:
        raise InvalidParameterError(f"clip_seconds={clip_seconds!r}; give a clip length between 1 and 60 s")
    if isinstance(max_sources, bool) or not isinstance(max_sources, (int, np.integer)) or not 1 <= max_sources <= 4:
        raise InvalidParameterError(f"max_sources={max_sources!r}; a clip mixes 1 to 4 sources")
    if classes is None:
        return CLASS_NAMES
    if isinstance(classes, str):
        classes = [classes]
    unknown = [c for c in classes if c not in _BY_NAME]
    if unknown:
        raise InvalidParameterError(f"unknown classes {unknown}; known: {', '.join(CLASS_NAMES)}")
    chosen = tuple(c for c in CLASS_NAMES if c in set(classes))
    if len(chosen) < max_sources:
        raise InvalidParameterError(f"{len(chosen)} classes cannot fill clips of up to {max_sources} distinct sources")
    return chosen


def plan_event_jobs(
    clips: int,
    *,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    sr: int = 32_000,
    clip_seconds: float = 10.0,
    max_sources: int = 4,
    classes: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Plan the clips of an event corpus: key, split, classes, soundfont, allowed voices and seed of each.

    The plan is prefix-stable: clip ``i`` is the same in a plan of ``clips > i`` clips. Held-out clips are spread
    evenly (the first ``n`` clips hold ``floor(n * heldout_fraction + 1/2)``); classes come from per-split decks of
    shuffled class lists, so every class appears about equally often in each split.

    Returns
    -------
    list of dict
        Job dicts for :func:`render_event_clip` / the runner.
    """
    names = _check_args(clips, seed, heldout_fraction, sr, clip_seconds, max_sources, classes)
    speech = [c for c in names if _BY_NAME[c].kind == "speech"]
    voices = _voice_split(seed) if speech else {"train": {}, "test": {}}
    available = {
        split: [c for c in names if _BY_NAME[c].kind != "speech" or voices[split].get(_BY_NAME[c].source)]
        for split in ("train", "test")
    }
    decks = {split: _deck(available[split], seed, split) for split in available}
    waiting: dict[str, list[str]] = {"train": [], "test": []}
    jobs: list[dict[str, Any]] = []
    for i in range(int(clips)):
        split = "test" if _is_test(i, float(heldout_fraction)) else "train"
        cseed = _clip_seed(int(seed), i)
        prng = np.random.default_rng([cseed, 1])
        weights = np.asarray(_SOURCE_COUNT_WEIGHTS[:max_sources])
        count = min(1 + int(prng.choice(len(weights), p=weights / weights.sum())), len(available[split]))
        chosen: list[str] = []
        pending = waiting[split]
        k = 0
        while len(chosen) < count:  # take from the waiting list first, then the deck; skip duplicates for later
            if k < len(pending):
                c = pending[k]
                k += 1
            else:
                c = next(decks[split])
                pending.append(c)
                k += 1
            if c not in chosen:
                chosen.append(c)
        for c in chosen:
            pending.remove(c)
        jobs.append({
            "key": f"events_{i:06d}",
            "index": i,
            "split": split,
            "classes": chosen,
            "soundfonts": list(SPLIT_SOUNDFONTS[split]),
            "voices": voices[split],
            "sr": int(sr),
            "clip_seconds": float(clip_seconds),
            "text_seed": int(seed),
            "seed": cseed,
        })
    return jobs


# --------------------------------------------------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------------------------------------------------
def _check_config(out: Path, config: dict[str, Any]) -> None:
    path = out / CONFIG_NAME
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return  # unreadable: it is rewritten below and any progress entries are re-validated by key
    diff = [k for k in config if k != "clips" and old.get(k) != config[k]]
    if diff:
        was = ", ".join(f"{k}={old.get(k)!r}" for k in diff)
        now = ", ".join(f"{k}={config[k]!r}" for k in diff)
        raise InvalidParameterError(
            f"{out} holds an event corpus generated with other settings ({was}; now {now}); "
            "use a new --out folder or the same settings"
        )


def generate_event_corpus(
    out_dir: str | os.PathLike[str],
    *,
    clips: int,
    seed: int = 0,
    workers: int | None = None,
    heldout_fraction: float = 0.2,
    sr: int = 32_000,
    clip_seconds: float = 10.0,
    max_sources: int = 4,
    classes: Sequence[str] | None = None,
    progress: bool = True,
) -> Manifest:
    """Generate (or finish) a sound-event tagging corpus in ``out_dir``.

    Parameters
    ----------
    out_dir
        Output folder: ``audio/<key>.wav`` (16-bit PCM), ``manifest.jsonl``, ``labels.json`` (the class list in
        label-index order) and ``events_config.json`` (the settings, checked when resuming).
    clips
        Number of clips.
    seed
        Master seed; the corpus is a function of it (and of the settings), not of ``workers``.
    workers
        Processes; default all cores; ``1`` renders in this process.
    heldout_fraction
        Fraction of clips in split ``"test"``: TimGM6mb instruments and held-out voices (training clips: FluidR3_GM
        and MuseScore_General instruments, the training voices).
    sr
        Sample rate (32 kHz for PaSST).
    clip_seconds
        Clip length.
    max_sources
        Most sources in one clip (1-4).
    classes
        Restrict the corpus to these classes (default all of :data:`CLASS_NAMES`).
    progress
        Show a progress bar.

    Returns
    -------
    Manifest
        Entries with ``key, wav, duration, sr, split, labels, events, soundfonts, voices, sources, seed``.

    Raises
    ------
    InvalidParameterError
        Bad arguments, or ``out_dir`` holding a corpus made with other settings.
    MissingToolError
        FluidSynth, a soundfont or the speech engines are missing.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                or workers < 1):
        raise InvalidParameterError(f"workers={workers!r}; give a positive number of processes (or None for all)")
    jobs = plan_event_jobs(clips, seed=seed, heldout_fraction=heldout_fraction, sr=sr, clip_seconds=clip_seconds,
                           max_sources=max_sources, classes=classes)
    names = _check_args(clips, seed, heldout_fraction, sr, clip_seconds, max_sources, classes)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidParameterError(f"{out} exists and is not a folder; choose another --out")
    config = {"format": _FORMAT_VERSION, "seed": int(seed), "heldout_fraction": float(heldout_fraction),
              "sr": int(sr), "clip_seconds": float(clip_seconds), "max_sources": int(max_sources),
              "classes": list(names), "split_soundfonts": {k: list(v) for k, v in SPLIT_SOUNDFONTS.items()},
              "voices": _voice_split(int(seed)) if any(_BY_NAME[c].kind == "speech" for c in names) else {},
              "text_sources": list(_TEXT_SOURCES),
              "clips": int(clips)}
    _check_config(out, config)
    out.mkdir(parents=True, exist_ok=True)
    for name, payload in ((CONFIG_NAME, config), (LABELS_NAME, list(names))):
        with atomic_path(out / name) as tmp:
            tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    soundfonts = tuple(sorted({f for j in jobs for f in j["soundfonts"]})) if any(
        _BY_NAME[c].kind == "instrument" for c in names) else ()
    text_seed = int(seed) if any(_BY_NAME[c].kind == "speech" for c in names) else None
    return run_jobs(jobs, _worker, out, workers=workers, desc="event clips", progress=progress,
                    initializer=_init_worker, initargs=(soundfonts, int(sr), text_seed))


def summarize_event_corpus(manifest: Manifest) -> dict[str, Any]:
    """Counts for a report: clips and hours per split, and per class the clips, events and active seconds per split.

    Returns
    -------
    dict
        ``{"clips": {split: n}, "hours": {split: h}, "sources_per_clip": mean, "classes": {label: {split:
        {"clips", "events", "active_s"}}}}`` with every split seen and every label seen, in class order.
    """
    splits = sorted({e.get("split", "train") for e in manifest}, key=lambda s: (s != "train", s))
    clips = Counter(e.get("split", "train") for e in manifest)
    hours: Counter[str] = Counter()
    per: dict[str, dict[str, dict[str, float]]] = {}
    n_sources = 0
    for e in manifest:
        split = e.get("split", "train")
        hours[split] += float(e.get("duration", 0.0)) / 3600
        n_sources += len(e.get("labels", []))
        for label in e.get("labels", []):
            per.setdefault(label, {s: {"clips": 0, "events": 0, "active_s": 0.0} for s in splits})[split]["clips"] += 1
        for ev in e.get("events", []):
            row = per.setdefault(ev["label"], {s: {"clips": 0, "events": 0, "active_s": 0.0} for s in splits})[split]
            row["events"] += 1
            row["active_s"] += float(ev["offset"]) - float(ev["onset"])
    order = {n: i for i, n in enumerate(CLASS_NAMES)}
    return {
        "clips": {s: clips[s] for s in splits},
        "hours": {s: hours[s] for s in splits},
        "sources_per_clip": n_sources / max(1, len(manifest)),
        "classes": {k: per[k] for k in sorted(per, key=lambda k: (order.get(k, len(order)), k))},
    }
