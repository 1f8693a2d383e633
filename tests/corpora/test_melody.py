"""The instrument catalogue, the melody generator and the f0 ground truth (no audio rendering here)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pretty_midi = pytest.importorskip("pretty_midi")

from audioforge.corpora.melody import (  # noqa: E402
    ALIASES,
    BEND_RANGE,
    FAMILIES,
    INSTRUMENTS,
    TICK,
    Instrument,
    f0_from_midi,
    generate_melody,
    get_instrument,
    notes_from_midi,
)
from audioforge.errors import AudioForgeError, InvalidParameterError  # noqa: E402


def _track(pm):
    assert len(pm.instruments) == 1
    return pm.instruments[0]


def _midi(f0: np.ndarray) -> np.ndarray:
    out = np.zeros_like(f0, dtype=np.float64)
    v = f0 > 0
    out[v] = 69 + 12 * np.log2(f0[v] / 440.0)
    return out


# ---------------------------------------------------------------------------------------------------------- catalogue
@pytest.mark.parametrize(
    ("name", "canonical", "program"),
    [
        ("sax", "tenor_sax", 66),
        ("alto", "alto_sax", 65),
        ("violin", "violin", 40),
        ("cello", "cello", 42),
        ("flute", "flute", 73),
        ("clarinet", "clarinet", 71),
        ("trumpet", "trumpet", 56),
        ("oboe", "oboe", 68),
        ("piano", "piano", 0),
        ("guitar", "guitar", 24),
        ("bass", "bass", 32),
        ("Tenor Sax", "tenor_sax", 66),
        ("french-horn", "french_horn", 60),
        ("66", "tenor_sax", 66),
        (40, "violin", 40),
    ],
)
def test_lookup_by_name_alias_and_program(name, canonical, program):
    inst = get_instrument(name)
    assert inst.name == canonical
    assert inst.program == program


def test_catalogue_is_consistent():
    programs = [i.program for i in INSTRUMENTS.values()]
    assert len(set(programs)) == len(programs)
    for name, inst in INSTRUMENTS.items():
        assert isinstance(inst, Instrument)
        assert inst.name == name
        assert inst.family in FAMILIES
        assert 0 <= inst.low <= inst.comfort_low < inst.comfort_high <= inst.high <= 127
        assert 0 <= inst.program <= 127
    assert {i.family for i in INSTRUMENTS.values()} == set(FAMILIES)
    for alias, target in ALIASES.items():
        assert target in INSTRUMENTS, alias
    with pytest.raises(AttributeError):
        INSTRUMENTS["violin"].low = 0  # frozen


def test_unknown_instrument_lists_the_known_ones():
    with pytest.raises(InvalidParameterError) as err:
        get_instrument("kazoo")
    msg = str(err.value)
    assert "kazoo" in msg and "violin" in msg and "tenor_sax" in msg
    with pytest.raises(InvalidParameterError, match="program 127"):
        get_instrument(127)


@pytest.mark.parametrize("duration", [0, -1.0, float("nan"), float("inf")])
def test_bad_duration(duration):
    with pytest.raises(AudioForgeError, match="duration"):
        generate_melody("violin", duration, np.random.default_rng(0))


# ------------------------------------------------------------------------------------------------------------ melodies
@pytest.mark.parametrize("name", sorted(INSTRUMENTS))
def test_melodies_stay_in_range_and_on_the_grid(name):
    inst = INSTRUMENTS[name]
    for seed in range(3):
        pm = generate_melody(name, 30.0, np.random.default_rng(seed))
        tr = _track(pm)
        assert tr.program == inst.program and not tr.is_drum
        notes = sorted(tr.notes, key=lambda n: n.start)
        assert len(notes) >= 8
        for n in notes:
            assert inst.low <= n.pitch <= inst.high, (name, seed, n)
            assert 1 <= n.velocity <= 127
            assert n.end - n.start >= 0.04
            for t in (n.start, n.end):
                assert abs(t / TICK - round(t / TICK)) < 1e-6
        assert notes[-1].end <= 30.0
        # monophonic: a note never starts before the previous one ended
        for a, b in itertools.pairwise(notes):
            assert b.start >= a.end - 1e-9
        # the sounding pitch (bends included) stays inside the range, give or take a vibrato
        f0 = f0_from_midi(pm, 250, 7501)
        m = _midi(f0)[f0 > 0]
        assert m.min() >= inst.low - 0.5 and m.max() <= inst.high + 0.5
        # most notes lie in the comfortable range
        inside = np.mean([inst.comfort_low <= n.pitch <= inst.comfort_high for n in notes])
        assert inside >= 0.8
        for pb in tr.pitch_bends:
            assert -8192 <= pb.pitch <= 8191
            assert abs(pb.time / TICK - round(pb.time / TICK)) < 1e-6


def test_pitch_bend_range_is_set_by_rpn0_at_the_start():
    pm = generate_melody("violin", 5.0, np.random.default_rng(0))
    ccs = [(c.number, c.value) for c in _track(pm).control_changes if c.time == 0.0]
    assert ccs[:6] == [(101, 0), (100, 0), (6, BEND_RANGE), (38, 0), (101, 127), (100, 127)]


def test_same_seed_same_melody_other_seed_other_melody():
    def dump(pm):
        tr = _track(pm)
        return (
            [(n.start, n.end, n.pitch, n.velocity) for n in tr.notes],
            [(b.time, b.pitch) for b in tr.pitch_bends],
            [(c.time, c.number, c.value) for c in tr.control_changes],
        )

    a = dump(generate_melody("flute", 20.0, np.random.default_rng(7)))
    b = dump(generate_melody("flute", 20.0, np.random.default_rng(7)))
    c = dump(generate_melody("flute", 20.0, np.random.default_rng(8)))
    assert a == b
    assert a[0] != c[0]


def test_short_durations_still_give_a_note():
    for d in (0.3, 1.0, 2.0):
        pm = generate_melody("flute", d, np.random.default_rng(0))
        notes = _track(pm).notes
        assert notes and max(n.end for n in notes) <= d


def test_phrasing_articulation_dynamics_and_expression():
    """Over a minute of violin: legato and detached notes, rests, spread of velocities, CC11 swells, vibrato, glides."""
    pm = generate_melody("violin", 60.0, np.random.default_rng(3))
    tr = _track(pm)
    notes = sorted(tr.notes, key=lambda n: n.start)
    gaps = np.array([b.start - a.end for a, b in itertools.pairwise(notes)])
    assert np.sum(np.abs(gaps) < 1e-9) >= 5  # legato: no gap
    assert np.sum((gaps > 0.01) & (gaps < 0.3)) >= 5  # detached
    assert np.sum(gaps >= 0.3) >= 3  # rests between phrases
    vel = np.array([n.velocity for n in notes])
    assert vel.max() - vel.min() >= 20
    expr = [c.value for c in tr.control_changes if c.number == 11]
    assert len(expr) > 50 and max(expr) - min(expr) >= 20
    # pitch: vibrato (periodic deviation of 4-8 Hz on long notes) and glides (a semitone or more)
    f0 = f0_from_midi(pm, 250, 15001)
    dev = np.zeros(len(f0))
    n_vibrato = 0
    for n in notes:
        a, b = round(n.start * 250), round(n.end * 250)
        cents = 100 * (_midi(f0[a:b]) - n.pitch)
        dev[a:b] = cents
        if b - a >= 200:  # 0.8 s or more
            seg = cents[75:] - np.mean(cents[75:])
            if np.std(seg) > 5:
                spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 4096))
                peak = np.fft.rfftfreq(4096, 1 / 250)[np.argmax(spec)]
                n_vibrato += 4 <= peak <= 8
    assert n_vibrato >= 3
    assert np.sum(np.abs(dev) >= 100) >= 5


def test_struck_instruments_are_not_bent():
    pm = generate_melody("piano", 30.0, np.random.default_rng(0))
    tr = _track(pm)
    assert all(b.pitch == 0 for b in tr.pitch_bends)


# -------------------------------------------------------------------------------------------------------- f0 truth
def _score(bend_range: int | None, bends: list[tuple[float, int]], notes: list[tuple[float, float, int]]):
    pm = pretty_midi.PrettyMIDI()
    tr = pretty_midi.Instrument(program=73)
    if bend_range is not None:
        for num, val in ((101, 0), (100, 0), (6, bend_range), (38, 0), (101, 127), (100, 127)):
            tr.control_changes.append(pretty_midi.ControlChange(num, val, 0.0))
    tr.pitch_bends.extend(pretty_midi.PitchBend(v, t) for t, v in bends)
    tr.notes.extend(pretty_midi.Note(100, p, s, e) for s, e, p in notes)
    pm.instruments.append(tr)
    return pm


def test_f0_from_midi_on_a_hand_made_score():
    pm = _score(12, [(0.0, 0), (0.3, 4096)], [(0.1, 0.5, 69), (0.5, 0.7, 71)])
    f0 = f0_from_midi(pm, 100, 80)
    assert f0.dtype == np.float32 and f0.shape == (80,)
    assert np.all(f0[:10] == 0)  # before the first onset
    assert f0[10] == pytest.approx(440.0)  # a frame at exactly the onset is voiced
    assert f0[29] == pytest.approx(440.0)
    assert f0[30] == pytest.approx(440.0 * 2 ** (6 / 12), rel=1e-6)  # 4096/8192 of 12 semitones
    assert f0[50] == pytest.approx(440.0 * 2 ** ((71 + 6 - 69) / 12), rel=1e-6)  # the bend is a channel state
    assert np.all(f0[70:] == 0)  # a frame at exactly the offset is not


def test_f0_from_midi_default_bend_range_is_two_semitones():
    pm = _score(None, [(0.0, 8191)], [(0.0, 1.0, 60)])
    f0 = f0_from_midi(pm, 10, 5)
    assert _midi(f0)[2] == pytest.approx(60 + 2 * 8191 / 8192, abs=1e-4)


def test_f0_from_midi_takes_the_latest_note_where_notes_overlap():
    pm = _score(2, [], [(0.0, 1.0, 60), (0.5, 0.8, 67)])
    m = _midi(f0_from_midi(pm, 10, 12))
    assert m[4] == pytest.approx(60) and m[5] == pytest.approx(67) and m[7] == pytest.approx(67)
    assert m[8] == pytest.approx(60) and m[10] == 0


def test_notes_from_midi_sorted():
    pm = _score(2, [], [(0.5, 0.8, 67), (0.0, 0.4, 60)])
    arr = notes_from_midi(pm)
    assert arr.shape == (2, 4)
    assert arr[0].tolist() == [0.0, 0.4, 60, 100] and arr[1, 2] == 67
