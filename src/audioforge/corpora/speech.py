"""The synthetic English speech corpus: offline sentences x offline voices x augmentation -> 16 kHz audio + manifest.

:func:`generate_speech_corpus` plans the whole corpus in the parent process (deterministic in ``seed``), then renders
one utterance per job on a process pool with :func:`audioforge.corpora.runner.run_jobs` (resumable, atomic writes).
Festival voices keep one persistent process per voice in each worker, so its start-up is paid once per worker.

Held-out guarantees: the test split uses only voices whose *speakers* never appear in training
(:func:`audioforge.corpora.tts.voice_split`) and only sentences whose transcripts never appear in training
(:func:`audioforge.corpora.text.split_sentences`).

Output folder::

    manifest.jsonl            one JSON object per utterance (WeNet data.list fields key/wav/txt plus duration, sr,
                              split, voice, engine, gender, speaker, accent, text, source, augment, tts)
    summary.json              hours, utterances, voices and sentences per split, engine and source
    corpus.json               the settings the corpus was planned with (a resumed run must use the same)
    wav/<split>/<voice>/<key>.wav                              (default layout)
    LibriSpeech/<split>/<speaker>/<chapter>/<key>.flac + <speaker>-<chapter>.trans.txt, SPEAKERS.TXT
                                                               (``librispeech_layout=True``)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..audio import atomic_path
from ..errors import InvalidParameterError, ManifestError
from .augment import AugmentConfig, apply_augmentation, random_augment
from .manifest import Manifest
from .runner import run_jobs
from .text import Sentence, sentence_pool, split_sentences
from .tts import CLASSIC_ENGINES, ENGINES, VOICES, get_voice, synthesize_one, voice_split

__all__ = [
    "DEFAULT_ENGINE_WEIGHTS",
    "DEFAULT_SOURCES",
    "generate_speech_corpus",
    "load_librispeech",
    "plan_speech_corpus",
    "summarize",
]

DEFAULT_SOURCES = ("fortune", "wordnet", "gcide", "templates")
# espeak-ng has 120 of the 127 voices but is the least natural: share the hours by engine, not by voice
DEFAULT_ENGINE_WEIGHTS = {"espeak-ng": 0.4, "flite": 0.3, "festival": 0.3}
# rough speaking time per transcript word (s) at the default rates, used only to plan the number of utterances
_SEC_PER_WORD = {"espeak-ng": 0.36, "flite": 0.33, "festival": 0.36, "piper": 0.33, "kokoro": 0.33,
                 "kokoro-blend": 0.33}
_SILENCE_RANGE = (0.1, 0.4)  # leading and trailing silence drawn per utterance (s)
_CHAPTER_SIZE = 50
_SETTINGS_NAME = "corpus.json"


def _speaker_ids() -> dict[str, int]:
    return {name: 100 + i for i, name in enumerate(VOICES)}


def _sentence_row(s: Sentence) -> list[str]:
    return [s.text, s.spoken, s.txt, s.source]


def plan_speech_corpus(
    *,
    hours: float,
    seed: int = 0,
    test_fraction: float = 0.1,
    voice_test_fraction: float = 0.2,
    engines: Sequence[str] = CLASSIC_ENGINES,
    engine_weights: dict[str, float] | None = None,
    voices: Sequence[str] | None = None,
    sources: Sequence[str] = DEFAULT_SOURCES,
    max_words: int = 25,
    only_train: bool = False,
    librispeech_layout: bool = False,
    augment: AugmentConfig | None = None,
    sample_rate: int = 16000,
    min_duration: float = 1.0,
    max_duration: float = 15.0,
) -> list[dict[str, Any]]:
    """The job list of :func:`generate_speech_corpus` (same parameters), without rendering anything.

    Planning is sequential from one seeded generator, so the jobs of a smaller ``hours`` are a prefix of those of a
    larger one: a finished corpus can be extended by re-running with more hours into the same folder.

    ``only_train=True`` plans a training supplement to the corpus of the same ``seed``, ``sources``, ``max_words``
    and ``test_fraction``: all hours go to ``train``, its sentences come only from that corpus's training sentences,
    and a voice whose speaker that corpus holds out is refused.
    """
    if not hours > 0:
        raise InvalidParameterError(f"hours must be positive, got {hours}")
    if not 0.0 <= test_fraction < 1.0:
        raise InvalidParameterError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if not 0.0 < min_duration < max_duration:
        raise InvalidParameterError(f"need 0 < min_duration < max_duration, got {min_duration}, {max_duration}")
    chosen = [get_voice(v) for v in voices] if voices is not None else [v for v in VOICES.values()
                                                                        if v.engine in engines]
    if not chosen:
        raise InvalidParameterError(f"no voice matches engines={list(engines)} voices={voices}")
    weights = dict(DEFAULT_ENGINE_WEIGHTS if engine_weights is None else engine_weights)
    bad = [e for e in weights if e not in ENGINES]
    if bad or any(w < 0 for w in weights.values()):
        raise InvalidParameterError(f"engine_weights must map some of {ENGINES} to weights >= 0, got {weights}")

    pool = sentence_pool(seed, sources=sources, max_words=max_words)
    if only_train:
        held = {get_voice(n).speaker for n in voice_split(seed, test_fraction=voice_test_fraction)[1]}
        clash = sorted(v.name for v in chosen if v.speaker in held)
        if clash:
            raise InvalidParameterError(f"only_train: {clash} speak as held-out test speakers of the seed-{seed} "
                                        "corpus; leave them out of a training supplement")
        train_s = split_sentences(pool, test_fraction, seed=seed)[0] if test_fraction > 0 else list(pool)
        test_s, train_v, test_v = [], [v.name for v in chosen], []
    elif test_fraction > 0:
        train_s, test_s = split_sentences(pool, test_fraction, seed=seed)
        train_v, test_v = voice_split(seed, test_fraction=voice_test_fraction, voices=chosen)
    else:
        train_s, test_s, train_v, test_v = list(pool), [], [v.name for v in chosen], []
    if not train_s or (test_fraction > 0 and not test_s and not only_train):
        raise InvalidParameterError(
            f"the sentence pool ({len(pool)} sentences from {list(sources)}) is too small to split; add sources"
        )

    splits = {"train": (train_s, train_v), "test": (test_s, test_v)}
    short = {name: [s for s in sents if s.n_words <= 10] or list(sents) for name, (sents, _) in splits.items()}
    cursor = dict.fromkeys(splits, 0)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EEC]))
    spk_ids = _speaker_ids()
    per_voice: Counter[str] = Counter()
    total = {"train": 0.0, "test": 0.0}
    target = float(hours) * 3600.0
    aug = None if augment is None else dataclasses.asdict(augment)
    jobs: list[dict[str, Any]] = []

    def pick_voice(names: list[str]) -> str:
        by_engine: dict[str, list[str]] = defaultdict(list)
        for n in names:
            by_engine[VOICES[n].engine if n in VOICES else get_voice(n).engine].append(n)
        engs = sorted(by_engine)
        w = np.array([max(weights.get(e, 0.0), 0.0) for e in engs])
        w = w / w.sum() if w.sum() > 0 else np.full(len(engs), 1.0 / len(engs))
        eng = engs[int(rng.choice(len(engs), p=w))]
        return by_engine[eng][int(rng.integers(0, len(by_engine[eng])))]

    while total["train"] + total["test"] < target:
        split = "test" if test_v and total["test"] < test_fraction * (total["train"] + total["test"]) else "train"
        sents, names = splits[split]
        name = pick_voice(names)
        voice = get_voice(name)
        primary = sents[cursor[split] % len(sents)]
        cursor[split] += 1
        fallbacks = [short[split][int(rng.integers(0, len(short[split])))] for _ in range(2)]
        speed, pitch = voice.speed, voice.pitch
        if voice.engine == "espeak-ng":  # per-utterance prosody jitter of the espeak-ng speaker
            speed = int(np.clip(round(voice.speed * rng.uniform(0.85, 1.15)), 80, 450))
            pitch = int(np.clip(round(voice.pitch + rng.uniform(-12, 12)), 0, 99))
        spk = spk_ids[name]
        count = per_voice[name]
        per_voice[name] += 1
        chapter, utt = count // _CHAPTER_SIZE + 1, count % _CHAPTER_SIZE
        key = f"{spk}-{chapter}-{utt:04d}"
        if librispeech_layout:
            wav = f"LibriSpeech/{split}/{spk}/{chapter}/{key}.flac"
        else:
            wav = f"wav/{split}/{name}/{key}.wav"
        jobs.append({
            "key": key, "wav": wav, "split": split, "voice": name, "speaker_id": spk, "chapter_id": chapter,
            "speed": speed, "pitch": pitch, "seed": int(rng.integers(0, 2**63 - 1)),
            "sentences": [_sentence_row(primary)] + [_sentence_row(s) for s in fallbacks],
            "augment": aug, "sr": int(sample_rate), "min_duration": float(min_duration),
            "max_duration": float(max_duration),
        })
        est = primary.n_words * _SEC_PER_WORD[voice.engine] * (voice.speed / speed if speed else 1.0) \
            + sum(_SILENCE_RANGE)
        total[split] += max(est, min_duration)
    return jobs


def _render(job: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Worker: synthesize, pad, augment and save one utterance; returns its manifest entry."""
    sr = int(job["sr"])
    rng = np.random.default_rng(int(job["seed"]))
    voice = get_voice(job["voice"])
    if voice.engine == "espeak-ng":
        voice = dataclasses.replace(voice, speed=int(job["speed"]), pitch=int(job["pitch"]))
    cfg = None if job["augment"] is None else AugmentConfig(**{
        k: tuple(v) if isinstance(v, list) else v for k, v in job["augment"].items()})
    if cfg is not None:  # keep the voice's F0 in a human range: male voices are not shifted far down, female not up
        lo, hi = cfg.pitch_range
        rng_pitch = (min(max(lo, -1.5), hi), hi) if voice.gender == "male" else (lo, max(min(hi, 1.5), lo))
        cfg = dataclasses.replace(cfg, pitch_range=rng_pitch)
    tries: list[str] = []
    for row in job["sentences"]:
        text, spoken, txt, source = row
        y = synthesize_one(spoken, voice, sr=sr)
        lead, trail = (int(rng.uniform(*_SILENCE_RANGE) * sr) for _ in range(2))
        y = np.pad(y, (lead, trail))
        if cfg is not None:
            y, params = random_augment(y, sr, rng, cfg)
        else:
            params = {"level_db": round(float(rng.uniform(-30.0, -20.0)), 1)}
            y = apply_augmentation(y, sr, params)
        short = int(np.ceil(job["min_duration"] * sr)) - len(y)
        if short > 0:  # pad very short commands with (quiet) silence on both sides
            y = np.pad(y, (short // 2, short - short // 2))
        duration = len(y) / sr
        if duration <= job["max_duration"]:
            break
        tries.append(f"{duration:.1f} s")
    else:
        raise InvalidParameterError(
            f"{job['key']}: every candidate sentence is longer than max_duration={job['max_duration']} s "
            f"({', '.join(tries)}); lower max_words or raise max_duration"
        )
    path = out_dir / job["wav"]
    with atomic_path(path) as tmp:  # soundfile directly: audio.save would import torch in every worker
        sf.write(str(tmp), y, sr, subtype="PCM_16", format=path.suffix.lstrip(".").upper())
    entry: dict[str, Any] = {
        "key": job["key"], "wav": job["wav"], "txt": txt, "duration": round(duration, 4), "sr": sr,
        "split": job["split"], "voice": voice.name, "engine": voice.engine, "gender": voice.gender,
        "speaker": voice.speaker, "accent": voice.accent, "text": text, "source": source, "augment": params,
    }
    if voice.engine == "espeak-ng":
        entry["tts"] = {"speed": voice.speed, "pitch": voice.pitch}
    return entry


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / _SETTINGS_NAME
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise InvalidParameterError(
                f"{out} holds a speech corpus planned with other settings ({', '.join(diff)} differ); "
                "resume with the same settings (only --hours may change) or use a new folder"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_librispeech_text(out: Path, manifest: Manifest) -> None:
    groups: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)
    minutes: Counter[tuple[str, str]] = Counter()
    for e in manifest:
        spk, chapter, _ = e["key"].split("-")
        groups[(e["split"], spk, chapter)].append((e["key"], e["txt"].upper()))
        minutes[(spk, e["split"])] += e["duration"] / 60.0
    for (split, spk, chapter), rows in groups.items():
        with atomic_path(out / "LibriSpeech" / split / spk / chapter / f"{spk}-{chapter}.trans.txt") as tmp:
            tmp.write_text("".join(f"{k} {t}\n" for k, t in sorted(rows)), encoding="utf-8")
    ids = {str(v): k for k, v in _speaker_ids().items()}
    lines = ["; Synthetic speakers of the audioforge speech corpus (voice names from audioforge.corpora.tts.VOICES)",
             ";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for (spk, split), mins in sorted(minutes.items()):
        v = VOICES[ids[spk]]
        lines.append(f"{spk:<5}| {v.gender[0].upper()} | {split:<17}| {mins:6.2f}| {v.name}")
    with atomic_path(out / "LibriSpeech" / "SPEAKERS.TXT") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def summarize(manifest: Manifest) -> dict[str, Any]:
    """Hours, utterances, voices, speakers and sentences per split, engine, gender and source of a speech manifest."""
    def block(entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "utterances": len(entries),
            "hours": round(sum(e["duration"] for e in entries) / 3600.0, 4),
            "voices": len({e["voice"] for e in entries}),
            "speakers": len({e["speaker"] for e in entries}),
            "sentences": len({e["txt"] for e in entries}),
        }

    entries = list(manifest)
    out: dict[str, Any] = {"total": block(entries)}
    for field in ("split", "engine", "gender", "source"):
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in entries:
            groups[str(e.get(field))].append(e)
        out[f"by_{field}"] = {k: block(v) for k, v in sorted(groups.items())}
    durs = np.array([e["duration"] for e in entries]) if entries else np.zeros(1)
    out["duration_s"] = {"min": round(float(durs.min()), 3), "mean": round(float(durs.mean()), 3),
                         "max": round(float(durs.max()), 3)}
    out["augmented"] = sum(1 for e in entries if set(e.get("augment", {})) - {"level_db", "limited_db"})
    train = [e for e in entries if e.get("split") == "train"]
    test = [e for e in entries if e.get("split") == "test"]
    out["held_out"] = {
        "shared_voices": len({e["voice"] for e in train} & {e["voice"] for e in test}),
        "shared_speakers": len({e["speaker"] for e in train} & {e["speaker"] for e in test}),
        "shared_sentences": len({e["txt"] for e in train} & {e["txt"] for e in test}),
    }
    return out


def generate_speech_corpus(
    out_dir: str | os.PathLike[str],
    *,
    hours: float,
    seed: int = 0,
    workers: int | None = None,
    test_fraction: float = 0.1,
    voice_test_fraction: float = 0.2,
    librispeech_layout: bool = False,
    engines: Sequence[str] = CLASSIC_ENGINES,
    engine_weights: dict[str, float] | None = None,
    voices: Sequence[str] | None = None,
    sources: Sequence[str] = DEFAULT_SOURCES,
    max_words: int = 25,
    only_train: bool = False,
    augment: AugmentConfig | bool | None = True,
    sample_rate: int = 16000,
    min_duration: float = 1.0,
    max_duration: float = 15.0,
    progress: bool = True,
) -> Manifest:
    """Generate (or resume) a synthetic English speech corpus of about ``hours`` hours.

    Parameters
    ----------
    out_dir
        Output folder (see the module docstring for its layout). Re-running into it resumes; the settings must match.
    hours
        Target amount of audio; utterances are planned from an estimate, the summary reports the real total.
    seed
        Everything (sentences, voices, prosody, augmentation, splits) follows from it; the audio does not depend on
        ``workers``.
    workers
        Processes (default: all cores); 1 renders in this process.
    test_fraction
        Share of the hours that goes to the held-out ``test`` split (and of the sentences held out for it);
        0 makes a train-only corpus.
    voice_test_fraction
        Share of espeak-ng speakers held out for test (see :func:`audioforge.corpora.tts.voice_split`).
    librispeech_layout
        Write FLAC files in LibriSpeech's layout (``LibriSpeech/<split>/<speaker>/<chapter>/``) with ``trans.txt``
        files, readable with :func:`load_librispeech`; the manifest points at them.
    engines, engine_weights, voices
        Which voices speak: all voices of ``engines`` (or exactly ``voices``); hours are shared between engines by
        ``engine_weights`` (default :data:`DEFAULT_ENGINE_WEIGHTS`), then uniformly between voices.
    sources, max_words
        Sentence sources and the longest transcript (see :func:`audioforge.corpora.text.sentence_pool`).
    only_train
        Generate a training supplement to the corpus of the same seed, sources, max_words and test_fraction (other
        voices, e.g. ``engines=("piper", "kokoro")``): no test split, none of its held-out sentences or speakers.
    augment
        ``True`` for the default :class:`~audioforge.corpora.augment.AugmentConfig`, a config, or ``False``/``None``
        for clean speech (loudness only).
    sample_rate
        Output rate (16000 for ASR).
    min_duration, max_duration
        Utterances shorter than ``min_duration`` are padded with silence; longer than ``max_duration`` fall back to
        a shorter sentence of the same split.
    progress
        Show a progress bar.

    Returns
    -------
    Manifest
        Also written to ``out_dir/manifest.jsonl``; ``out_dir/summary.json`` holds :func:`summarize`.

    Raises
    ------
    MissingToolError
        A TTS engine or text source is not installed (the message names the Debian package).
    InvalidParameterError
        Bad settings, or settings different from those of the corpus already in ``out_dir``.
    """
    out = Path(out_dir)
    cfg = AugmentConfig() if augment is True else (augment or None)
    settings = {
        "seed": int(seed), "test_fraction": float(test_fraction), "voice_test_fraction": float(voice_test_fraction),
        "librispeech_layout": bool(librispeech_layout), "engines": list(engines),
        "engine_weights": engine_weights, "voices": None if voices is None else list(voices),
        "sources": list(sources), "max_words": int(max_words),
        "augment": None if cfg is None else json.loads(json.dumps(dataclasses.asdict(cfg))),
        "sample_rate": int(sample_rate), "min_duration": float(min_duration), "max_duration": float(max_duration),
    }
    if only_train:  # the key exists only when set, so corpora made before the option resume unchanged
        settings["only_train"] = True
    jobs = plan_speech_corpus(
        hours=hours, seed=seed, test_fraction=test_fraction, voice_test_fraction=voice_test_fraction,
        engines=engines, engine_weights=engine_weights, voices=voices, sources=sources, max_words=max_words,
        only_train=only_train, librispeech_layout=librispeech_layout, augment=cfg, sample_rate=sample_rate,
        min_duration=min_duration, max_duration=max_duration,
    )
    _check_settings(out, settings)
    manifest = run_jobs(jobs, _render, out, workers=workers, desc="speech", progress=progress)
    if librispeech_layout:
        _write_librispeech_text(out, manifest)
    summary = summarize(manifest)
    if any(summary["held_out"].values()):
        raise ManifestError(f"held-out guarantee broken in {out}: {summary['held_out']}; please report this bug")
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return manifest


def load_librispeech(root: str | os.PathLike[str], *, lowercase: bool = True) -> Manifest:
    """Read a LibriSpeech-layout corpus (the real one or ours) into a Manifest.

    Parameters
    ----------
    root
        The ``LibriSpeech`` folder, its parent, or one subset folder (``.../LibriSpeech/train-clean-100``).
    lowercase
        Lowercase the transcripts (LibriSpeech's are uppercase; audioforge's speech manifests are lowercase).

    Returns
    -------
    Manifest
        Entries ``key``, ``wav`` (relative to the returned manifest's root, the LibriSpeech folder), ``txt``,
        ``duration`` (from the file header), ``sr``, ``split`` (the subset), ``speaker``, ``chapter`` and ``gender``
        when ``SPEAKERS.TXT`` lists it.

    Raises
    ------
    ManifestError
        No ``*.trans.txt`` under ``root``, a malformed transcript line, or a listed utterance without audio.
    """
    p = Path(root)
    if (p / "LibriSpeech").is_dir():
        p = p / "LibriSpeech"
    if not p.is_dir():
        raise ManifestError(f"LibriSpeech folder not found: {p}")
    trans = sorted(p.glob("*/*/*/*.trans.txt")) or sorted(p.glob("*/*/*.trans.txt"))
    if not trans:
        raise ManifestError(f"no <speaker>/<chapter>/*.trans.txt files under {p}; is it a LibriSpeech folder?")
    base = trans[0].parents[3]  # <base>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    genders: dict[str, str] = {}
    speakers_file = base / "SPEAKERS.TXT"
    if speakers_file.is_file():
        for line in speakers_file.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(";") or "|" not in line:
                continue
            cols = [c.strip() for c in line.split("|")]
            if len(cols) >= 2 and cols[1] in ("M", "F"):
                genders[cols[0]] = "male" if cols[1] == "M" else "female"
    entries: list[dict[str, Any]] = []
    for t in trans:
        chapter_dir = t.parent
        for i, line in enumerate(t.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            key, _, text = line.strip().partition(" ")
            parts = key.split("-")
            if len(parts) != 3 or not text:
                raise ManifestError(f"{t}:{i}: expected '<speaker>-<chapter>-<utterance> TRANSCRIPT', got {line!r}")
            audio = next((chapter_dir / f"{key}{ext}" for ext in (".flac", ".wav")
                          if (chapter_dir / f"{key}{ext}").is_file()), None)
            if audio is None:
                raise ManifestError(f"{t}:{i}: no audio {chapter_dir / key}.flac for utterance {key}")
            info = sf.info(str(audio))
            entry: dict[str, Any] = {
                "key": key, "wav": audio.relative_to(base).as_posix(),
                "txt": text.lower() if lowercase else text, "duration": round(info.frames / info.samplerate, 4),
                "sr": int(info.samplerate), "split": chapter_dir.parent.parent.name,
                "speaker": parts[0], "chapter": parts[1],
            }
            if parts[0] in genders:
                entry["gender"] = genders[parts[0]]
            entries.append(entry)
    return Manifest(entries, root=base)
