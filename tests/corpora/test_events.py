"""Tests of the sound-event tagging corpus (audioforge.corpora.events) and its CLI command."""

from __future__ import annotations

import importlib.util
import json
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioforge.corpora.events import (
    CLASS_NAMES,
    CLASSES,
    CONFIG_NAME,
    LABELS_NAME,
    Source,
    activity_segments,
    generate_event_corpus,
    mix_sources,
    plan_event_jobs,
    render_event_clip,
    summarize_event_corpus,
)
from audioforge.corpora.manifest import Manifest
from audioforge.corpora.runner import PROGRESS_NAME
from audioforge.corpora.sfx import SFX_CLASSES, synthesize_sfx
from audioforge.corpora.tools import SOUNDFONTS
from audioforge.errors import AudioForgeError, InvalidParameterError

SR = 32000
SFX = list(SFX_CLASSES)
INSTRUMENTS = [c.name for c in CLASSES if c.kind == "instrument"]
SPEECH = [c.name for c in CLASSES if c.kind == "speech"]

HAVE_TTS = importlib.util.find_spec("audioforge.corpora.tts") is not None
HAVE_FLUID = importlib.util.find_spec("fluidsynth") is not None and all(
    Path(p).is_file() for p, _ in SOUNDFONTS.values())
needs_tts = pytest.mark.skipif(not HAVE_TTS, reason="audioforge.corpora.tts is not available")
needs_fluid = pytest.mark.skipif(not HAVE_FLUID, reason="pyfluidsynth or the soundfonts are not installed")


# --------------------------------------------------------------------------------------------------------------------
# catalogue
def test_catalogue() -> None:
    assert len(CLASSES) >= 20
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    kinds = {c.kind for c in CLASSES}
    assert kinds == {"instrument", "speech", "sfx"}
    assert set(SPEECH) == {"male_speech", "female_speech"}
    assert {"piano", "guitar", "strings", "brass", "reed", "flute"} <= set(INSTRUMENTS)
    assert set(SFX) <= set(CLASS_NAMES)
    for c in CLASSES:
        assert 0 < c.min_duration < c.max_duration <= 10.0
        assert c.description


@needs_fluid
def test_every_instrument_class_has_instruments() -> None:
    from audioforge.corpora import melody

    for c in CLASSES:
        if c.kind == "instrument":
            assert any(i.family == c.source for i in melody.INSTRUMENTS.values()), c.name


# --------------------------------------------------------------------------------------------------------------------
# activity and mixing
def test_activity_segments_tone_bursts() -> None:
    sr = 16000
    y = np.zeros(3 * sr)
    t = np.arange(int(0.5 * sr)) / sr
    y[sr : sr + len(t)] = np.sin(2 * np.pi * 440 * t)  # 1.0-1.5 s
    y[int(1.6 * sr) : int(1.6 * sr) + len(t)] = 0.5 * np.sin(2 * np.pi * 440 * t)  # 1.6-2.1 s: gap 0.1 s < min_gap
    segs = activity_segments(y, sr)
    assert len(segs) == 1
    assert segs[0][0] == pytest.approx(1.0, abs=0.025)
    assert segs[0][1] == pytest.approx(2.1, abs=0.025)
    segs = activity_segments(y, sr, min_gap=0.05)
    assert len(segs) == 2
    assert activity_segments(np.zeros(sr), sr) == []


def test_activity_segments_bad_arguments() -> None:
    with pytest.raises(InvalidParameterError, match="threshold_db"):
        activity_segments(np.ones(100), 16000, threshold_db=3.0)
    with pytest.raises(AudioForgeError):
        activity_segments(np.ones((2, 100)), 16000)


def _power(y: np.ndarray) -> float:
    return float(np.mean(np.asarray(y, dtype=np.float64) ** 2)) if len(y) else 0.0


