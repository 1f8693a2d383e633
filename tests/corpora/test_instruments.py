"""FluidSynth rendering and the instrument corpus: f0 truth against the audio, determinism, resume, held-out split."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pretty_midi = pytest.importorskip("pretty_midi")
librosa = pytest.importorskip("librosa")

from audioforge.corpora import tools  # noqa: E402
from audioforge.corpora.instruments import (  # noqa: E402
    CONFIG_NAME,
    generate_instrument_corpus,
    job_seed,
    plan_jobs,
)
from audioforge.corpora.manifest import Manifest  # noqa: E402
from audioforge.corpora.melody import f0_from_midi, generate_melody, get_instrument  # noqa: E402
from audioforge.corpora.runner import PROGRESS_NAME  # noqa: E402
from audioforge.errors import AudioForgeError, InvalidParameterError, MissingToolError  # noqa: E402


def _have_fluidsynth() -> bool:
    try:
        import fluidsynth  # noqa: F401
    except ImportError:
        return False
    return all(Path(p).is_file() for p, _ in tools.SOUNDFONTS.values())


needs_fluidsynth = pytest.mark.skipif(
    not _have_fluidsynth(), reason="needs pyfluidsynth, fluid-soundfont-gm and timgm6mb-soundfont (scripts/setup.sh)"
)
SR = 16_000


def _render(*args, **kwargs):
    from audioforge.corpora.fluid import render_midi

    return render_midi(*args, **kwargs)


def _cents_and_voicing(name: str, soundfont: str, seed: int, duration: float = 6.0, hop: int = 160):
    """Render a melody, track it with pyin (voicing) and yin (continuous pitch), and compare with the f0 truth."""
    inst = get_instrument(name)
    pm = generate_melody(inst, duration, np.random.default_rng(seed))
    y = _render(pm, soundfont, duration=duration)
    fmin, fmax = librosa.midi_to_hz(inst.low - 3), librosa.midi_to_hz(inst.high + 3)
    frame = 2048 if inst.low < 48 else 1024
    _, vf, _ = librosa.pyin(y, fmin=fmin, fmax=fmax, sr=SR, frame_length=frame, hop_length=hop)
    fy = librosa.yin(y, fmin=fmin, fmax=fmax, sr=SR, frame_length=frame, hop_length=hop)
    n = min(len(vf), len(fy))
    vf, fy = vf[:n], fy[:n]
    truth = f0_from_midi(pm, SR / hop, n).astype(np.float64)
    rms = librosa.feature.rms(y=y, frame_length=frame, hop_length=hop)[0][:n]
    return pm, y, truth, fy, vf, rms


# ------------------------------------------------------------------------------------------------------------- render
@needs_fluidsynth
def test_render_shape_level_and_independence():
    pm_a = generate_melody("violin", 3.0, np.random.default_rng(0))
    pm_b = generate_melody("tenor_sax", 3.0, np.random.default_rng(1))
    a1 = _render(pm_a, "FluidR3_GM", duration=3.0)
    _render(pm_b, "FluidR3_GM", duration=3.0)
    a2 = _render(pm_a, "FluidR3_GM", duration=3.0)
    assert a1.dtype == np.float32 and a1.shape == (3 * SR,)
    assert np.array_equal(a1, a2)  # nothing of a previous render leaks into the next
    assert 0.05 < np.abs(a1).max() < 1.0
    # before the first note there is silence; the default duration adds a release tail
    first = min(n.start for n in pm_a.instruments[0].notes)
    assert np.abs(a1[: int(first * SR)]).max() < 1e-5  # (the resampler's pre-ringing is far below 16-bit)
    assert len(_render(pm_a, "FluidR3_GM")) == round((pm_a.get_end_time() + 1.0) * SR)
    # program override and the other soundfont change the sound
    assert not np.allclose(_render(pm_a, "FluidR3_GM", duration=3.0, program=73), a1)
    assert not np.allclose(_render(pm_a, "TimGM6mb", duration=3.0), a1)


@needs_fluidsynth
def test_render_is_sample_accurate():
    pm = pretty_midi.PrettyMIDI()
    tr = pretty_midi.Instrument(program=0)
    tr.notes.append(pretty_midi.Note(110, 60, 0.5, 1.0))
    pm.instruments.append(tr)
    y = _render(pm, "FluidR3_GM", duration=1.5)
    onset = np.flatnonzero(np.abs(y) > 1e-4)[0] / SR
    assert 0.5 <= onset < 0.5 + 0.003


@needs_fluidsynth
def test_pitch_bend_range_from_rpn_reaches_the_audio():
    """A flute note bent by +5 semitones with a 12-semitone RPN range sounds a fourth up (not 0.83 st as with 2)."""
    pm = pretty_midi.PrettyMIDI()
    tr = pretty_midi.Instrument(program=73)
    for num, val in ((101, 0), (100, 0), (6, 12), (38, 0), (101, 127), (100, 127)):
        tr.control_changes.append(pretty_midi.ControlChange(num, val, 0.0))
    tr.pitch_bends.append(pretty_midi.PitchBend(0, 0.0))
    tr.pitch_bends.append(pretty_midi.PitchBend(round(5 / 12 * 8192), 1.0))
    tr.notes.append(pretty_midi.Note(100, 64, 0.1, 2.0))
    pm.instruments.append(tr)
    y = _render(pm, "FluidR3_GM", duration=2.2)
    f = librosa.yin(y, fmin=200, fmax=800, sr=SR, frame_length=1024, hop_length=160)
    truth = f0_from_midi(pm, 100, len(f))
    before = 1200 * np.log2(np.median(f[30:90]) / truth[60])
    after = 1200 * np.log2(np.median(f[120:190]) / truth[150])
    assert truth[150] == pytest.approx(librosa.midi_to_hz(69), rel=1e-4)
    assert abs(before) < 20 and abs(after) < 20


@needs_fluidsynth
@pytest.mark.parametrize(("name", "soundfont", "seed"), [("violin", "FluidR3_GM", 1), ("tenor_sax", "TimGM6mb", 0)])
def test_f0_truth_matches_the_rendered_audio(name, soundfont, seed):
    _, _, truth, fy, vf, rms = _cents_and_voicing(name, soundfont, seed)
    tv = truth > 0
    # pitch on frames voiced in the truth and by pyin, away from note changes
    steady = tv & vf & (np.abs(np.diff(truth, prepend=0)) < 1e-6) & (np.abs(np.diff(truth, append=0)) < 1e-6)
    cents = 1200 * np.log2(fy[steady] / truth[steady])
    assert np.median(np.abs(cents)) < 30
    assert np.mean(np.abs(cents) < 100) > 0.9
    # voicing: the notes are heard, and loud voiced audio lies in notes (release tails are unvoiced in the truth)
    assert np.mean(vf[tv]) > 0.9
    loud = rms > 0.25 * np.median(rms[tv])
    assert np.mean(tv[vf & loud]) > 0.8
    assert np.mean(vf == tv) > 0.7


@needs_fluidsynth
def test_vibrato_and_glides_are_in_truth_and_audio():
    pm, _, truth, fy, vf, _ = _cents_and_voicing("violin", "FluidR3_GM", 1, duration=20.0)
    notes = sorted(pm.instruments[0].notes, key=lambda n: n.start)
    t_dev, a_dev = [], []
    for n in notes:
        a, b = round(n.start * 100) + 3, round(n.end * 100) - 2
        if b - a < 20:
            continue
        ref = librosa.midi_to_hz(n.pitch)
        t_dev.append(1200 * np.log2(truth[a:b] / ref))
        ok = vf[a:b] & (fy[a:b] > 0)
        a_dev.append(np.where(ok, 1200 * np.log2(np.maximum(fy[a:b], 1e-9) / ref), np.nan))
    t_dev, a_dev = np.concatenate(t_dev), np.concatenate(a_dev)
    good = np.isfinite(a_dev) & (np.abs(a_dev - t_dev) < 300)  # drop the tracker's octave errors
    t_dev, a_dev = t_dev[good], a_dev[good]
    # the truth moves (vibrato and glides), and the audio follows the truth, not the written pitch
    moving = np.abs(t_dev) > 10
    assert np.sum(moving) > 200
    err_truth = np.median(np.abs(a_dev - t_dev)[moving])
    err_score = np.median(np.abs(a_dev)[moving])
    assert err_truth < 12 and err_truth < 0.5 * err_score
    # glides and scoops: more than half a semitone away from the written pitch
    bent = np.abs(t_dev) > 50
    assert np.sum(bent) >= 5
    assert np.median(np.abs(a_dev - t_dev)[bent]) < 0.5 * np.median(np.abs(a_dev)[bent])


@pytest.mark.slow
@needs_fluidsynth
@pytest.mark.parametrize("soundfont", ["FluidR3_GM", "TimGM6mb"])
@pytest.mark.parametrize("name", ["violin", "tenor_sax", "flute", "cello", "clarinet", "trumpet"])
def test_f0_truth_matches_audio_for_more_instruments(name, soundfont):
    _, _, truth, fy, vf, _ = _cents_and_voicing(name, soundfont, 11)
    tv = truth > 0
    steady = tv & vf & (np.abs(np.diff(truth, prepend=0)) < 1e-6) & (np.abs(np.diff(truth, append=0)) < 1e-6)
    cents = 1200 * np.log2(fy[steady] / truth[steady])
    assert np.median(np.abs(cents)) < 30
    assert np.mean(vf[tv]) > 0.9


@needs_fluidsynth
def test_missing_soundfont_names_the_package(monkeypatch, tmp_path):
    from audioforge.corpora.fluid import render_midi

    monkeypatch.setitem(tools.SOUNDFONTS, "TimGM6mb", (str(tmp_path / "nope.sf2"), "timgm6mb-soundfont"))
    pm = generate_melody("flute", 1.0, np.random.default_rng(0))
    with pytest.raises(MissingToolError, match="apt-get install -y timgm6mb-soundfont"):
        render_midi(pm, "TimGM6mb")
    with pytest.raises(MissingToolError, match="timgm6mb-soundfont"):
        generate_instrument_corpus(tmp_path / "c", programs="flute", minutes=0.05, progress=False)
    assert not (tmp_path / "c").exists()  # nothing written
    with pytest.raises(MissingToolError, match="not found"):
        render_midi(pm, tmp_path / "other.sf2")


def test_missing_soundfont_without_fluidsynth(monkeypatch, tmp_path):
    monkeypatch.setitem(tools.SOUNDFONTS, "FluidR3_GM", (str(tmp_path / "nope.sf2"), "fluid-soundfont-gm"))
    with pytest.raises(MissingToolError, match="fluid-soundfont-gm"):
        generate_instrument_corpus(tmp_path / "c", programs="violin", minutes=0.05, progress=False)


# ------------------------------------------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"programs": "violin,kazoo", "minutes": 1}, "unknown instrument 'kazoo'.*violin"),
        ({"programs": "", "minutes": 1}, "no instruments"),
        ({"programs": "violin", "minutes": 0}, "minutes=0"),
        ({"programs": "violin", "minutes": -2}, "minutes=-2"),
        ({"programs": "violin", "minutes": float("nan")}, "minutes=nan"),
        ({"programs": "violin", "minutes": 1, "heldout_minutes": -1}, "heldout_minutes"),
        ({"programs": "violin", "minutes": 1, "clip_seconds": 0.1}, "clip_seconds"),
        ({"programs": "violin", "minutes": 1, "seed": -1}, "seed"),
        ({"programs": "violin", "minutes": 1, "heldout_soundfont": "FluidR3_GM"}, "another soundfont"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        generate_instrument_corpus(tmp_path / "c", progress=False, **kwargs)
    assert not (tmp_path / "c").exists()


def test_plan_seeds_and_held_out_split():
    jobs = plan_jobs("sax,violin,Tenor Sax", 1.0, seed=5, clip_seconds=10, heldout_minutes=0.5)
    train = [j for j in jobs if j["split"] == "train"]
    test = [j for j in jobs if j["split"] == "test"]
    assert len(train) == 2 * 6 and len(test) == 2 * 3  # aliases of one instrument count once
    assert {j["soundfont"] for j in train} == {"FluidR3_GM"} and {j["soundfont"] for j in test} == {"TimGM6mb"}
    assert not {j["seed"] for j in train} & {j["seed"] for j in test}
    assert len({j["seed"] for j in jobs}) == len(jobs)
    assert all(0 <= j["seed"] < 2**53 for j in jobs)
    # growing the corpus only appends: existing clips keep their seeds
    more = plan_jobs("sax,violin", 2.0, seed=5, clip_seconds=10, heldout_minutes=0.5)
    seeds = {j["key"]: j["seed"] for j in more}
    assert all(seeds[j["key"]] == j["seed"] for j in jobs)
    assert job_seed(5, "train", 40, 0) != job_seed(6, "train", 40, 0)
    assert plan_jobs("violin", 1.0)[-1]["key"] == "test-violin-00000"  # default held-out: a tenth


# -------------------------------------------------------------------------------------------------------------- corpus
def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != PROGRESS_NAME
    }


SMALL = {"programs": "sax,violin", "minutes": 6 / 60, "heldout_minutes": 2 / 60, "clip_seconds": 2.0, "seed": 3}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("instruments") / "one"
    manifest = generate_instrument_corpus(out, workers=1, progress=False, **SMALL)
    return out, manifest


@needs_fluidsynth
def test_corpus_manifest_files_and_labels(small_corpus):
    out, manifest = small_corpus
    assert len(manifest) == 2 * 3 + 2 * 1
    loaded = Manifest.load(out).validate(sample_rate=SR, require=["f0", "notes", "midi", "instrument", "split"])
    assert [e["key"] for e in loaded] == [e["key"] for e in manifest]
    for split in ("train", "test"):
        part = Manifest.load(out / f"{split}.jsonl")
        assert part.entries == [e for e in manifest if e["split"] == split]
    assert json.loads((out / CONFIG_NAME).read_text())["seed"] == 3
    for e in loaded:
        assert e["sr"] == SR and e["duration"] == 2.0 and e["frame_rate"] == 250.0
        assert e["program"] == {"tenor_sax": 66, "violin": 40}[e["instrument"]]
        import soundfile as sf

        y, sr = sf.read(loaded.audio_path(e), dtype="float32")
        assert sr == SR and len(y) == 2 * SR and np.abs(y).max() > 0.01
        f0 = np.load(out / e["f0"])
        assert f0.dtype == np.float32 and f0.shape == (501,)
        score = json.loads((out / e["notes"]).read_text())
        notes = np.asarray(score["notes"], dtype=np.float64)
        assert score["columns"] == ["onset", "offset", "pitch", "velocity"] and len(notes) == e["n_notes"] > 0
        assert np.all(notes[:, 1] <= 2.0) and np.all(np.diff(notes[:, 0]) > 0)
        inst = get_instrument(e["instrument"])
        assert np.all((notes[:, 2] >= inst.low) & (notes[:, 2] <= inst.high))
        # voiced frames are exactly the frames inside a note
        t = np.arange(len(f0)) / 250.0 + 1e-6
        inside = np.zeros(len(f0), dtype=bool)
        for on, off, _, _ in notes:
            inside |= (t >= on) & (t < off)
        assert np.array_equal(f0 > 0, inside)
        assert e["voiced"] == pytest.approx(np.mean(inside), abs=1e-4)
        # the f0 file is the truth of the saved score
        pm = pretty_midi.PrettyMIDI(str(out / e["midi"]))
        assert len(pm.instruments[0].notes) == e["n_notes"]


@needs_fluidsynth
def test_held_out_split_uses_other_soundfont_and_unseen_melodies(small_corpus):
    out, manifest = small_corpus
    train = [e for e in manifest if e["split"] == "train"]
    test = [e for e in manifest if e["split"] == "test"]
    assert {e["soundfont"] for e in train} == {"FluidR3_GM"}
    assert {e["soundfont"] for e in test} == {"TimGM6mb"}
    assert not {e["seed"] for e in train} & {e["seed"] for e in test}

    def melody(e):
        return tuple(n[2] for n in json.loads((out / e["notes"]).read_text())["notes"])

    assert not {melody(e) for e in train} & {melody(e) for e in test}
    assert {e["instrument"] for e in test} == {e["instrument"] for e in train}


@needs_fluidsynth
def test_corpus_is_identical_for_any_worker_count(small_corpus, tmp_path):
    out1, _ = small_corpus
    out2 = tmp_path / "two"
    generate_instrument_corpus(out2, workers=2, progress=False, **SMALL)
    a, b = _files(out1), _files(out2)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


@needs_fluidsynth
def test_resume_renders_only_what_is_missing(small_corpus, tmp_path):
    out1, _ = small_corpus
    out = tmp_path / "resumed"
    # a first, interrupted run: only part of the job list (fewer minutes, no held-out)
    generate_instrument_corpus(out, workers=1, progress=False, **{**SMALL, "minutes": 2 / 60, "heldout_minutes": 0})
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    assert len(first) == 2
    # leave debris of a crash: a half-written temp file, a progress line cut short, and a clip whose wav vanished
    (out / "train" / "violin" / ".train-violin-00001.wav.abc.tmp.wav").write_bytes(b"RIFF")
    with (out / PROGRESS_NAME).open("a") as fh:
        fh.write('{"key": "train-violin-00001", "wav": "train/vio')
    victim = out / "train" / "violin" / "train-violin-00000.wav"
    victim.unlink()
    del first[victim]
    os.utime(out / "train" / "tenor_sax" / "train-tenor_sax-00000.wav", ns=(1, 1))
    first = {p: p.stat().st_mtime_ns for p in first}

    manifest = generate_instrument_corpus(out, workers=2, progress=False, **SMALL)
    assert len(manifest) == 8
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())  # not rendered again
    assert victim.is_file()
    # the resumed corpus equals one made in a single run
    a = {k: v for k, v in _files(out1).items() if ".tmp." not in k}
    b = {k: v for k, v in _files(out).items() if ".tmp." not in k}
    assert a == b


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / CONFIG_NAME).write_text(json.dumps({"generator": "audioforge.corpora.instruments", "seed": 1}))
    with pytest.raises(InvalidParameterError, match="other settings"):
        generate_instrument_corpus(out, programs="violin", minutes=0.05, seed=2, progress=False)


@needs_fluidsynth
def test_cli_prints_a_summary(tmp_path):
    from typer.testing import CliRunner

    from audioforge.cli import app

    out = tmp_path / "cli"
    runner = CliRunner()
    res = runner.invoke(app, ["corpus", "instruments", "--programs", "flute", "--minutes", "0.05",
                              "--heldout-minutes", "0.03", "--clip-seconds", "2", "--workers", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "flute" in text and "TimGM6mb" in text and "h of audio per minute" in text
    assert len(Manifest.load(out)) == 2 + 1
    res = runner.invoke(app, ["corpus", "instruments", "--programs", "kazoo", "--minutes", "1", "--out", str(out)])
    assert isinstance(res.exception, AudioForgeError) and "violin" in str(res.exception)
