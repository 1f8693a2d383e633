"""Solo instruments and a phrase-based melody generator with exact pitch ground truth.

The catalogue :data:`INSTRUMENTS` maps a name to its General MIDI program, its playable range (absolute and
comfortable, as sounding MIDI note numbers) and how it is played (sustained or decaying, vibrato, glides, breath).
:func:`generate_melody` writes a monophonic ``pretty_midi`` score: a key and mode, phrases with a contour (mostly steps,
some leaps filled in afterwards), cadences on chord tones, rests between phrases, legato / detached / slurred
articulation, velocity dynamics with hairpins and accents, CC11 expression arcs and swells, pitch-bend vibrato with a
delayed onset on long notes, portamento glides and scoops. The pitch-bend range is set explicitly with RPN 0 at the
start of the score, and every event lies on a 4 ms grid, so :func:`f0_from_midi` gives the exact f0 the synthesizer
plays, bends included.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidParameterError

if TYPE_CHECKING:
    import pretty_midi

__all__ = [
    "ALIASES",
    "BEND_RANGE",
    "FAMILIES",
    "INSTRUMENTS",
    "TICK",
    "Instrument",
    "f0_from_midi",
    "generate_melody",
    "get_instrument",
    "notes_from_midi",
]

TICK = 0.004  # s: every event of a generated score lies on this grid (one f0 frame at 250 Hz; 64 samples at 16 kHz)
BEND_RANGE = 12  # semitones for a full pitch-bend deflection, sent as RPN 0 at t = 0
FAMILIES = ("reed", "pipe", "brass", "strings", "keyboard", "guitar", "bass")


@dataclass(frozen=True)
class Instrument:
    """A solo instrument of the General MIDI set.

    Attributes
    ----------
    name
        Canonical name (a key of :data:`INSTRUMENTS`).
    program
        General MIDI program number, 0-127 (``0`` acoustic grand piano, ``40`` violin ...).
    low, high
        Absolute playable range, sounding MIDI note numbers (inclusive).
    family
        One of :data:`FAMILIES`.
    comfort_low, comfort_high
        The comfortable range where most of a melody lies.
    sustained
        The tone is held by breath or bow (expression swells make sense); ``False`` for struck/plucked tones.
    vibrato_cents, vibrato_rate, vibrato_prob
        Typical vibrato depth (peak deviation in cents), rate (Hz) and the chance a long note gets vibrato.
    glide_prob
        Chance that a legato step of up to a fifth is joined by a portamento glide (half as often a scoop into a note).
    breath
        Longest phrase in seconds (breath for winds, bow and hand for others).
    """

    name: str
    program: int
    low: int
    high: int
    family: str
    comfort_low: int = -1
    comfort_high: int = -1
    sustained: bool = True
    vibrato_cents: float = 0.0
    vibrato_rate: float = 5.5
    vibrato_prob: float = 0.0
    glide_prob: float = 0.0
    breath: float = 8.0

    def __post_init__(self) -> None:
        if self.comfort_low < 0:
            object.__setattr__(self, "comfort_low", self.low)
        if self.comfort_high < 0:
            object.__setattr__(self, "comfort_high", self.high)
        if not (0 <= self.low <= self.comfort_low < self.comfort_high <= self.high <= 127):
            raise InvalidParameterError(f"instrument {self.name!r}: ranges must satisfy 0 <= low <= comfort < high")
        if self.family not in FAMILIES:
            raise InvalidParameterError(f"instrument {self.name!r}: family {self.family!r} is not one of {FAMILIES}")


def _catalogue() -> dict[str, Instrument]:
    # Ranges are the instruments' real (sounding) ranges, trimmed where FluidR3_GM or TimGM6mb cannot follow: every
    # note of every range was rendered with both soundfonts and checked for level and tuning (harmonic-sum pitch
    # within 25 cents). Trimmed: violin above 93 (94 silent, 97-100 63 cents sharp in FluidR3_GM), contrabass above
    # 57 (silent in FluidR3_GM), recorder 98 (silent), piano above 94 (FluidR3_GM's top octave is stretched up to
    # 27 cents sharp). Alto sax stops at 80 (FluidR3_GM is silent at 85-86).
    I = Instrument  # noqa: E741,N806 - a table reads better with a short constructor
    items = [
        # reeds (sounding ranges; saxophones and clarinet are transposing instruments, GM plays concert pitch)
        I("soprano_sax", 64, 56, 87, "reed", 58, 84, True, 18, 5.6, 0.6, 0.10, 8.0),
        I("alto_sax", 65, 49, 80, "reed", 51, 77, True, 18, 5.5, 0.6, 0.12, 8.0),
        I("tenor_sax", 66, 44, 76, "reed", 46, 72, True, 20, 5.3, 0.65, 0.14, 8.0),
        I("baritone_sax", 67, 36, 69, "reed", 38, 64, True, 18, 5.0, 0.5, 0.10, 7.0),
        I("oboe", 68, 58, 91, "reed", 60, 84, True, 14, 5.6, 0.6, 0.06, 7.0),
        I("english_horn", 69, 52, 81, "reed", 55, 76, True, 14, 5.4, 0.6, 0.06, 7.0),
        I("bassoon", 70, 34, 75, "reed", 36, 67, True, 12, 5.2, 0.4, 0.06, 7.0),
        I("clarinet", 71, 50, 91, "reed", 52, 84, True, 8, 5.5, 0.15, 0.08, 8.0),
        # pipes
        I("piccolo", 72, 74, 102, "pipe", 76, 98, True, 12, 5.6, 0.6, 0.05, 6.0),
        I("flute", 73, 60, 96, "pipe", 62, 91, True, 16, 5.3, 0.7, 0.08, 7.0),
        I("recorder", 74, 72, 97, "pipe", 72, 93, True, 8, 5.5, 0.3, 0.04, 6.0),
        # brass
        I("trumpet", 56, 54, 84, "brass", 55, 79, True, 12, 5.5, 0.35, 0.08, 7.0),
        I("trombone", 57, 40, 72, "brass", 41, 67, True, 12, 5.2, 0.35, 0.2, 7.0),
        I("tuba", 58, 28, 65, "brass", 29, 58, True, 8, 5.0, 0.2, 0.06, 6.0),
        I("french_horn", 60, 34, 77, "brass", 41, 72, True, 6, 5.0, 0.15, 0.06, 7.0),
        # bowed strings
        I("violin", 40, 55, 93, "strings", 55, 86, True, 24, 5.8, 0.8, 0.15, 9.0),
        I("viola", 41, 48, 88, "strings", 48, 79, True, 24, 5.6, 0.8, 0.14, 9.0),
        I("cello", 42, 36, 81, "strings", 36, 74, True, 26, 5.3, 0.8, 0.15, 9.0),
        I("contrabass", 43, 28, 57, "strings", 28, 52, True, 18, 5.0, 0.6, 0.1, 8.0),
        # struck and plucked
        I("piano", 0, 24, 94, "keyboard", 40, 84, False, 0, 5.5, 0.0, 0.0, 10.0),
        I("guitar", 24, 40, 83, "guitar", 40, 76, False, 12, 5.5, 0.2, 0.05, 10.0),
        I("steel_guitar", 25, 40, 83, "guitar", 40, 76, False, 12, 5.5, 0.2, 0.05, 10.0),
        I("bass", 32, 28, 67, "bass", 28, 55, False, 8, 5.0, 0.1, 0.05, 10.0),
        I("electric_bass", 33, 28, 67, "bass", 28, 55, False, 8, 5.0, 0.1, 0.05, 10.0),
    ]
    return {i.name: i for i in items}


#: Canonical instrument name -> :class:`Instrument`.
INSTRUMENTS: dict[str, Instrument] = _catalogue()

#: Other accepted names -> canonical name. GM program numbers ("66") are accepted too.
ALIASES: dict[str, str] = {
    "sax": "tenor_sax",
    "saxophone": "tenor_sax",
    "tenor": "tenor_sax",
    "tenor_saxophone": "tenor_sax",
    "alto": "alto_sax",
    "alto_saxophone": "alto_sax",
    "soprano_saxophone": "soprano_sax",
    "bari_sax": "baritone_sax",
    "baritone_saxophone": "baritone_sax",
    "cor_anglais": "english_horn",
    "horn": "french_horn",
    "fiddle": "violin",
    "violoncello": "cello",
    "double_bass": "contrabass",
    "acoustic_bass": "bass",
    "upright_bass": "bass",
    "bass_guitar": "electric_bass",
    "grand_piano": "piano",
    "acoustic_piano": "piano",
    "nylon_guitar": "guitar",
    "classical_guitar": "guitar",
    "acoustic_guitar": "steel_guitar",
}


def get_instrument(name: str | int | Instrument) -> Instrument:
    """Look up an instrument by canonical name, alias (``"sax"``, ``"horn"``) or GM program number.

    Matching ignores case, spaces and hyphens (``"Tenor Sax"`` -> ``tenor_sax``).

    Raises
    ------
    InvalidParameterError
        Unknown name; the message lists the known names.
    """
    if isinstance(name, Instrument):
        return name
    if isinstance(name, (int, np.integer)) or (isinstance(name, str) and name.strip().isdigit()):
        prog = int(name)
        for inst in INSTRUMENTS.values():
            if inst.program == prog:
                return inst
        raise InvalidParameterError(
            f"no instrument with GM program {prog} in the catalogue; known programs: "
            + ", ".join(f"{i.program} ({i.name})" for i in sorted(INSTRUMENTS.values(), key=lambda i: i.program))
        )
    key = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    key = ALIASES.get(key, key)
    if key not in INSTRUMENTS:
        raise InvalidParameterError(
            f"unknown instrument {name!r}; known instruments: {', '.join(sorted(INSTRUMENTS))} "
            f"(aliases: {', '.join(sorted(ALIASES))})"
        )
    return INSTRUMENTS[key]


# --------------------------------------------------------------------------------------------------------------------
# melody generation

_MODES: dict[str, tuple[tuple[int, ...], float]] = {  # intervals from the tonic, relative weight
    "major": ((0, 2, 4, 5, 7, 9, 11), 4.0),
    "minor": ((0, 2, 3, 5, 7, 8, 10), 3.0),
    "harmonic_minor": ((0, 2, 3, 5, 7, 8, 11), 1.0),
    "dorian": ((0, 2, 3, 5, 7, 9, 10), 1.5),
    "mixolydian": ((0, 2, 4, 5, 7, 9, 10), 1.5),
    "major_pentatonic": ((0, 2, 4, 7, 9), 1.0),
    "minor_pentatonic": ((0, 3, 5, 7, 10), 1.0),
}
# note values in beats and their weights for three rhythmic densities
_RHYTHMS: dict[str, dict[float, float]] = {
    "slow": {0.5: 1.0, 1.0: 3.0, 1.5: 1.0, 2.0: 3.0, 3.0: 1.0, 4.0: 0.7},
    "medium": {0.5: 3.0, 0.75: 0.4, 1.0: 3.0, 1.5: 1.0, 2.0: 1.5, 3.0: 0.3},
    "fast": {0.25: 2.0, 0.5: 4.0, 0.75: 0.4, 1.0: 1.5, 1.5: 0.4, 2.0: 0.3},
}
_MIN_NOTE = 0.088  # s: shortest sounding note (22 ticks)
_END_MARGIN = 0.3  # s: room left at the end of the clip for the last release


@dataclass
class _Note:
    start: float
    end: float  # sounding end (note-off)
    pitch: int
    velocity: int
    slur_next: bool  # joined to the next note without a gap


def _q(t: float) -> float:
    """Snap a time to the event grid."""
    return round(t / TICK) * TICK


def _choice(rng: np.random.Generator, weights: dict[float, float] | dict[str, float]) -> object:
    keys = list(weights)
    p = np.asarray([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _scale_pitches(inst: Instrument, tonic: int, intervals: tuple[int, ...]) -> np.ndarray:
    pcs = {(tonic + i) % 12 for i in intervals}
    return np.asarray([p for p in range(inst.low, inst.high + 1) if p % 12 in pcs], dtype=np.int64)


def _next_index(
    rng: np.random.Generator, idx: int, prev_step: int, target: float, lo: int, hi: int, n: int
) -> tuple[int, int]:
    """One melodic move on the scale: mostly steps, some repeats and leaps, leaps filled in by contrary steps."""
    steps = np.arange(-7, 8)
    w = np.array([0.006, 0.01, 0.015, 0.03, 0.04, 0.09, 0.3, 0.08, 0.3, 0.09, 0.04, 0.03, 0.015, 0.01, 0.006])
    direction = np.sign(target - idx) if abs(target - idx) >= 1 else 0
    if direction:
        w = w * np.where(np.sign(steps) == direction, 1.8, 1.0)
    if abs(prev_step) >= 3:  # gap fill: after a leap, step back the other way
        w = w * np.where((np.sign(steps) == -np.sign(prev_step)) & (np.abs(steps) <= 2), 3.0, 1.0)
        w = w * np.where(np.abs(steps) >= 3, 0.3, 1.0)
    new = idx + steps
    w = np.where((new < 0) | (new >= n), 0.0, w)
    # outside the comfortable range only moves back towards it are allowed
    w = np.where((new > hi) & (steps > 0), 0.0, w)
    w = np.where((new < lo) & (steps < 0), 0.0, w)
    if w.sum() <= 0:
        step = int(np.sign((lo + hi) / 2 - idx)) or 1
        return int(np.clip(idx + step, 0, n - 1)), step
    k = int(rng.choice(len(steps), p=w / w.sum()))
    return int(new[k]), int(steps[k])


def _phrases(inst: Instrument, duration: float, rng: np.random.Generator) -> tuple[list[_Note], list[tuple], float]:
    """The notes of a melody and its phrases as (start, end, expression start/peak/end, peak position)."""
    bpm = float(rng.uniform(66, 132))
    beat = 60.0 / bpm
    tonic = int(rng.integers(12))
    mode = str(_choice(rng, {k: v[1] for k, v in _MODES.items()}))
    intervals = _MODES[mode][0]
    pitches = _scale_pitches(inst, tonic, intervals)
    n = len(pitches)
    lo = int(np.searchsorted(pitches, inst.comfort_low))
    hi = int(np.searchsorted(pitches, inst.comfort_high, side="right")) - 1
    chord = {(tonic + intervals[i]) % 12 for i in (0, 2, 4) if i < len(intervals)}
    span = hi - lo
    idx = int(rng.integers(lo + span // 4, lo + 3 * span // 4 + 1))
    prev_step = 0
    notes: list[_Note] = []
    phrases: list[tuple] = []
    end_limit = duration - min(_END_MARGIN, 0.15 * duration)
    t = _q(float(rng.uniform(0.0, min(0.6, 0.1 * duration))))
    while t + _MIN_NOTE <= end_limit:
        # one phrase
        length = float(rng.uniform(1.5, inst.breath))
        density = str(_choice(rng, {"slow": 1.0, "medium": 2.0, "fast": 1.2}))
        artic = str(_choice(rng, {"legato": 0.45, "detached": 0.25, "mixed": 0.3}))
        shape = str(_choice(rng, {"arch": 2.0, "rise": 1.0, "fall": 1.0, "wave": 1.0}))
        dyn = float(_choice(rng, {50.0: 1.0, 64.0: 2.0, 78.0: 3.0, 92.0: 2.0, 104.0: 1.0})) + rng.normal(0, 4)
        hairpin = float(rng.uniform(-14, 14))
        # occasionally a phrase reaches out of the comfortable range, never beyond the absolute one
        p_lo, p_hi = (0, n - 1) if rng.random() < 0.05 else (lo, hi)
        amp = float(rng.uniform(2, 6))
        start_idx = idx
        phrase_start = t
        phrase_notes: list[_Note] = []
        pos_beats = 0.0
        slur_left = 0
        while True:
            frac = min(1.0, (t - phrase_start) / length)
            if shape == "arch":
                target = start_idx + amp * np.sin(np.pi * frac)
            elif shape == "rise":
                target = start_idx + amp * frac
            elif shape == "fall":
                target = start_idx - amp * frac
            else:
                target = start_idx + amp * 0.7 * np.sin(2 * np.pi * frac)
            last = (t - phrase_start) >= length
            value = float(_choice(rng, _RHYTHMS[density]))
            if value * beat < _MIN_NOTE:
                value = 0.5
            if last:
                value = max(value, float(_choice(rng, {1.5: 1.0, 2.0: 2.0, 3.0: 1.0, 4.0: 0.6})))
            dur = _q(value * beat)
            if t + dur > end_limit:
                dur = _q(end_limit - t)
                last = True
                if dur < _MIN_NOTE:
                    break
            idx, prev_step = _next_index(rng, idx, prev_step, target, p_lo, p_hi, n)
            if last:  # cadence: settle on the nearest chord tone
                cands = [j for j in range(max(0, idx - 2), min(n, idx + 3)) if pitches[j] % 12 in chord]
                if cands:
                    idx = min(cands, key=lambda j: (abs(j - idx), j))
            pitch = int(pitches[idx])
            # dynamics: phrase level, hairpin, metric accent, a little height and noise
            vel = dyn + hairpin * frac + (6.0 if abs(pos_beats - round(pos_beats)) < 1e-6 else 0.0)
            vel += 0.8 * (idx - (lo + hi) / 2) + rng.normal(0, 4)
            velocity = int(np.clip(round(vel), 30, 120))
            # articulation
            if artic == "legato":
                slur = True
            elif artic == "detached":
                slur = False
            else:
                if slur_left <= 0 and rng.random() < 0.5:
                    slur_left = int(rng.integers(2, 5))
                slur = slur_left > 1
                slur_left -= 1
            sound = dur
            if not slur or last:
                ratio = rng.uniform(0.5, 0.7) if dur < 0.25 else rng.uniform(0.65, 0.9)
                sound = max(_MIN_NOTE, _q(dur * ratio))
            phrase_notes.append(_Note(t, _q(t + sound), pitch, velocity, slur and not last))
            t = _q(t + dur)
            pos_beats += value
            if last:
                break
            if not slur and rng.random() < 0.06:  # a short rest inside the phrase
                rest = _q(float(_choice(rng, {0.5: 2.0, 1.0: 1.0})) * beat)
                t += rest
                pos_beats += rest / beat
        # a repeated pitch cannot be slurred on one key: re-articulate it
        for a, b in itertools.pairwise(phrase_notes):
            if a.slur_next and a.pitch == b.pitch:
                a.end = _q(max(a.start + _MIN_NOTE / 2, b.start - 0.03))
                a.slur_next = False
        if phrase_notes:
            notes.extend(phrase_notes)
            e0, e1 = float(rng.uniform(78, 110)), float(rng.uniform(70, 105))
            peak = float(min(127, max(e0, e1) + rng.uniform(0, 20)))
            phrases.append((phrase_start, phrase_notes[-1].end, e0, peak, e1, float(rng.uniform(0.3, 0.7))))
        # breath between phrases
        rest = float(_choice(rng, {0.5: 1.0, 1.0: 2.0, 2.0: 1.0, 3.0: 0.4})) * beat + float(rng.uniform(0.0, 0.3))
        if rng.random() < 0.12:
            rest += float(rng.uniform(1.0, 2.5))
        t = _q(t + max(rest, 0.2))
    return notes, phrases, bpm


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _bend_curve(inst: Instrument, notes: list[_Note], n_ticks: int, rng: np.random.Generator) -> np.ndarray:
    """Pitch offset in semitones on the tick grid: vibrato, glides into the next note and scoops."""
    bend = np.zeros(n_ticks, dtype=np.float64)
    for k, note in enumerate(notes):
        a, b = round(note.start / TICK), min(n_ticks, round(note.end / TICK))
        if b <= a:
            continue
        t = (np.arange(a, b) - a) * TICK
        length = (b - a) * TICK
        curve = np.zeros(b - a)
        fade = np.ones(b - a)
        nxt = notes[k + 1] if k + 1 < len(notes) else None
        # glide: the end of this note slides to the next pitch (which then starts with no bend)
        if (
            nxt is not None
            and note.slur_next
            and abs(note.end - nxt.start) < TICK / 2
            and 1 <= abs(nxt.pitch - note.pitch) <= 7
            and length >= 0.2
            and rng.random() < inst.glide_prob
        ):
            g = min(float(rng.uniform(0.05, 0.16)), 0.4 * length)
            s = _smoothstep((t - (length - g)) / g)
            curve += (nxt.pitch - note.pitch) * s
            fade *= 1 - s
        # scoop: start up to a semitone and a half below and rise into the note
        elif (
            inst.sustained
            and length >= 0.25
            and note.pitch - 2 >= inst.low
            and rng.random() < inst.glide_prob / 2
        ):
            g = float(rng.uniform(0.05, 0.12))
            curve -= float(rng.uniform(0.5, 1.5)) * (1 - _smoothstep(t / g))
            fade *= _smoothstep(t / g)
        # vibrato: delayed onset, ramp in, slowly drifting rate
        if inst.vibrato_prob > 0 and length >= 0.35 and rng.random() < inst.vibrato_prob:
            delay = float(rng.uniform(0.08, 0.3))
            ramp = float(rng.uniform(0.15, 0.4))
            depth = inst.vibrato_cents * float(rng.uniform(0.6, 1.4)) / 100.0
            rate = inst.vibrato_rate * float(rng.uniform(0.9, 1.1))
            drift = 1 + 0.06 * np.sin(2 * np.pi * float(rng.uniform(0.2, 0.5)) * t + float(rng.uniform(0, 2 * np.pi)))
            phase = np.cumsum(2 * np.pi * rate * drift * TICK)
            env = _smoothstep((t - delay) / ramp) * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t))
            curve += depth * env * np.sin(phase - phase[0]) * fade
        bend[a:b] = curve
    return bend


def _expression_curve(
    inst: Instrument, notes: list[_Note], phrases: list[tuple], n_ticks: int, rng: np.random.Generator
) -> np.ndarray:
    """CC11 on the tick grid: an arc over each phrase and swells on long sustained notes."""
    expr = np.full(n_ticks, 100.0)
    times = np.arange(n_ticks) * TICK
    for start, end, e0, peak, e1, where in phrases:
        a, b = round(start / TICK), min(n_ticks, round(end / TICK) + 1)
        if inst.sustained:
            x = (times[a:b] - start) / max(end - start, TICK)
            rise = e0 + (peak - e0) * _smoothstep(x / where)
            fall = peak + (e1 - peak) * _smoothstep((x - where) / (1 - where))
            expr[a:b] = np.where(x < where, rise, fall)
        else:
            expr[a:b] = (e0 + e1) / 2
        expr[b:] = expr[b - 1]
    if inst.sustained:
        for note in notes:
            length = note.end - note.start
            if length < 0.8 or rng.random() > 0.5:
                continue
            a, b = round(note.start / TICK), min(n_ticks, round(note.end / TICK))
            x = (times[a:b] - note.start) / length
            kind = rng.integers(3)
            amount = float(rng.uniform(10, 25))
            if kind == 0:  # messa di voce
                shape = np.sin(np.pi * x) ** 2
            elif kind == 1:  # crescendo
                shape = _smoothstep(x) - 0.5
            else:  # diminuendo
                shape = 0.5 - _smoothstep(x)
            expr[a:b] += amount * shape
    return np.clip(np.round(expr), 40, 127)


def generate_melody(instrument: str | Instrument, duration: float, rng: np.random.Generator) -> pretty_midi.PrettyMIDI:
    """Generate a monophonic, expressive melody for a solo instrument.

    Parameters
    ----------
    instrument
        A name, alias or GM program number understood by :func:`get_instrument` (or an :class:`Instrument`).
    duration
        Length of the score in seconds; the last note ends at least 0.3 s before it (room for the release).
    rng
        The random generator; the same generator state gives the same score.

    Returns
    -------
    pretty_midi.PrettyMIDI
        One instrument on the instrument's GM program with: RPN 0 setting the pitch-bend range to
        :data:`BEND_RANGE` semitones, CC11 expression, pitch bends and notes, all on the :data:`TICK` grid, every note
        inside the instrument's absolute range and at most one note sounding at a time.

    Raises
    ------
    InvalidParameterError
        An unknown instrument or a duration that is not positive.
    """
    import pretty_midi

    inst = get_instrument(instrument)
    if not isinstance(duration, (int, float, np.integer, np.floating)) or not np.isfinite(duration) or duration <= 0:
        raise InvalidParameterError(f"duration={duration!r}; a melody needs a positive number of seconds")
    duration = float(duration)
    notes, phrases, bpm = _phrases(inst, duration, rng)
    n_ticks = round(duration / TICK) + 1
    bend = _bend_curve(inst, notes, n_ticks, rng)
    expr = _expression_curve(inst, notes, phrases, n_ticks, rng)

    pm = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=round(bpm, 3))
    track = pretty_midi.Instrument(program=inst.program, name=inst.name)
    cc = pretty_midi.ControlChange
    # RPN 0 (pitch-bend sensitivity) = BEND_RANGE semitones, 0 cents; then the null RPN
    for number, value in ((101, 0), (100, 0), (6, BEND_RANGE), (38, 0), (101, 127), (100, 127)):
        track.control_changes.append(cc(number, value, 0.0))
    # CC11 every 20 ms at most, only when it changes
    last = None
    for i in range(0, n_ticks, 5):
        v = int(expr[i])
        if v != last:
            track.control_changes.append(cc(11, v, round(i * TICK, 6)))
            last = v
    # pitch bends on every tick where the 14-bit value changes
    values = np.clip(np.round(bend / BEND_RANGE * 8192), -8192, 8191).astype(np.int64)
    track.pitch_bends.append(pretty_midi.PitchBend(0, 0.0))
    changes = np.flatnonzero(np.diff(values)) + 1
    for i in changes:
        track.pitch_bends.append(pretty_midi.PitchBend(int(values[i]), round(i * TICK, 6)))
    for note in notes:
        track.notes.append(pretty_midi.Note(note.velocity, note.pitch, round(note.start, 6), round(note.end, 6)))
    pm.instruments.append(track)
    return pm


# --------------------------------------------------------------------------------------------------------------------
# ground truth

_EPS = 1e-6  # s: an event at exactly a frame's time applies to that frame


def _bend_range(track: pretty_midi.Instrument) -> float:
    """The pitch-bend range in semitones set by RPN 0 in ``track`` (the MIDI default of 2 when it is never set)."""
    rng = 2.0
    msb = lsb = 127
    coarse, fine = 2, 0
    for c in sorted(track.control_changes, key=lambda c: c.time):
        if c.number == 101:
            msb = c.value
        elif c.number == 100:
            lsb = c.value
        elif c.number in (6, 38) and msb == 0 and lsb == 0:
            if c.number == 6:
                coarse = c.value
            else:
                fine = c.value
            rng = coarse + fine / 100.0
    return rng


def notes_from_midi(pm: pretty_midi.PrettyMIDI) -> np.ndarray:
    """All non-drum notes as a ``(n, 4)`` float64 array of (onset s, offset s, MIDI pitch, velocity), by onset."""
    rows = [(n.start, n.end, n.pitch, n.velocity) for i in pm.instruments if not i.is_drum for n in i.notes]
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return arr[np.lexsort((arr[:, 2], arr[:, 0]))] if len(arr) else arr


def f0_from_midi(pm: pretty_midi.PrettyMIDI, frame_rate: float, n_frames: int) -> np.ndarray:
    """The fundamental frequency a score plays, per frame, pitch bends included.

    Frame ``i`` is the instant ``i / frame_rate`` (the centre of a centred analysis frame, as in CREPE and librosa).
    A frame is voiced while a note sounds (onset <= t < offset; the release tail after a note-off counts as
    unvoiced). Where notes overlap, the most recently started one is taken (a monophonic score). The pitch-bend range
    of each instrument is read from its RPN 0 messages.

    Parameters
    ----------
    pm
        A ``pretty_midi.PrettyMIDI`` score.
    frame_rate
        Frames per second (250 for a 4 ms hop).
    n_frames
        Number of frames to return.

    Returns
    -------
    numpy.ndarray
        ``(n_frames,)`` float32 f0 in Hz, 0 for unvoiced frames.
    """
    if not frame_rate > 0:
        raise InvalidParameterError(f"frame_rate={frame_rate!r}; give a positive number of frames per second")
    if n_frames < 0:
        raise InvalidParameterError(f"n_frames={n_frames!r} must be >= 0")
    times = np.arange(int(n_frames)) / float(frame_rate) + _EPS
    best_onset = np.full(len(times), -np.inf)
    midi = np.zeros(len(times))
    voiced = np.zeros(len(times), dtype=bool)
    for track in pm.instruments:
        if track.is_drum or not track.notes:
            continue
        notes = sorted(track.notes, key=lambda n: (n.start, n.pitch))
        starts = np.asarray([n.start for n in notes])
        ends = np.asarray([n.end for n in notes])
        pitches = np.asarray([n.pitch for n in notes], dtype=np.float64)
        k = np.searchsorted(starts, times, side="right") - 1
        ok = k >= 0
        kk = np.where(ok, k, 0)
        # the latest-started note may already be off while an earlier long one still sounds: fall back to it
        sounding = ok & (times < ends[kk])
        if not np.all(sounding | ~ok):
            running_end = np.maximum.accumulate(ends)
            for j in np.flatnonzero(ok & ~sounding):
                if running_end[kk[j]] > times[j]:
                    cand = [m for m in range(kk[j], -1, -1) if starts[m] <= times[j] < ends[m]]
                    if cand:
                        kk[j] = cand[0]
                        sounding[j] = True
        bends = sorted(track.pitch_bends, key=lambda b: b.time)
        if bends:
            bt = np.asarray([b.time for b in bends])
            bv = np.asarray([b.pitch for b in bends], dtype=np.float64)
            bi = np.searchsorted(bt, times, side="right") - 1
            semis = np.where(bi >= 0, bv[np.maximum(bi, 0)], 0.0) / 8192.0 * _bend_range(track)
        else:
            semis = np.zeros(len(times))
        take = sounding & (starts[kk] > best_onset)
        best_onset = np.where(take, starts[kk], best_onset)
        midi = np.where(take, pitches[kk] + semis, midi)
        voiced |= take
    f0 = np.where(voiced, 440.0 * 2.0 ** ((midi - 69.0) / 12.0), 0.0)
    return f0.astype(np.float32)
