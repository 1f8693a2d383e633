"""A language model for a recogniser: estimated on its own tokens, tuned on held-out utterances, put in its bundle.

* :func:`estimate_token_lm` tokenises sentences with the recogniser's tokenizer and estimates the n-gram model;
* :func:`tune_lm_fusion` picks the fusion weight and bonus: the encoder runs once per utterance (streaming, chunk by
  chunk, as deployed); every ``(weight, bonus)`` of the grid then only repeats the CTC prefix beam search and the
  attention rescoring, and is scored by corpus CER / WER;
* :func:`attach_lm` writes the model and the chosen weights into a bundle (``lm.arpa.gz`` and its decoding settings).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..audio import load
from ..bundle import Bundle
from ..corpora.manifest import Manifest
from ..errors import InvalidParameterError
from .evaluate import error_rates
from .infer import Recognizer
from .lm import LM_FILE, NgramLM
from .search import attention_rescoring, ctc_prefix_beam_search
from .tokenizer import Tokenizer

__all__ = ["FusionPoint", "attach_lm", "estimate_token_lm", "tune_lm_fusion"]


def estimate_token_lm(
    tokenizer: Tokenizer,
    sentences: Iterable[str],
    order: int = 6,
    *,
    min_counts: Sequence[int] | None = None,
) -> tuple[NgramLM, dict[str, int]]:
    """The n-gram model of ``sentences`` (transcript-normalised text) in ``tokenizer``'s units.

    Sentences with a character the tokenizer does not know are skipped (they would teach the model ``<unk>``).
    Returns the model and ``{"sentences": used, "skipped": n, "tokens": n}``.

    Raises
    ------
    InvalidParameterError
        No usable sentence, or bad ``order`` / ``min_counts``.
    """
    specials = {tokenizer.id_to_token(i) for i in (tokenizer.blank_id, tokenizer.unk_id, tokenizer.sos_id,
                                                   tokenizer.eos_id)}
    seqs: list[list[str]] = []
    skipped = 0
    for text in sentences:
        ids = tokenizer.encode(text)
        if not ids:
            continue
        if tokenizer.unk_id in ids:
            skipped += 1
            continue
        seqs.append(tokenizer.tokens(ids))
    if not seqs:
        raise InvalidParameterError(f"no usable sentence for the language model ({skipped} had unknown characters)")
    lm = NgramLM.estimate(seqs, order, vocab=[s for s in tokenizer.symbols if s not in specials],
                          min_counts=min_counts)
    return lm, {"sentences": len(seqs), "skipped": skipped, "tokens": sum(len(x) for x in seqs)}


def attach_lm(
    bundle: Bundle | str | os.PathLike[str],
    lm: NgramLM,
    *,
    weight: float,
    bonus: float,
    info: dict[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Bundle:
    """Put ``lm`` and its fusion ``weight`` / ``bonus`` into an ASR bundle and save it (to ``out``, default in place).

    ``info`` (sizes, text, tuning) is kept in the bundle's ``options["lm"]``.
    """
    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    if b.task != "asr":
        raise InvalidParameterError(f"a language model goes into an ASR bundle, not a {b.task!r} one")
    lm.bind(b.labels, weight=weight, bonus=bonus)  # validates the weights
    b.extra_files[LM_FILE] = lm.arpa_bytes(compress=True)
    b.options["decoding"] = {**(b.options.get("decoding") or {}), "lm_weight": float(weight), "lm_bonus": float(bonus)}
    b.options["lm"] = {"order": lm.order, "ngrams": lm.num_ngrams, **(info or {})}
    target = out if out is not None else b.path
    if target is None:
        raise InvalidParameterError("the bundle was built in memory: pass out=FOLDER to save it")
    b.save(target, overwrite=True)
    return b


@dataclass
class FusionPoint:
    """CER / WER (percent) of one ``(weight, bonus)`` setting."""

    weight: float
    bonus: float
    cer: float
    wer: float


def tune_lm_fusion(
    rec: Recognizer,
    manifest: Manifest,
    *,
    weights: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8),
    bonuses: Sequence[float] = (0.0, 0.5, 1.0, 1.5),
    streaming: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[FusionPoint, list[FusionPoint]]:
    """Score every ``(weight, bonus)`` on ``manifest`` (entries with ``wav`` and ``txt``); the best point first.

    The best point has the lowest CER, ties broken by WER. ``weight=0`` is the recogniser without the language
    model (its bonus is then irrelevant and only scored once). ``progress(done, total)`` is called after every
    utterance encoded and every grid point scored.

    Raises
    ------
    InvalidParameterError
        The recogniser has no language model, the manifest is empty, or the grid is empty or negative.
    """
    if rec.lm is None:
        raise InvalidParameterError("the recogniser has no language model to tune; pass lm=... or load a bundle "
                                    "with one")
    if len(manifest) == 0:
        raise InvalidParameterError("the tuning manifest is empty")
    if not weights or not bonuses or any(w < 0 for w in weights):
        raise InvalidParameterError(f"need weights >= 0 and bonuses, got {list(weights)} and {list(bonuses)}")
    cfg = rec.config
    grid = [(0.0, 0.0)] if 0.0 in weights else []
    grid += [(float(w), float(b)) for w, b in itertools.product(weights, bonuses) if w > 0]
    steps = len(manifest) + len(grid)
    encoded, refs = [], []
    for i, e in enumerate(manifest):
        audio, sr = load(manifest.audio_path(e))
        encoded.append(rec.encode(audio, sr, simulate_streaming=streaming))
        refs.append(e["txt"])
        if progress is not None:
            progress(i + 1, steps)
    points = []
    for k, (w, b) in enumerate(grid):
        fusion = rec.lm.bind(rec.tokenizer.symbols, weight=w, bonus=b) if w > 0 else None
        hyps_text = []
        for item in encoded:
            if item is None:
                hyps_text.append("")
                continue
            out, logp = item
            hyps = ctc_prefix_beam_search(logp, cfg.beam_size, nbest=cfg.nbest, lm=fusion)
            if cfg.rescoring and hyps:
                hyps = attention_rescoring(rec.model, hyps, out, ctc_weight=cfg.ctc_weight,
                                           reverse_weight=cfg.reverse_weight)
            hyps_text.append(rec.tokenizer.decode(hyps[0].tokens) if hyps else "")
        rates = error_rates(refs, hyps_text)
        points.append(FusionPoint(w, b, rates["cer"], rates["wer"]))
        if progress is not None:
            progress(len(manifest) + k + 1, steps)
    best = min(points, key=lambda p: (p.cer, p.wer))
    return best, points