def _inside_mask(events: list[dict], n: int, sr: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for e in events:
        mask[int(e["onset"] * sr) : int(np.ceil(e["offset"] * sr))] = True
    return mask


@pytest.mark.parametrize("name", SFX)
def test_single_source_labels_follow_the_energy(name: str) -> None:
    sr = 16000
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    src = Source(name, synthesize_sfx(name, float(rng.uniform(1.0, 4.0)), sr, rng))
    audio, events, placements = mix_sources([src], sr=sr, clip_seconds=10.0, rng=rng)
    assert audio.dtype == np.float32 and audio.shape == (10 * sr,)
    assert 0.29 <= float(np.abs(audio).max()) <= 0.9 + 1e-6
    assert events and {e["label"] for e in events} == {name}
    assert len(placements) == 1 and placements[0]["gain_db"] == 0.0
    for e in events:
        assert 0.0 <= e["onset"] < e["offset"] <= 10.0
        assert placements[0]["onset"] - 1e-3 <= e["onset"] and e["offset"] <= placements[0]["offset"] + 1e-3
    mask = _inside_mask(events, len(audio), sr)
    assert mask.any()
    if (~mask).any():
        assert _power(audio[mask]) > 10 * _power(audio[~mask])


def test_mix_of_several_sources() -> None:
    sr = 16000
    rng = np.random.default_rng(5)
    names = ["siren", "footsteps", "water_drip", "wind"]
    sources = [Source(n, synthesize_sfx(n, 3.0, sr, rng), {"note": n}) for n in names]
    audio, events, placements = mix_sources(sources, sr=sr, clip_seconds=10.0, rng=rng)
    assert {e["label"] for e in events} == set(names)
    assert [p["label"] for p in placements] == names
    assert max(p["gain_db"] for p in placements) == 0.0
    assert all(-12.0 <= p["gain_db"] <= 0.0 for p in placements)
    assert all(p["note"] == p["label"] for p in placements)
    assert float(np.abs(audio).max()) <= 0.9 + 1e-6
    assert events == sorted(events, key=lambda e: (e["onset"], e["label"]))


def test_mix_drops_silent_sources_and_cuts_long_ones() -> None:
    sr = 16000
    rng = np.random.default_rng(0)
    loud = Source("siren", synthesize_sfx("siren", 12.0, sr, rng))
    silent = Source("wind", np.zeros(sr))
    audio, events, placements = mix_sources([loud, silent], sr=sr, clip_seconds=10.0, rng=rng)
    assert audio.shape == (10 * sr,)
    assert {e["label"] for e in events} == {"siren"}
    assert [p["label"] for p in placements] == ["siren"]
    with pytest.raises(InvalidParameterError, match="silent"):
        mix_sources([silent], sr=sr, clip_seconds=10.0, rng=rng)
    with pytest.raises(InvalidParameterError, match="at least one"):
        mix_sources([], sr=sr, clip_seconds=10.0, rng=rng)


# --------------------------------------------------------------------------------------------------------------------
# planning
def test_plan_is_balanced_prefix_stable_and_split() -> None:
    jobs = plan_event_jobs(200, seed=3, classes=SFX + INSTRUMENTS)
    assert [j["key"] for j in jobs] == [f"events_{i:06d}" for i in range(200)]
    assert sum(j["split"] == "test" for j in jobs) == 40
    assert plan_event_jobs(37, seed=3, classes=SFX + INSTRUMENTS) == jobs[:37]
    assert plan_event_jobs(37, seed=4, classes=SFX + INSTRUMENTS) != jobs[:37]
    for j in jobs:
        assert 1 <= len(j["classes"]) <= 4
        assert len(set(j["classes"])) == len(j["classes"])
        assert j["soundfonts"] == (["TimGM6mb"] if j["split"] == "test" else ["FluidR3_GM", "MuseScore_General"])
    for split in ("train", "test"):
        counts = {c: 0 for c in SFX + INSTRUMENTS}
        for j in jobs:
            if j["split"] == split:
                for c in j["classes"]:
                    counts[c] += 1
        assert max(counts.values()) - min(counts.values()) <= 2, (split, counts)
    sizes = np.bincount([len(j["classes"]) for j in jobs], minlength=5)[1:]
    assert (sizes > 0).all()


def test_plan_small_corpora_get_a_test_clip() -> None:
    assert [j["split"] for j in plan_event_jobs(3, classes=SFX)].count("test") == 1
    assert all(j["split"] == "train" for j in plan_event_jobs(5, heldout_fraction=0.0, classes=SFX))
    assert all(j["split"] == "test" for j in plan_event_jobs(5, heldout_fraction=1.0, classes=SFX))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clips": 0}, "clips"),
        ({"clips": 2.5}, "clips"),
        ({"seed": -1}, "seed"),
        ({"heldout_fraction": 1.5}, "heldout_fraction"),
        ({"sr": 0}, "sr"),
        ({"clip_seconds": 0.2}, "clip_seconds"),
        ({"max_sources": 5}, "max_sources"),
        ({"classes": ["siren", "unicorn"]}, "unknown classes"),
        ({"classes": ["siren", "rain"]}, "cannot fill"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"clips": 2, "classes": SFX, "progress": False} | kwargs
    with pytest.raises(AudioForgeError, match=match):
        generate_event_corpus(tmp_path / "c", **args)


def test_render_is_deterministic_in_memory() -> None:
    job = plan_event_jobs(4, seed=9, classes=SFX)[3]
    a, ea = render_event_clip(job)
    b, eb = render_event_clip(job)
    np.testing.assert_array_equal(a, b)
    assert ea == eb
    assert ea["labels"] == sorted({e["label"] for e in ea["events"]}, key=CLASS_NAMES.index)


# --------------------------------------------------------------------------------------------------------------------
# corpora on disk
def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "audio").glob("*.wav"))}


