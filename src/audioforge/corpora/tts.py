"""Offline text-to-speech voices: a catalogue over espeak-ng, flite and festival, and a batch ``synthesize``.

Engines (Debian packages installed by the set-up):

* ``espeak-ng``: 8 English accents x 15 voice variants (formant synthesis, robotic but very fast); each catalogue
  voice has its own base speed (words per minute) and pitch, and callers may vary both per utterance with
  :func:`dataclasses.replace`.
* ``flite``: the built-in 16 kHz voices kal16, awb, rms and slt (one short process per utterance, ~10-80 ms).
* ``festival``: kal_diphone, ked_diphone and cmu_us_slt_arctic_hts. Festival starts in 0.4-1.6 s, so each process
  keeps one persistent ``festival --pipe`` session per voice and sends every utterance to it (batch mode).
* ``piper`` and ``kokoro``: neural voices shipped in PyPI wheels (:mod:`audioforge.corpora.neural_tts`): Piper's
  US-English "joe" and Kokoro-82M's five (Japanese) speakers reading English phonemes; ``kokoro-blend``: ten more
  Kokoro speakers, each an equal mix of two of the five's style vectors. They are not among the
  :data:`CLASSIC_ENGINES` that corpora use by default (so every earlier corpus plans exactly as before); pass them
  explicitly, e.g. to add training speakers.

Every utterance comes back as float32 mono at the requested rate, checked to be non-silent and scaled down when its
peak would clip (the klatt variants of espeak-ng overshoot after resampling).

Voices are grouped by *speaker* (the recorded person or the espeak variant behind them: flite's slt and festival's
slt_hts are the same woman), and :func:`voice_split` holds out whole speakers, so a test voice never shares a speaker
with a training voice.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import select
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import load, validate_sample_rate
from ..errors import AudioFileError, InvalidAudioError, InvalidParameterError
from .tools import require_tool

__all__ = [
    "CLASSIC_ENGINES",
    "ENGINES",
    "ESPEAK_ACCENTS",
    "ESPEAK_VARIANTS",
    "VOICES",
    "Voice",
    "close_sessions",
    "get_voice",
    "synthesize",
    "synthesize_one",
    "voice_split",
    "voices_by_engine",
]

CLASSIC_ENGINES = ("espeak-ng", "flite", "festival")
ENGINES = (*CLASSIC_ENGINES, "piper", "kokoro", "kokoro-blend")

# espeak-ng language voice -> accent label
ESPEAK_ACCENTS = {
    "en-us": "american",
    "en-us-nyc": "new-york",
    "en-gb": "british",
    "en-gb-x-rp": "received-pronunciation",
    "en-gb-scotland": "scottish",
    "en-gb-x-gbclan": "lancaster",
    "en-gb-x-gbcwmd": "west-midlands",
    "en-029": "caribbean",
}
# espeak-ng variant -> (gender, amplitude); klatt variants are driven quieter because they clip
ESPEAK_VARIANTS = {
    "m1": ("male", 100), "m2": ("male", 100), "m3": ("male", 100), "m4": ("male", 100), "m5": ("male", 100),
    "m6": ("male", 100), "m7": ("male", 100),
    "f1": ("female", 100), "f2": ("female", 100), "f3": ("female", 100), "f4": ("female", 100),
    "klatt": ("male", 70), "klatt2": ("male", 70), "klatt3": ("male", 70), "klatt4": ("male", 60),
}


@dataclass(frozen=True)
class Voice:
    """One synthetic voice.

    Attributes
    ----------
    name
        Catalogue key, for example ``"espeak-en-gb-scotland-f2"``, ``"flite-slt"``, ``"festival-kal"``.
    engine
        One of :data:`ENGINES`.
    gender
        ``"male"`` or ``"female"``.
    speaker
        The identity behind the voice; held-out splits hold out whole speakers.
    accent
        Accent label (``"american"``, ``"scottish"`` ...).
    model
        The engine's own voice id: ``"en-us+m3"`` for espeak-ng, ``"slt"`` for flite, ``"kal_diphone"`` for festival,
        ``"joe"`` for piper, ``"jm_kumo"`` for kokoro, ``"jf_alpha+jm_kumo"`` for kokoro-blend.
    speed
        espeak-ng speaking rate in words per minute (other engines: 175, unused; use augmentation tempo instead).
    pitch
        espeak-ng base pitch, 0-99 (other engines: 50, unused).
    amplitude
        espeak-ng amplitude, 0-200 (other engines: 100, unused).
    """

    name: str
    engine: str
    gender: str
    speaker: str
    accent: str
    model: str
    speed: int = 175
    pitch: int = 50
    amplitude: int = 100

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InvalidParameterError(f"voice {self.name!r}: engine must be one of {ENGINES}, got {self.engine!r}")
        if self.gender not in ("male", "female"):
            raise InvalidParameterError(f"voice {self.name!r}: gender must be 'male' or 'female', got {self.gender!r}")
        if not 80 <= self.speed <= 450 or not 0 <= self.pitch <= 99 or not 0 <= self.amplitude <= 200:
            raise InvalidParameterError(
                f"voice {self.name!r}: speed must be in [80, 450] wpm, pitch in [0, 99], amplitude in [0, 200]; "
                f"got speed={self.speed}, pitch={self.pitch}, amplitude={self.amplitude}"
            )


def _stable_unit(name: str, salt: str) -> float:
    h = hashlib.blake2b(f"{salt}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def _build_catalogue() -> dict[str, Voice]:
    voices: dict[str, Voice] = {}
    for lang, accent in ESPEAK_ACCENTS.items():
        for variant, (gender, amplitude) in ESPEAK_VARIANTS.items():
            name = f"espeak-{lang}-{variant}"
            voices[name] = Voice(
                name=name, engine="espeak-ng", gender=gender, speaker=f"espeak-{variant}", accent=accent,
                model=f"{lang}+{variant}", speed=150 + int(40 * _stable_unit(name, "speed")),
                pitch=35 + int(30 * _stable_unit(name, "pitch")), amplitude=amplitude,
            )
    for model, gender, speaker, accent in (("kal16", "male", "kal", "american"), ("awb", "male", "awb", "scottish"),
                                           ("rms", "male", "rms", "american"), ("slt", "female", "slt", "american")):
        name = f"flite-{speaker}"
        voices[name] = Voice(name=name, engine="flite", gender=gender, speaker=speaker, accent=accent, model=model)
    for model, gender, speaker in (("kal_diphone", "male", "kal"), ("ked_diphone", "male", "ked"),
                                   ("cmu_us_slt_arctic_hts", "female", "slt")):
        name = f"festival-{speaker}"
        voices[name] = Voice(name=name, engine="festival", gender=gender, speaker=speaker, accent="american",
                             model=model)
    # neural voices last: speaker ids of corpora (catalogue order) stay what they were
    voices["piper-joe"] = Voice(name="piper-joe", engine="piper", gender="male", speaker="joe", accent="american",
                                model="joe")
    from .neural_tts import KOKORO_BLENDS, KOKORO_VOICES, kokoro_blend

    for model, gender in KOKORO_VOICES.items():
        name = f"kokoro-{model}"
        voices[name] = Voice(name=name, engine="kokoro", gender=gender, speaker=name, accent="japanese", model=model)
    for model in KOKORO_BLENDS:  # after the five: a blend is a speaker of its own, between its two parents
        name = f"kokoro-{model}"
        heaviest = max(kokoro_blend(model), key=lambda p: p[1])[0]  # ties: the first named
        voices[name] = Voice(name=name, engine="kokoro-blend", gender=KOKORO_VOICES[heaviest], speaker=name,
                             accent="japanese", model=model)
    return voices


VOICES: dict[str, Voice] = _build_catalogue()


def get_voice(voice: str | Voice) -> Voice:
    """Look a voice up by name (a :class:`Voice` is returned as is)."""
    if isinstance(voice, Voice):
        return voice
    try:
        return VOICES[voice]
    except KeyError:
        close = [n for n in VOICES if voice in n][:8]
        raise InvalidParameterError(
            f"unknown voice {voice!r}; see audioforge.corpora.tts.VOICES" + (f" (similar: {close})" if close else "")
        ) from None


def voices_by_engine(engines: Sequence[str] = ENGINES) -> list[Voice]:
    """The catalogue's voices of the given engines, in catalogue order."""
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        raise InvalidParameterError(f"unknown engine(s) {bad}; use some of {ENGINES}")
    return [v for v in VOICES.values() if v.engine in engines]


