"""Timbre transfer: any monophonic recording -> the same melody played by a trained DDSP instrument.

Pipeline (:func:`timbre_transfer`): load and resample to 16 kHz; f0 + confidence (CREPE tiny, or YIN) and loudness
at 250 frames/s; note detection (confident pitch above -60 dB, :func:`~audioforge.ddsp.data.note_mask`); with
``auto_adjust``: the octave shift that brings the input's mean note pitch closest to the instrument's
(``statistics["pitch_note"]["mean"]``), note-frame loudness quantile-mapped onto the instrument's table
(``statistics["quantiles"]``) and non-note frames lowered by ``20 dB * (1 - note ratio)``; then the manual
``pitch_shift`` (semitones) and ``loudness_shift`` (dB); f0 held through unvoiced frames (as in training), except the
last 48 ms before each confident onset, which take the coming note's f0; then rendered.

Bad input raises :class:`~audioforge.errors.AudioForgeError` subclasses with a clear message: NaN/inf samples
(:class:`~audioforge.errors.NonFiniteAudioError`), silence or no pitch found
(:class:`~audioforge.errors.InvalidAudioError`), a rate outside 1-768 kHz
(:class:`~audioforge.errors.UnsupportedSampleRateError`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..audio import load, resample, validate_audio, validate_sample_rate
from ..bundle import Bundle
from ..errors import InvalidAudioError, InvalidParameterError
from .data import SR, before_onset, hold_f0, map_quantiles, note_mask
from .loudness import compute_loudness
from .model import DDSPAutoencoder
from .pitch import estimate_f0

__all__ = [
    "TransferResult",
    "adjust_controls",
    "evaluate_tracker",
    "evaluate_transfer",
    "extract_controls",
    "load_input",
    "raw_pitch_accuracy",
    "timbre_transfer",
]

SILENCE_DB = -70.0  # loudness (dB, 0 = full-scale 1 kHz sine) below which a recording counts as silent
MIN_NOTE_FRAMES = 10  # fewer confident pitched frames than this: "no pitch found"
ONSET_LEAD = 12  # frames (48 ms) before a confident onset that take the coming note's f0 (see hold_f0's lead)


@dataclass
class TransferResult:
    """Output of :func:`timbre_transfer`."""

    audio: np.ndarray  #: float32 at 16 kHz, as long as the (resampled) input
    sr: int
    f0_in: np.ndarray  #: tracked f0 (Hz, 0 = unvoiced) of the input, 250 frames/s
    confidence: np.ndarray
    loudness_in: np.ndarray
    f0_hz: np.ndarray  #: f0 rendered (held, shifted)
    loudness_db: np.ndarray  #: loudness rendered
    note: np.ndarray  #: note mask
    octave_shift: int  #: semitones applied by auto-adjust (a multiple of 12)
    pitch_shift: float
    loudness_shift: float
    gain: float = 1.0  #: < 1 when the output was scaled down to avoid clipping
    info: dict[str, Any] = field(default_factory=dict)


def load_input(audio: Any, sr: int | None = None) -> np.ndarray:
    """A file path or mono samples (with ``sr``) -> validated float32 samples at 16 kHz."""
    if isinstance(audio, (str, os.PathLike)):
        y, rate = load(audio, sr=None)
    else:
        if sr is None:
            raise InvalidParameterError("pass sr with an array of samples")
        rate = validate_sample_rate(sr)
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        validate_audio(audio, name="audio", allow_multichannel=False)
        y = np.asarray(audio)
    validate_audio(y, name="audio", allow_multichannel=False, min_samples=1)
    if y.shape[0] < rate // 10:
        raise InvalidAudioError(f"the input lasts {y.shape[0] / rate * 1000:.0f} ms; give at least 0.1 s")
    if rate != SR:
        y = resample(y.astype(np.float32), rate, SR)
    return np.ascontiguousarray(y, dtype=np.float32)


def extract_controls(y: np.ndarray, *, f0_method: str = "crepe", confidence_threshold: float = 0.6
                     ) -> dict[str, np.ndarray]:
    """f0, confidence, loudness and note mask of 16 kHz audio; errors for silence and missing pitch."""
    loud = compute_loudness(y, SR).astype(np.float32)
    if float(loud.max()) < SILENCE_DB:
        raise InvalidAudioError(
            f"the input is silent (loudest frame {loud.max():.0f} dB, below {SILENCE_DB:.0f} dB); nothing to transfer"
        )
    f0, conf = estimate_f0(y, SR, method=f0_method)
    note = note_mask(loud, conf, confidence_threshold=confidence_threshold)
    if int(note.sum()) < MIN_NOTE_FRAMES:
        raise InvalidAudioError(
            f"no pitch found: only {int(note.sum())} frames have a confident f0 (confidence >= "
            f"{confidence_threshold}); timbre transfer needs a monophonic, pitched recording"
        )
    return {"f0_hz": f0.astype(np.float32), "confidence": conf.astype(np.float32), "loudness_db": loud, "note": note}


def _midi(f0: np.ndarray) -> np.ndarray:
    return 69.0 + 12.0 * np.log2(np.maximum(f0, 1e-3) / 440.0)


def adjust_controls(
    f0_hz: np.ndarray,
    loudness_db: np.ndarray,
    note: np.ndarray,
    statistics: dict[str, Any] | None,
    *,
    auto_adjust: bool = True,
    pitch_shift: float = 0.0,
    loudness_shift: float = 0.0,
    quiet_db: float = 20.0,
    onset_lead: int = ONSET_LEAD,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Auto-adjust and manual shifts; returns ``(f0 held and shifted, loudness, octave_shift)``.

    Parameters
    ----------
    f0_hz, loudness_db, note
        Input frames (f0 0 where unvoiced; only note frames' f0 is trusted).
    statistics
        The bundle's ``options["statistics"]`` (needed when ``auto_adjust``).
    auto_adjust
        Octave shift toward the instrument's mean note pitch, loudness quantile mapping, non-note frames lowered
        by ``quiet_db * (1 - note ratio)``.
    pitch_shift, loudness_shift
        Manual shifts in semitones (-24..24) and dB (-40..40), applied after auto-adjust.
    quiet_db
        How far non-note frames are lowered when auto-adjusting.
    onset_lead
        Frames before each confident note that already take its f0 (the tracker gets confident only some way into
        an attack), and keep the note loudness mapping instead of being lowered; the rest of a gap holds the previous
        note's f0. Measured on the 12 held-out flute melodies: the control f0 matches the score on 92.7% of voiced
        frames with a plain hold and 96.1% with 12 frames of lead; the transferred output's f0 on 93.0% and 95.3%.
    """
    if not -24.0 <= pitch_shift <= 24.0 or not -40.0 <= loudness_shift <= 40.0:
        raise InvalidParameterError(f"pitch_shift={pitch_shift} (use -24..24 semitones) or loudness_shift="
                                    f"{loudness_shift} (use -40..40 dB) out of range")
    note = np.asarray(note, dtype=bool)
    f0 = np.where(note, f0_hz, 0.0).astype(np.float32)
    ld = np.asarray(loudness_db, dtype=np.float32).copy()
    octave = 0
    if auto_adjust:
        if statistics is None:
            raise InvalidParameterError("auto_adjust needs the bundle's statistics")
        mean_in = float(_midi(f0[note]).mean())
        octave = 12 * round((float(statistics["pitch_note"]["mean"]) - mean_in) / 12.0)
        q = statistics["quantiles"]
        levels = np.asarray(q["levels"], dtype=np.float64)
        src = np.quantile(ld[note], levels)
        sounding = note | before_onset(note, onset_lead)[0]  # attacks keep their level: the output must speak there
        ld = np.where(sounding, map_quantiles(ld, src, q["loudness_db"]), ld)
        ld = np.where(sounding, ld, ld - quiet_db * (1.0 - float(note.mean()))).astype(np.float32)
    semis = octave + float(pitch_shift)
    f0 = hold_f0(f0, lead=onset_lead) * np.float32(2.0 ** (semis / 12.0))
    ld = np.clip(ld + np.float32(loudness_shift), -80.0, 0.0).astype(np.float32)
    return f0.astype(np.float32), ld, octave


