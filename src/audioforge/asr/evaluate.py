"""Evaluation of recognisers on a manifest: CER and WER (jiwer) full context and streaming, and a pocketsphinx peer.

References and hypotheses are normalised the same way (:func:`normalize_text`: lower case, letters, digits and
apostrophes, single spaces) and scored corpus-wide (total edits / total reference characters or words).
pocketsphinx 5 decodes the same 16 kHz audio with the en-us model shipped in its wheel.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..audio import float_to_pcm16, load
from ..corpora.manifest import Manifest
from ..errors import InvalidParameterError, MissingToolError
from .data import load_manifest

__all__ = [
    "EvaluationResult",
    "PocketsphinxRecognizer",
    "error_rates",
    "error_rates_by",
    "evaluate_bundle",
    "evaluate_transcriber",
    "format_breakdown",
    "format_table",
    "normalize_text",
]

_KEEP = re.compile(r"[^a-z0-9' ]+")


def normalize_text(text: str) -> str:
    """Lower case; characters other than ``a-z 0-9 '`` become spaces; spaces collapsed."""
    return " ".join(_KEEP.sub(" ", text.lower()).split())


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
    """Corpus CER and WER in percent of normalised texts (an empty hypothesis counts as all deletions).

    Raises
    ------
    InvalidParameterError
        Different lengths, no reference, or only empty references.
    """
    import jiwer

    if len(refs) != len(hyps):
        raise InvalidParameterError(f"{len(refs)} references but {len(hyps)} hypotheses")
    pairs = [(normalize_text(r), normalize_text(h)) for r, h in zip(refs, hyps, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise InvalidParameterError("no non-empty reference to score against")
    r_list = [r for r, _ in pairs]
    # jiwer rejects empty hypotheses in some versions: a lone space keeps them as deletions
    h_list = [h if h else " " for _, h in pairs]
    words = jiwer.process_words(r_list, h_list)
    chars = jiwer.process_characters(r_list, h_list)
    return {"cer": 100.0 * chars.cer, "wer": 100.0 * words.wer}


@dataclass
class EvaluationResult:
    """Scores of one system on one manifest.

    Attributes
    ----------
    system
        e.g. ``"u2 full context"``, ``"u2 streaming chunk 16"``, ``"pocketsphinx"``.
    cer, wer
        Percent.
    utterances, audio_s, compute_s
        Counts and times (``rtf = compute_s / audio_s``).
    hypotheses
        ``{key: text}``.
    """

    system: str
    cer: float
    wer: float
    utterances: int
    audio_s: float
    compute_s: float
    hypotheses: dict[str, str] = field(default_factory=dict)

    @property
    def rtf(self) -> float:
        """Real-time factor."""
        return self.compute_s / self.audio_s if self.audio_s else 0.0

    def to_dict(self, *, with_hypotheses: bool = False) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = asdict(self)
        d["rtf"] = self.rtf
        if not with_hypotheses:
            d.pop("hypotheses")
        return d


class PocketsphinxRecognizer:
    """The pocketsphinx 5 decoder with its in-wheel en-us model (a peer for comparison).

    Raises
    ------
    MissingToolError
        pocketsphinx is not installed.
    """

    sample_rate = 16000

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:  # pragma: no cover - installed with the eval extra
            raise MissingToolError("the pocketsphinx peer needs pocketsphinx: pip install pocketsphinx") from exc
        self.decoder = Decoder(loglevel="FATAL")

    def transcribe_pcm(self, samples: np.ndarray) -> str:
        """Text of 16 kHz float samples."""
        pcm = float_to_pcm16(samples)
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def _entries(manifest: Manifest, max_utterances: int | None) -> list[dict[str, Any]]:
    if max_utterances is not None and max_utterances < 1:
        raise InvalidParameterError(f"max_utterances must be >= 1, got {max_utterances}")
    entries = list(manifest)
    return entries if max_utterances is None else entries[:max_utterances]


def evaluate_transcriber(
    transcribe: Callable[[np.ndarray], str],
    manifest: Manifest | str | os.PathLike[str],
    *,
    system: str,
    split: str | None = None,
    max_utterances: int | None = None,
    sample_rate: int = 16000,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Score ``transcribe(samples at sample_rate) -> text`` on a manifest's ``txt``."""
    m = load_manifest(manifest, split=split)
    entries = _entries(m, max_utterances)
    refs, hyps, out = [], [], {}
    audio_s = compute_s = 0.0
    for i, e in enumerate(entries):
        samples, _ = load(m.audio_path(e), sr=sample_rate)
        t0 = time.perf_counter()
        text = transcribe(samples)
        compute_s += time.perf_counter() - t0
        audio_s += samples.shape[0] / sample_rate
        refs.append(e["txt"])
        hyps.append(text)
        out[e["key"]] = text
        if progress is not None:
            progress(i + 1, len(entries))
    rates = error_rates(refs, hyps)
    return EvaluationResult(system, rates["cer"], rates["wer"], len(entries), audio_s, compute_s, out)


def evaluate_bundle(
    bundle: Any,
    manifest: Manifest | str | os.PathLike[str],
    *,
    split: str | None = "test",
    chunk_size: int = 16,
    full_context: bool = True,
    streaming: bool = True,
    pocketsphinx: bool = True,
    max_utterances: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    without_lm: bool = True,
) -> list[EvaluationResult]:
    """CER/WER of a bundle full context and streaming (``chunk_size``), and of pocketsphinx on the same audio.

    Parameters
    ----------
    bundle
        A :class:`~audioforge.bundle.Bundle`, a folder or a shipped name.
    manifest
        Entries with ``txt``; ``split`` selects a split (None: all entries).
    chunk_size
        Streaming chunk in encoder frames (all left context kept).
    full_context, streaming, pocketsphinx
        Which systems to score.
    without_lm
        When the bundle decodes with a language model, also score it with the model turned off (systems named
        ``..., no LM``, after the ones with it).
    max_utterances
        Use the first N entries.
    progress
        ``progress(system, done, total)``.

    Raises
    ------
    InvalidParameterError
        Nothing to evaluate, bad counts.
    ManifestError, CheckpointError
        Unusable manifest or bundle.
    """
    from .infer import Recognizer

    if not (full_context or streaming or pocketsphinx):
        raise InvalidParameterError("nothing to evaluate: enable full_context, streaming or pocketsphinx")
    if chunk_size < 1:
        raise InvalidParameterError(f"chunk_size must be >= 1, got {chunk_size}")
    m = load_manifest(manifest, split=split)
    results = []

    def cb(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda i, n: progress(name, i, n))

    if full_context or streaming:
        rec = Recognizer.from_bundle(bundle, chunk_size=chunk_size, num_left_chunks=-1)
        if full_context:
            name = "u2 full context"
            results.append(evaluate_transcriber(lambda x: rec.transcribe(x, 16000).text, m, system=name,
                                                max_utterances=max_utterances, progress=cb(name)))
        if streaming:
            name = f"u2 streaming chunk {chunk_size}"
            results.append(evaluate_transcriber(lambda x: rec.transcribe(x, 16000, simulate_streaming=True).text, m,
                                                system=name, max_utterances=max_utterances, progress=cb(name)))
        if without_lm and rec.fusion() is not None:
            plain = Recognizer.from_bundle(bundle, chunk_size=chunk_size, num_left_chunks=-1, lm_weight=0.0)
            for on, name, kw in ((full_context, "u2 full context, no LM", {}),
                                 (streaming, f"u2 streaming chunk {chunk_size}, no LM", {"simulate_streaming": True})):
                if on:
                    results.append(evaluate_transcriber(
                        lambda x, kw=kw: plain.transcribe(x, 16000, **kw).text, m, system=name,
                        max_utterances=max_utterances, progress=cb(name)))
    if pocketsphinx:
        ps = PocketsphinxRecognizer()
        results.append(evaluate_transcriber(ps.transcribe_pcm, m, system="pocketsphinx 5 (en-us)",
                                            max_utterances=max_utterances, progress=cb("pocketsphinx")))
    return results


def format_table(results: Sequence[EvaluationResult]) -> str:
    """A markdown table: system, utterances, hours, CER, WER, RTF."""
    lines = ["| system | utterances | audio h | CER % | WER % | RTF |", "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.system} | {r.utterances} | {r.audio_s / 3600:.3f} | {r.cer:.2f} | {r.wer:.2f} | "
                     f"{r.rtf:.3f} |")
    return "\n".join(lines) + "\n"


def error_rates_by(
    result: EvaluationResult,
    manifest: Manifest | str | os.PathLike[str],
    field: str,
    *,
    split: str | None = None,
) -> dict[str, dict[str, float]]:
    """CER/WER of ``result`` per value of a manifest field (e.g. ``"voice"``, ``"speaker"``, ``"engine"``).

    Every hypothesis of ``result`` is matched to its manifest entry by ``key``; each group is scored as a corpus
    (:func:`error_rates` of its utterances). Groups come sorted by name; entries without the field form the group
    ``"(none)"``.

    Returns
    -------
    dict
        ``{group: {"cer": ..., "wer": ..., "utterances": n}}``.

    Raises
    ------
    InvalidParameterError
        ``result`` holds no hypotheses (scored without keeping them), or a hypothesis whose key is not in the
        manifest (a result of another manifest or split).
    """
    if not result.hypotheses:
        raise InvalidParameterError(f"{result.system!r} holds no hypotheses to group: score it with "
                                    "evaluate_transcriber / evaluate_bundle, which keep them")
    entries = {str(e["key"]): e for e in load_manifest(manifest, split=split)}
    missing = [k for k in result.hypotheses if k not in entries]
    if missing:
        raise InvalidParameterError(f"{len(missing)} hypotheses of {result.system!r} have keys missing from the "
                                    f"manifest (first: {missing[0]!r}); group with the manifest and split scored")
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for key, hyp in result.hypotheses.items():
        e = entries[key]
        refs, hyps = groups.setdefault(str(e.get(field, "(none)")), ([], []))
        refs.append(str(e["txt"]))
        hyps.append(hyp)
    return {g: {**error_rates(r, h), "utterances": len(r)} for g, (r, h) in sorted(groups.items())}


def format_breakdown(breakdowns: dict[str, dict[str, dict[str, float]]], field: str) -> str:
    """A markdown table of :func:`error_rates_by` for several systems: one row per group, CER / WER per system."""
    systems = list(breakdowns)
    groups = sorted({g for b in breakdowns.values() for g in b})
    counts = {g: next(b[g]["utterances"] for b in breakdowns.values() if g in b) for g in groups}
    head = f"| {field} | utterances | " + " | ".join(f"{s} CER / WER %" for s in systems) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(systems)]
    for g in groups:
        cells = [f"{b[g]['cer']:.2f} / {b[g]['wer']:.2f}" if g in b else "" for b in breakdowns.values()]
        lines.append(f"| {g} | {int(counts[g])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