def voice_split(
    seed: int = 0,
    *,
    test_fraction: float = 0.2,
    voices: Sequence[str | Voice] | None = None,
) -> tuple[list[str], list[str]]:
    """Split voices into (train, test) names holding out whole speakers.

    espeak-ng speakers (the 15 variants, each spoken in all accents) are held out at ``test_fraction`` with at least
    one male and one female variant in each split. Of the natural speakers (flite/festival), the test set gets
    ``kal``, the one male speaker with both a flite and a festival voice, so the test set covers both engines while
    training keeps ``slt``, the only natural female voice; with ``test_fraction >= 0.4`` a seeded choice of further
    male speakers joins it.

    Parameters
    ----------
    seed
        Chooses the held-out espeak-ng variants (and extra natural speakers).
    test_fraction
        Share of espeak-ng speakers held out, in (0, 1).
    voices
        Restrict the split to these voices (default: the voices of :data:`CLASSIC_ENGINES`).

    Returns
    -------
    (train, test)
        Voice names, in catalogue order; no speaker appears in both.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InvalidParameterError(f"test_fraction must be in (0, 1), got {test_fraction}")
    pool = [get_voice(v) for v in voices] if voices is not None else voices_by_engine(CLASSIC_ENGINES)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5BEA]))
    held: set[str] = set()
    espeak = sorted({v.speaker for v in pool if v.engine == "espeak-ng"})
    if espeak:
        by_gender = {g: [s for s in espeak if any(v.speaker == s and v.gender == g for v in pool)]
                     for g in ("female", "male")}
        n_test = max(1, round(test_fraction * len(espeak)))
        chosen: list[str] = []
        for speakers in by_gender.values():  # one of each gender first, when the gender has 2+ speakers
            if len(speakers) >= 2 and len(chosen) < n_test:
                chosen.append(speakers[int(rng.integers(0, len(speakers)))])
        rest = [s for s in espeak if s not in chosen]
        extra = rng.permutation(len(rest))[: max(0, n_test - len(chosen))]
        chosen += [rest[i] for i in extra]
        held.update(chosen)
    natural = sorted({v.speaker for v in pool if v.engine != "espeak-ng"})
    if len(natural) >= 2:
        if "kal" in natural:
            held.add("kal")
        else:
            males = [s for s in natural if all(v.gender == "male" for v in pool if v.speaker == s)]
            held.add((males or natural)[int(rng.integers(0, len(males or natural)))])
        if test_fraction >= 0.4:
            others = [s for s in natural if s not in held and s != "slt"]
            n_more = max(0, round(test_fraction * len(natural)) - 1)
            held.update(others[i] for i in rng.permutation(len(others))[:n_more])
    train = [v.name for v in pool if v.speaker not in held]
    test = [v.name for v in pool if v.speaker in held]
    if not train or not test:
        raise InvalidParameterError(
            f"cannot hold out speakers from {len(pool)} voice(s) with {len(espeak) + len(natural)} speaker(s); "
            "pass voices of at least two speakers"
        )
    return train, test


# --------------------------------------------------------------------------------------------------------------------
# engines
# --------------------------------------------------------------------------------------------------------------------
def _run(cmd: list[str], *, timeout: float = 60.0) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AudioFileError(f"{cmd[0]} did not finish within {timeout:.0f} s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-500:]
        raise AudioFileError(f"{cmd[0]} failed with exit code {proc.returncode}: {err or '(no message)'}")


def _espeak(text: str, voice: Voice, wav: Path) -> None:
    exe = require_tool("espeak-ng")
    _run([exe, "-v", voice.model, "-s", str(voice.speed), "-p", str(voice.pitch), "-a", str(voice.amplitude),
          "-w", str(wav), "--", text])


def _flite(text: str, voice: Voice, wav: Path) -> None:
    exe = require_tool("flite")
    txt = wav.with_suffix(".txt")
    txt.write_text(text + "\n", encoding="utf-8")
    _run([exe, "-voice", voice.model, "-f", str(txt), "-o", str(wav)])


class _FestivalSession:
    """A persistent ``festival --pipe`` process with one voice selected; utterances are sent one command each."""

    MARK = "@@AUDIOFORGE-DONE@@"

    def __init__(self, model: str, *, timeout: float = 120.0) -> None:
        exe = require_tool("festival")
        self.model = model
        self.timeout = timeout
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([exe, "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, bufsize=0)
        self._buf = b""
        self.command(f"(voice_{model})")
        current = self.command('(format t "%s\\n" current-voice)').strip()
        if current != model:
            self.close()
            raise AudioFileError(
                f"festival could not load the voice {model!r}; install it with: sudo apt-get install -y "
                "festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
            )

    def _stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace")

    def command(self, expr: str) -> str:
        """Send one Scheme expression and return what festival printed until the done-marker."""
        if self.proc.poll() is not None or self.proc.stdin is None or self.proc.stdout is None:
            raise AudioFileError(f"festival exited unexpectedly: {self._stderr()[-500:]}")
        self.proc.stdin.write(f'{expr}\n(format t "%s\\n" "{self.MARK}")\n(fflush nil)\n'.encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()
        mark = self.MARK.encode()
        while mark not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise AudioFileError(f"festival did not answer within {self.timeout:.0f} s to {expr[:80]!r}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AudioFileError(f"festival exited unexpectedly: {self._stderr()[-500:]}")
                self._buf += chunk
        out, _, self._buf = self._buf.partition(mark)
        self._buf = self._buf.lstrip(b"\n")
        return out.decode(errors="replace")

    def synth(self, text: str, wav: Path) -> None:
        esc = text.replace("\\", "\\\\").replace('"', '\\"')
        path = str(wav).replace("\\", "\\\\").replace('"', '\\"')
        self.command(f'(utt.save.wave (utt.synth (Utterance Text "{esc}")) "{path}" \'riff)')
        if not wav.is_file():
            raise AudioFileError(f"festival wrote no audio for {text[:80]!r}: {self._stderr()[-500:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._err.close()


_SESSIONS: dict[tuple[int, str], _FestivalSession] = {}


def _festival_session(model: str) -> _FestivalSession:
    key = (os.getpid(), model)  # a forked worker must not share its parent's pipes
    sess = _SESSIONS.get(key)
    if sess is None or sess.proc.poll() is not None:
        sess = _SESSIONS[key] = _FestivalSession(model)
    return sess


def close_sessions() -> None:
    """Stop this process's persistent festival sessions (also done automatically at exit)."""
    for key in [k for k in _SESSIONS if k[0] == os.getpid()]:
        _SESSIONS.pop(key).close()