def _check_corpus(m: Manifest, root: Path, classes: list[str] | tuple[str, ...]) -> None:
    m.validate(sample_rate=SR, require=["labels"])
    assert json.loads((root / LABELS_NAME).read_text()) == list(classes)
    assert (root / CONFIG_NAME).is_file()
    on_disk = Manifest.load(root)
    assert on_disk.entries == m.entries
    for e in m:
        assert e["sr"] == SR and e["duration"] == 10.0
        assert sf.info(str(m.audio_path(e))).frames == 10 * SR
        assert e["labels"] == sorted({ev["label"] for ev in e["events"]}, key=CLASS_NAMES.index)
        assert set(e["labels"]) <= set(classes)
        assert 1 <= len(e["labels"]) <= 4
        for ev in e["events"]:
            assert 0.0 <= ev["onset"] < ev["offset"] <= 10.0
        assert isinstance(e["seed"], int)
        assert e["split"] in ("train", "test")
        y, _ = sf.read(str(m.audio_path(e)), dtype="float64")
        assert 0.0 < np.abs(y).max() < 1.0
        if len(e["labels"]) == 1:  # a lone source: the labelled regions hold the energy
            mask = _inside_mask(e["events"], len(y), SR)
            if (~mask).any():
                assert _power(y[mask]) > 3 * _power(y[~mask]), e["key"]


def test_sfx_corpus_determinism_across_workers_and_resume(tmp_path: Path) -> None:
    kw = {"clips": 8, "seed": 1, "classes": SFX, "progress": False}
    one = generate_event_corpus(tmp_path / "w1", workers=1, **kw)
    two = generate_event_corpus(tmp_path / "w2", workers=2, **kw)
    _check_corpus(one, tmp_path / "w1", SFX)
    assert one.entries == two.entries
    assert _files(tmp_path / "w1") == _files(tmp_path / "w2")

    # resume: lose one clip and cut the progress log mid-line; only that clip is rendered again
    root = tmp_path / "w1"
    reference = _files(root)
    (root / "audio" / "events_000005.wav").unlink()
    log = (root / PROGRESS_NAME).read_text()
    (root / PROGRESS_NAME).write_text(log + '{"key": "events_0000')
    mtimes = {p.name: p.stat().st_mtime_ns for p in (root / "audio").glob("*.wav")}
    again = generate_event_corpus(root, workers=1, **kw)
    assert again.entries == one.entries
    assert _files(root) == reference
    for p in (root / "audio").glob("*.wav"):
        if p.name != "events_000005.wav":
            assert p.stat().st_mtime_ns == mtimes[p.name], p.name
    assert not list((root / "audio").glob(".*tmp*")), "no temporary files left behind"

    # growing the corpus keeps the first clips (prefix-stable plan)
    more = generate_event_corpus(root, workers=1, **(kw | {"clips": 10}))
    assert more.entries[:8] == one.entries

    # other settings in the same folder are refused with a clear message
    with pytest.raises(InvalidParameterError, match=r"other settings.*seed"):
        generate_event_corpus(root, workers=1, **(kw | {"seed": 2}))