def _model_and_stats(bundle: Any) -> tuple[DDSPAutoencoder, dict[str, Any]]:
    from .train import load_model

    if isinstance(bundle, DDSPAutoencoder):
        return bundle.eval(), {}
    model, b = load_model(bundle)
    return model, b.options.get("statistics", {})


def timbre_transfer(
    audio: Any,
    bundle: Bundle | str | os.PathLike[str],
    *,
    sr: int | None = None,
    auto_adjust: bool = True,
    pitch_shift: float = 0.0,
    loudness_shift: float = 0.0,
    f0_method: str = "crepe",
    seed: int = 0,
) -> TransferResult:
    """Render ``audio``'s melody with the instrument of ``bundle``.

    Parameters
    ----------
    audio
        A file path, or mono float samples with ``sr``.
    bundle
        A DDSP bundle, a bundle folder or a shipped name (``"ddsp-sax"``).
    sr
        Sample rate of array input (any rate from 1 to 768 kHz; resampled to 16 kHz).
    auto_adjust, pitch_shift, loudness_shift
        See :func:`adjust_controls`.
    f0_method
        ``"crepe"`` (CREPE tiny) or ``"yin"``.
    seed
        Seed of the synthesizer's noise.

    Returns
    -------
    TransferResult
    """
    y = load_input(audio, sr)
    ctl = extract_controls(y, f0_method=f0_method)
    model, stats = _model_and_stats(bundle)
    f0, ld, octave = adjust_controls(ctl["f0_hz"], ctl["loudness_db"], ctl["note"], stats or None,
                                     auto_adjust=auto_adjust and bool(stats), pitch_shift=pitch_shift,
                                     loudness_shift=loudness_shift)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        out = model(torch.from_numpy(f0)[None], torch.from_numpy(ld)[None], generator=gen)[0][0].numpy()
    out = out[: y.shape[0]]
    if out.shape[0] < y.shape[0]:
        out = np.pad(out, (0, y.shape[0] - out.shape[0]))
    peak = float(np.abs(out).max(initial=0.0))
    gain = 0.99 / peak if peak > 0.99 else 1.0
    return TransferResult(audio=(out * gain).astype(np.float32), sr=SR, f0_in=ctl["f0_hz"],
                          confidence=ctl["confidence"], loudness_in=ctl["loudness_db"], f0_hz=f0, loudness_db=ld,
                          note=ctl["note"], octave_shift=octave, pitch_shift=float(pitch_shift),
                          loudness_shift=float(loudness_shift), gain=gain)