atexit.register(close_sessions)


def _finish(y: np.ndarray, file_sr: int, sr: int, voice: Voice, text: str) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    if y.size < file_sr // 20 or float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) < 1e-4:
        raise InvalidAudioError(f"voice {voice.name} produced silence for {text[:80]!r}; check the text and voice")
    if file_sr != sr:
        import soxr

        y = soxr.resample(y, file_sr, sr, quality="HQ").astype(np.float32)
    peak = float(np.max(np.abs(y)))
    if peak > 0.9:  # resampling overshoot (klatt voices): scale down instead of clipping
        y *= np.float32(0.9 / peak)
    return y


def synthesize(texts: Sequence[str], voice: str | Voice, *, sr: int = 16000) -> list[np.ndarray]:
    """Speak each text with ``voice``; festival voices use one persistent process for all of them.

    Parameters
    ----------
    texts
        What to say. Give the spoken form (:func:`audioforge.corpora.text.spoken_form`) when the transcript must
        match the audio word for word.
    voice
        A catalogue name or a :class:`Voice` (for example one with a per-utterance speed or pitch).
    sr
        Output sample rate.

    Returns
    -------
    list of numpy.ndarray
        float32 mono signals at ``sr``, peak at most 0.9.

    Raises
    ------
    MissingToolError
        The engine is not installed (the message names the Debian or PyPI package).
    InvalidAudioError
        An engine produced silence.
    AudioFileError
        An engine failed.
    """
    v = get_voice(voice)
    sr = validate_sample_rate(sr)
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            raise InvalidParameterError(f"texts must be non-empty strings, got {t!r}")
    out: list[np.ndarray] = []
    with tempfile.TemporaryDirectory(prefix="audioforge-tts-") as tmp:
        for i, text in enumerate(texts):
            wav = Path(tmp) / f"{i}.wav"
            text = " ".join(text.split())
            if v.engine not in CLASSIC_ENGINES:  # the neural voices, run in this process
                from .neural_tts import neural_speak

                y, file_sr = neural_speak(text, v.engine, v.model)
                out.append(_finish(y, file_sr, sr, v, text))
                continue
            if v.engine == "espeak-ng":
                _espeak(text, v, wav)
            elif v.engine == "flite":
                _flite(text, v, wav)
            else:
                _festival_session(v.model).synth(text, wav)
            if not wav.is_file():
                raise AudioFileError(f"{v.engine} wrote no audio for {text[:80]!r} with voice {v.name}")
            y, file_sr = load(wav, mono=True)
            out.append(_finish(y, file_sr, sr, v, text))
            wav.unlink()
    return out


def synthesize_one(text: str, voice: str | Voice, sr: int = 16000) -> np.ndarray:
    """Speak one text (see :func:`synthesize`)."""
    return synthesize([text], voice, sr=sr)[0]
