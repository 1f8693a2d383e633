"""Offline MIDI rendering with FluidSynth (pyfluidsynth, in process).

:func:`render_midi` drives a ``pretty_midi.PrettyMIDI`` score through a FluidSynth synthesizer event by event, in time
order, and returns float32 mono samples. Design decisions (measured, see ``tests/corpora/test_instruments.py``):

* **Internal rate 48 kHz, then soxr (HQ) to the target rate.** FluidSynth pitches its soundfont samples by plain
  interpolation, with no anti-aliasing low-pass, so rendered straight at 16 kHz the partials above 8 kHz fold back
  into the band between the harmonics. Measured with :func:`aliasing_ratio` above 2 kHz (energy between the
  harmonics of the f0 truth) on 10 s melodies, 16 kHz direct vs 48 kHz + soxr: flute 3.3% vs 2.0%, trumpet 0.12% vs
  0.06%, violin, sax, cello and clarinet about equal; the 4-8 kHz band of sax and trumpet carries ~12% more energy
  when rendered directly (folded partials). The cost is small (a 10 s clip renders in ~50 ms), so the cleaner path
  is the default. 48 kHz rather than 44.1 kHz because FluidSynth applies events at 64-sample block boundaries and
  4 ms (the corpus's event and f0 grid) is exactly 3 blocks at 48 kHz (and 1 at 16 kHz), so every event of a
  generated score lands on the sample it was scheduled for. soxr's decimation keeps onsets aligned (lag 0 samples).
* **Sample-accurate events.** Audio is pulled up to each event's sample, then the event is applied (events at the
  same sample: program, controllers in score order, bends, note-offs, note-ons).
* **Independent, deterministic renders.** A synth that has played before is not in a new synth's state, even after
  ``system_reset`` (releases keep sounding, voice slots keep traces of old notes). Each render therefore uses a fresh
  synth (1.5 ms) that borrows the soundfont loaded once per process. Reverb and chorus are off (a dry signal: the
  DDSP model learns its own reverb). Output is read as float (no dither), so the same score gives the same bytes in
  any process, whatever was rendered before.
* **One soundfont load per process.** Synths are cached per (soundfont, rate); :func:`init_worker` preloads them in
  each worker of a process pool.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidParameterError, MissingToolError
from .tools import SOUNDFONTS, find_soundfont

if TYPE_CHECKING:
    import pretty_midi

__all__ = [
    "BLOCK",
    "DEFAULT_GAIN",
    "aliasing_ratio",
    "init_worker",
    "render_midi",
    "resolve_soundfont",
]

BLOCK = 64  # FluidSynth's internal block size (FLUID_BUFSIZE): events take effect at block boundaries
DEFAULT_GAIN = 1.0  # synth.gain: the loudest solo notes of FluidR3_GM and TimGM6mb peak near 0.65 (velocity 120)
DEFAULT_TAIL = 1.0  # seconds rendered after the score's last event when no duration is given
_DRUM_CHANNEL = 9
_INTERP_HIGHEST = 7  # FLUID_INTERP_HIGHEST: 7th-order (sinc-like) sample interpolation
_FLUID_WARN = 2  # fluid_log_level FLUID_WARN

# event kinds in the order they are applied when several share a sample
_PROGRAM, _CC, _BEND, _NOTE_OFF, _NOTE_ON = range(5)

_SYNTHS: dict[tuple[str, int, float], _Synth] = {}


def _fluidsynth() -> Any:
    try:
        import fluidsynth
    except ImportError as exc:
        raise MissingToolError(
            f"pyfluidsynth or the FluidSynth library is missing ({exc}); install them with: "
            "sudo apt-get install -y fluidsynth && pip install pyfluidsynth"
        ) from exc
    return fluidsynth


def resolve_soundfont(soundfont: str | os.PathLike[str]) -> Path:
    """Return the path of ``soundfont``: a known name (``"FluidR3_GM"``, ``"TimGM6mb"``) or an ``.sf2``/``.sf3`` path.

    Raises
    ------
    MissingToolError
        A known soundfont that is not installed (the message names the Debian package), or a path that does not exist.
    """
    if isinstance(soundfont, str) and soundfont in SOUNDFONTS:
        return find_soundfont(soundfont)
    p = Path(soundfont)
    if not p.is_file():
        raise MissingToolError(
            f"soundfont not found: {p}; pass an existing .sf2 file or one of {sorted(SOUNDFONTS)} "
            "(sudo apt-get install -y fluid-soundfont-gm timgm6mb-soundfont)"
        )
    return p


def _bind(lib: Any, name: str, restype: Any, *argtypes: Any) -> Any:
    fn = getattr(lib, name)
    fn.argtypes = list(argtypes)
    fn.restype = restype
    return fn


class _Synth:
    """A soundfont loaded once, rendered through a fresh FluidSynth instance per score.

    A synth that has rendered before is not in the state of a new one: voice slots keep traces of their previous
    notes (measured: the first notes of a violin score differ by up to -50 dB between the first and a later render,
    depending on what was rendered before, even after ``system_reset`` and waiting for silence). So each render
    creates a new synth (about 1.5 ms) that borrows the soundfont held by ``holder`` (loaded once, about 0.2 s),
    which makes a render depend on nothing but its score.
    """

    def __init__(self, path: Path, rate: int, gain: float) -> None:
        fs = _fluidsynth()
        self.rate = rate
        vp, i = ctypes.c_void_p, ctypes.c_int
        lib = fs._fl
        self._new = _bind(lib, "new_fluid_synth", vp, vp)
        self._delete = _bind(lib, "delete_fluid_synth", None, vp)
        self._add_sfont = _bind(lib, "fluid_synth_add_sfont", i, vp, vp)
        self._remove_sfont = _bind(lib, "fluid_synth_remove_sfont", i, vp, vp)
        self._interp = _bind(lib, "fluid_synth_set_interp_method", i, vp, i, i)
        self._write = _bind(lib, "fluid_synth_write_float", i, vp, i, vp, i, i, vp, i, i)
        self._noteon = _bind(lib, "fluid_synth_noteon", i, vp, i, i, i)
        self._noteoff = _bind(lib, "fluid_synth_noteoff", i, vp, i, i)
        self._cc = _bind(lib, "fluid_synth_cc", i, vp, i, i, i)
        self._bend = _bind(lib, "fluid_synth_pitch_bend", i, vp, i, i)
        self._program = _bind(lib, "fluid_synth_program_select", i, vp, i, i, i, i)
        self._set_log = _bind(lib, "fluid_set_log_function", vp, i, vp, vp)
        self.holder = fs.Synth(
            gain=float(gain),
            samplerate=rate,
            channels=16,
            **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.cpu-cores": 1, "synth.polyphony": 256},
        )
        sfid = self.holder.sfload(str(path))
        if sfid < 0:
            raise MissingToolError(f"FluidSynth could not load the soundfont {path}; is it a valid .sf2 file?")
        self.sfont = _bind(lib, "fluid_synth_get_sfont_by_id", vp, vp, i)(self.holder.synth, sfid)

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        old = self._set_log(_FLUID_WARN, None, None)
        try:
            yield
        finally:
            self._set_log(_FLUID_WARN, old, None)

    def _fresh(self) -> tuple[Any, int]:
        with self._quiet():  # a synth without a soundfont warns once per channel that it has no preset
            synth = self._new(self.holder.settings)
        if not synth:
            raise RuntimeError("FluidSynth could not create a synthesizer")
        sfid = self._add_sfont(synth, self.sfont)
        self._interp(synth, -1, _INTERP_HIGHEST)
        return synth, sfid

    def render(self, events: list[tuple[int, int, int, int, int, int]], n_samples: int) -> np.ndarray:
        """Apply ``events`` (sample, kind, order, channel, a, b) in order and return ``(2, n_samples)`` float32."""
        total = -(-n_samples // BLOCK) * BLOCK
        left = np.zeros(total, dtype=np.float32)
        right = np.zeros(total, dtype=np.float32)
        synth, sfid = self._fresh()
        try:
            pos = 0
            for sample, kind, _, chan, a, b in events:
                sample = min(sample, total)
                if sample > pos:
                    self._pull(synth, left, right, pos, sample)
                    pos = sample
                if kind == _NOTE_ON:
                    self._noteon(synth, chan, a, b)
                elif kind == _NOTE_OFF:
                    self._noteoff(synth, chan, a)
                elif kind == _BEND:
                    self._bend(synth, chan, a + 8192)
                elif kind == _CC:
                    self._cc(synth, chan, a, b)
                else:
                    self._program(synth, chan, sfid, a, b)
            if pos < total:
                self._pull(synth, left, right, pos, total)
        finally:
            with self._quiet():  # removing the soundfont resets the programs: more "no preset" warnings
                self._remove_sfont(synth, self.sfont)  # the soundfont stays with the holder
            self._delete(synth)
        return np.stack([left[:n_samples], right[:n_samples]])

    def _pull(self, synth: Any, left: np.ndarray, right: np.ndarray, start: int, stop: int) -> None:
        lp = left.ctypes.data + 4 * start
        rp = right.ctypes.data + 4 * start
        if self._write(synth, stop - start, lp, 0, 1, rp, 0, 1) != 0:
            raise RuntimeError("fluid_synth_write_float failed")


def _get_synth(path: Path, rate: int, gain: float) -> _Synth:
    key = (str(path.resolve()), rate, float(gain))
    synth = _SYNTHS.get(key)
    if synth is None:
        synth = _SYNTHS[key] = _Synth(path, rate, gain)
    return synth


def _internal_rate(sr: int) -> int:
    # below 44.1 kHz FluidSynth's unfiltered sample interpolation aliases: render at 48 kHz and decimate with soxr
    return 48_000 if sr < 44_100 else sr


def init_worker(soundfonts: tuple[str, ...] = ("FluidR3_GM",), sr: int = 16_000, gain: float = DEFAULT_GAIN) -> None:
    """Process-pool initializer: load each soundfont once in this process (about 0.2 s for FluidR3_GM)."""
    for sf in soundfonts:
        _get_synth(resolve_soundfont(sf), _internal_rate(sr), gain)


def _events(pm: pretty_midi.PrettyMIDI, rate: int, program: int | None) -> list[tuple[int, int, int, int, int, int]]:
    events: list[tuple[int, int, int, int, int, int]] = []
    melodic = [i for i in pm.instruments if not i.is_drum]
    channels = [c for c in range(16) if c != _DRUM_CHANNEL]
    if len(melodic) > len(channels):
        raise InvalidParameterError(
            f"the score has {len(melodic)} melodic instruments; at most {len(channels)} fit on the MIDI channels"
        )
    order = 0

    def add(t: float, kind: int, chan: int, a: int, b: int = 0) -> None:
        nonlocal order
        events.append((max(0, round(t * rate)), kind, order, chan, int(a), int(b)))
        order += 1

    it = iter(channels)
    for inst in pm.instruments:
        chan = _DRUM_CHANNEL if inst.is_drum else next(it)
        prog = inst.program if (program is None or inst.is_drum) else program
        if not 0 <= prog <= 127:
            raise InvalidParameterError(f"MIDI program {prog} is outside 0..127")
        add(0.0, _PROGRAM, chan, 128 if inst.is_drum else 0, prog)
        for cc in inst.control_changes:
            add(cc.time, _CC, chan, cc.number, cc.value)
        for pb in inst.pitch_bends:
            add(pb.time, _BEND, chan, max(-8192, min(8191, pb.pitch)))
        for note in inst.notes:
            if note.end <= note.start:
                continue
            add(note.start, _NOTE_ON, chan, note.pitch, max(1, min(127, note.velocity)))
            add(note.end, _NOTE_OFF, chan, note.pitch)
    # time order; at one sample: program, controllers (in score order, so RPN sequences stay intact), bends,
    # note-offs before note-ons (a repeated legato note must not be cut by its predecessor's note-off)
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    return events


def render_midi(
    pm: pretty_midi.PrettyMIDI,
    soundfont: str | os.PathLike[str] = "FluidR3_GM",
    *,
    sr: int = 16_000,
    program: int | None = None,
    duration: float | None = None,
    gain: float = DEFAULT_GAIN,
) -> np.ndarray:
    """Render a score with FluidSynth and return float32 mono samples at ``sr``.

    Parameters
    ----------
    pm
        The score. Melodic instruments get MIDI channels in order (skipping 9), drum instruments channel 9 (bank 128).
        Note-ons, note-offs, control changes (CC11 expression, RPN 0 pitch-bend range, ...), pitch bends and the
        program are applied in time order at their exact sample.
    soundfont
        ``"FluidR3_GM"`` (default), ``"TimGM6mb"`` or a path to an ``.sf2`` file. Loaded once per process.
    sr
        Output sample rate in Hz. Rates below 44.1 kHz are rendered at 48 kHz and resampled with soxr (HQ).
    program
        GM program (0-127) to use for every melodic instrument instead of the score's own.
    duration
        Length of the output in seconds; default the score's end plus one second of release tail.
    gain
        FluidSynth's master gain.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float32 mono, left and right averaged.

    Raises
    ------
    MissingToolError
        pyfluidsynth, the FluidSynth library or the soundfont is missing.
    InvalidParameterError
        A bad program, duration or rate.
    """
    from ..audio import resample, validate_sample_rate

    sr = validate_sample_rate(sr)
    if program is not None and not (isinstance(program, (int, np.integer)) and 0 <= int(program) <= 127):
        raise InvalidParameterError(f"program={program!r}; a GM program number is an integer in 0..127")
    if duration is None:
        duration = float(pm.get_end_time()) + DEFAULT_TAIL
    if not np.isfinite(duration) or duration <= 0:
        raise InvalidParameterError(f"duration={duration!r}; give a positive number of seconds")
    rate = _internal_rate(sr)
    synth = _get_synth(resolve_soundfont(soundfont), rate, gain)
    n_out = round(duration * sr)
    n_int = -(-n_out * rate // sr)
    stereo = synth.render(_events(pm, rate, None if program is None else int(program)), n_int)
    mono = stereo.mean(axis=0, dtype=np.float64)
    if rate != sr:
        mono = resample(mono, rate, sr, quality="HQ")
    out = np.zeros(n_out, dtype=np.float32)
    m = min(n_out, mono.shape[-1])
    out[:m] = mono[:m]
    return out


def aliasing_ratio(
    y: np.ndarray, sr: int, f0: np.ndarray, frame_rate: float, *, n_fft: int = 2048, fmin: float = 0.0
) -> float:
    """Fraction of the energy of voiced frames that lies away from the harmonics of ``f0`` (a listening proxy).

    Aliased partials of an unfiltered resampler fall between the harmonics; a clean harmonic tone scores near 0.
    Bins within a quarter of f0 of a harmonic count as harmonic.

    Parameters
    ----------
    y
        Mono samples.
    sr
        Their rate.
    f0
        Ground-truth f0 per frame in Hz (0 = unvoiced), at ``frame_rate``.
    frame_rate
        Frames per second of ``f0``.
    n_fft
        Analysis window (Hann) in samples.
    fmin
        Only bins at or above this frequency count (aliases hide under the strong low harmonics: use e.g. 2 kHz).
    """
    y = np.asarray(y, dtype=np.float64)
    win = np.hanning(n_fft)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    off = on = 0.0
    step = max(1, round(frame_rate * 0.05))  # one frame every 50 ms is plenty
    for i in range(0, len(f0), step):
        f = float(f0[i])
        c = round(i / frame_rate * sr)
        if f <= 0 or c - n_fft // 2 < 0 or c + n_fft // 2 > len(y):
            continue
        # the truth must hold over the whole window (no note change, little bend)
        lo, hi = max(0, i - int(frame_rate * n_fft / sr / 2)), i + int(frame_rate * n_fft / sr / 2) + 1
        seg = f0[lo:hi]
        if np.any(seg <= 0) or np.max(np.abs(1200 * np.log2(seg / f))) > 30:
            continue
        p = np.abs(np.fft.rfft(y[c - n_fft // 2 : c + n_fft // 2] * win)) ** 2
        h = freqs / f
        harmonic = np.abs(h - np.round(h)) < 0.25
        band = freqs >= fmin
        on += float(p[harmonic & band].sum())
        off += float(p[~harmonic & band].sum())
    total = on + off
    return off / total if total > 0 else 0.0