def raw_pitch_accuracy(reference_hz: np.ndarray, estimate_hz: np.ndarray, *, cents: float = 50.0,
                       voiced: np.ndarray | None = None) -> float:
    """Fraction of voiced reference frames whose estimate is within ``cents`` (mir_eval's raw pitch accuracy).

    Unvoiced estimates (<= 0) on voiced reference frames count as misses.
    """
    ref = np.asarray(reference_hz, dtype=np.float64)
    est = np.asarray(estimate_hz, dtype=np.float64)
    n = min(ref.size, est.size)
    ref, est = ref[:n], est[:n]
    mask = ref > 0 if voiced is None else (np.asarray(voiced[:n], dtype=bool) & (ref > 0))
    if not mask.any():
        return float("nan")
    ok = (est[mask] > 0) & (np.abs(1200.0 * np.log2(np.maximum(est[mask], 1e-3) / ref[mask])) <= cents)
    return float(ok.mean())


def _stable_voiced(f0: np.ndarray, margin: int = 12) -> np.ndarray:
    """Score frames at least ``margin`` frames (48 ms) away from note changes and edges (attacks, glides)."""
    v = f0 > 0
    change = np.zeros_like(v)
    midi = np.round(_midi(f0))
    change[1:] = (v[1:] != v[:-1]) | (v[1:] & v[:-1] & (midi[1:] != midi[:-1]))
    near = np.convolve(change.astype(np.float64), np.ones(2 * margin + 1), mode="same") > 0
    return v & ~near


def evaluate_transfer(bundle: Any, manifest: Any, *, clips: int = 6, f0_method: str = "crepe"
                      ) -> dict[str, float]:
    """Transfer each of the first ``clips`` held-out clips and track the output's f0 against the input score.

    Returns ``rpa`` (50 cents, score voiced frames, score f0 shifted by the applied octave), ``rpa_stable`` (the
    same away from note edges), and ``clips``.
    """
    b_obj = Bundle.load(bundle) if isinstance(bundle, (str, os.PathLike)) else bundle
    hits, stable = [], []
    entries = list(manifest)[: int(clips)]
    if not entries:
        raise InvalidParameterError("no clips to evaluate")
    for e in entries:
        res = timbre_transfer(manifest.audio_path(e), b_obj, f0_method=f0_method)
        score = np.load(manifest.root / e["f0"]).astype(np.float64) * 2.0 ** (res.octave_shift / 12.0)
        out_f0, _ = estimate_f0(res.audio, SR, method=f0_method)
        hits.append(raw_pitch_accuracy(score, out_f0))
        stable.append(raw_pitch_accuracy(score, out_f0, voiced=_stable_voiced(score)))
    return {"rpa": round(float(np.nanmean(hits)), 4), "rpa_stable": round(float(np.nanmean(stable)), 4),
            "clips": len(entries)}


def evaluate_tracker(manifest: Any, *, clips: int = 6, methods: tuple[str, ...] = ("crepe", "yin")
                     ) -> dict[str, float]:
    """Raw pitch accuracy (50 cents) of each f0 tracker against the score on the first ``clips`` clips."""
    out: dict[str, float] = {}
    entries = list(manifest)[: int(clips)]
    for method in methods:
        accs, accs_stable = [], []
        for e in entries:
            y, _ = load(manifest.audio_path(e), sr=SR)
            score = np.load(manifest.root / e["f0"]).astype(np.float64)
            f0, _ = estimate_f0(y, SR, method=method)
            accs.append(raw_pitch_accuracy(score, f0))
            accs_stable.append(raw_pitch_accuracy(score, f0, voiced=_stable_voiced(score)))
        out[f"{method}_rpa"] = round(float(np.nanmean(accs)), 4)
        out[f"{method}_rpa_stable"] = round(float(np.nanmean(accs_stable)), 4)
    return out