def test_summary(tmp_path: Path) -> None:
    m = generate_event_corpus(tmp_path / "s", clips=6, classes=SFX, workers=1, progress=False)
    s = summarize_event_corpus(m)
    assert sum(s["clips"].values()) == 6
    assert sum(s["hours"].values()) == pytest.approx(6 * 10 / 3600)
    assert list(s["classes"]) == [c for c in CLASS_NAMES if c in s["classes"]]
    total = sum(row[split]["clips"] for row in s["classes"].values() for split in row)
    assert total == sum(len(e["labels"]) for e in m)
    assert s["sources_per_clip"] == pytest.approx(total / 6)


@needs_fluid
@pytest.mark.tools
def test_instrument_corpus_uses_the_split_soundfont(tmp_path: Path) -> None:
    classes = ["piano", "guitar", "strings", "brass", "reed", "flute", "siren"]
    m = generate_event_corpus(tmp_path / "i", clips=6, seed=2, classes=classes, heldout_fraction=0.5, workers=1,
                              progress=False)
    _check_corpus(m, tmp_path / "i", classes)
    used = {"train": set(), "test": set()}
    for e in m:
        has_instrument = any(lab in INSTRUMENTS for lab in e["labels"])
        assert bool(e["soundfonts"]) == has_instrument
        used[e["split"]] |= set(e["soundfonts"])
        for p in e["sources"]:
            if p["label"] in INSTRUMENTS:
                assert 0 <= p["program"] <= 127 and p["instrument"]
                assert p["soundfont"] in e["soundfonts"]
    assert used == {"train": {"FluidR3_GM", "MuseScore_General"}, "test": {"TimGM6mb"}}


@needs_tts
@needs_fluid
@pytest.mark.tools
@pytest.mark.slow
def test_full_corpus_held_out_guarantees(tmp_path: Path) -> None:
    """Test clips use only TimGM6mb and held-out voices; train clips only FluidR3_GM and training voices."""
    classes = ["piano", "strings", "male_speech", "female_speech", "siren", "rain"]
    kw = {"clips": 10, "seed": 4, "classes": classes, "heldout_fraction": 0.5, "progress": False}
    m = generate_event_corpus(tmp_path / "f1", workers=2, **kw)
    _check_corpus(m, tmp_path / "f1", classes)
    config = json.loads((tmp_path / "f1" / CONFIG_NAME).read_text())
    voices = {split: {v for g in config["voices"][split].values() for v in g} for split in ("train", "test")}
    assert voices["train"] and voices["test"] and not voices["train"] & voices["test"]
    seen = {"train": set(), "test": set()}
    fonts = {"train": set(), "test": set()}
    for e in m:
        assert set(e["voices"]) <= voices[e["split"]], e
        seen[e["split"]] |= set(e["voices"])
        fonts[e["split"]] |= set(e["soundfonts"])
        speech = [p for p in e["sources"] if p["label"] in SPEECH]
        assert len(speech) == len(e["voices"])
    assert seen["train"] and seen["test"], "both splits must contain speech"
    assert fonts["test"] == {"TimGM6mb"} and fonts["train"] <= {"FluidR3_GM", "MuseScore_General"}
    # same corpus in one process
    one = generate_event_corpus(tmp_path / "f2", workers=1, **kw)
    assert one.entries == m.entries
    assert _files(tmp_path / "f1") == _files(tmp_path / "f2")


@needs_tts
@needs_fluid
@pytest.mark.tools
def test_cli_events(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from audioforge.cli import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["corpus", "events", "--clips", "3", "--out", str(out), "--seed", "1",
                                      "--workers", "1", "--heldout-fraction", "0.3"])
    assert result.exit_code == 0, result.output
    assert "clips" in result.output and "siren" in result.output
    m = Manifest.load(out)
    assert len(m) == 3 and [e["split"] for e in m].count("test") == 1
    m.validate(sample_rate=SR, require=["labels"])
    assert json.loads((out / LABELS_NAME).read_text()) == list(CLASS_NAMES)


def test_cli_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from audioforge.cli import main

    argv = sys.argv
    sys.argv = ["audioforge", "corpus", "events", "--clips", "0", "--out", str(tmp_path / "x")]
    try:
        with pytest.raises(SystemExit) as info:
            main()
    finally:
        sys.argv = argv
    assert info.value.code == 2
    assert "clips=0" in capsys.readouterr().err
