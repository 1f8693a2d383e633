"""Decoding for the U2 models: CTC greedy and prefix beam search (with timestamps and hotword biasing), attention
beam search and attention rescoring.

The CTC searches work on numpy (or torch, converted) log-posteriors and import no torch, so the onnxruntime
recogniser uses them too. Timestamps are encoder frame indices of each token's peak (the frame of its best
posterior on the best alignment); :func:`frames_to_seconds` converts them with ``subsampling_rate * frame_shift``.

Hotwords (:class:`ContextGraph`) are token sequences in a trie: while a prefix follows a hotword, every matched token
adds ``score``; when the match breaks, what the partial match added is taken back (full matches keep theirs).

A token n-gram language model (:class:`~audioforge.asr.lm.TokenLM`) joins the prefix beam search by shallow fusion:
each token a prefix grows by adds ``weight * ln P_lm + bonus`` to the ranking score, a finished hypothesis
``weight * ln P_lm(</s>)``; attention rescoring keeps that score next to the decoder's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidParameterError

if TYPE_CHECKING:
    from .lm import TokenLM

__all__ = [
    "ContextGraph",
    "CtcPrefixBeamSearch",
    "Hypothesis",
    "attention_beam_search",
    "attention_rescoring",
    "combine_rescoring_scores",
    "ctc_greedy_search",
    "ctc_prefix_beam_search",
    "frames_to_seconds",
]

NEG_INF = -math.inf


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _lae(*values: float) -> float:
    m = max(values)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(sum(math.exp(v - m) for v in values))


def _lae2(a: float, b: float) -> float:
    """``_lae(a, b)`` without the generic call's overhead (the same operations, so the same bits)."""
    m = a if a >= b else b
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def _lae3(a: float, b: float, c: float) -> float:
    """``_lae(a, b, c)`` without the generic call's overhead (the same operations, so the same bits)."""
    m = a if a >= b else b
    if c > m:
        m = c
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(math.exp(a - m) + math.exp(b - m) + math.exp(c - m))


@dataclass
class Hypothesis:
    """A decoding result.

    Attributes
    ----------
    tokens
        Token ids (no blank, no ``<sos/eos>``).
    score
        The ranking score (CTC log-probability plus hotword boosts; after rescoring the combined score).
    ctc_score
        ``log P_ctc(tokens)`` (summed over alignments; for greedy search the best path).
    times
        Encoder frame index of each token's peak.
    context_score
        Hotword boost included in ``score``.
    att_score, r_att_score
        Decoder log-probabilities (left-to-right, right-to-left) after rescoring.
    lm_score
        Language model fusion score included in ``score`` (``weight * ln P_lm + bonus * len(tokens)``).
    """

    tokens: tuple[int, ...]
    score: float
    ctc_score: float
    times: list[int] = field(default_factory=list)
    context_score: float = 0.0
    att_score: float = 0.0
    r_att_score: float = 0.0
    lm_score: float = 0.0


def frames_to_seconds(frames: Sequence[int], subsampling_rate: int, frame_shift_ms: float = 10.0) -> list[float]:
    """Encoder frame indices to seconds (``frame * subsampling_rate * frame_shift``)."""
    step = subsampling_rate * frame_shift_ms / 1000.0
    return [round(f * step, 6) for f in frames]


def ctc_greedy_search(log_probs: Any, length: int | None = None, blank_id: int = 0) -> Hypothesis:
    """Best path: argmax per frame, repeats merged, blanks removed.

    Parameters
    ----------
    log_probs
        ``(T, vocab)`` log-posteriors of one utterance.
    length
        Valid frames (default all).
    blank_id
        The blank token.
    """
    lp = _to_numpy(log_probs)
    if lp.ndim != 2:
        raise InvalidParameterError(f"log_probs must be (T, vocab), got shape {lp.shape}")
    lp = lp[: length if length is not None else lp.shape[0]]
    best = lp.argmax(axis=1) if lp.shape[0] else np.zeros(0, dtype=np.int64)
    tokens: list[int] = []
    times: list[int] = []
    prev = -1
    for t, s in enumerate(best.tolist()):
        if s != blank_id and s != prev:
            tokens.append(s)
            times.append(t)
        elif s == prev and s != blank_id and lp[t, s] > lp[times[-1], s]:
            times[-1] = t
        prev = s
    score = float(lp[np.arange(best.shape[0]), best].sum()) if best.shape[0] else 0.0
    return Hypothesis(tuple(tokens), score, score, times)


class ContextGraph:
    """A trie of hotwords (token id sequences) for biasing the CTC prefix beam search.

    Parameters
    ----------
    hotwords
        Token id sequences (empty ones are ignored).
    score
        Boost per matched token (natural log units).
    """

    def __init__(self, hotwords: Sequence[Sequence[int]], score: float = 3.0) -> None:
        if not math.isfinite(score):
            raise InvalidParameterError(f"score must be finite, got {score}")
        self.score = float(score)
        self.children: list[dict[int, int]] = [{}]
        self.is_end: list[bool] = [False]
        self.acc: list[float] = [0.0]  # boost added since the last complete hotword on the path
        for word in hotwords:
            node = 0
            for tok in word:
                tok = int(tok)
                nxt = self.children[node].get(tok)
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][tok] = nxt
                    self.children.append({})
                    self.is_end.append(False)
                    self.acc.append((0.0 if self.is_end[node] else self.acc[node]) + self.score)
                node = nxt
            if node:
                self.is_end[node] = True
                for child in self._descendants(node):  # a shorter hotword completes inside a longer one
                    self.acc[child] = self._recompute(child)

    def _descendants(self, node: int) -> list[int]:
        out, stack = [], list(self.children[node].values())
        while stack:
            n = stack.pop()
            out.append(n)
            stack.extend(self.children[n].values())
        return out

    def _recompute(self, node: int) -> float:
        parent = next(p for p, ch in enumerate(self.children) if node in ch.values())
        return (0.0 if self.is_end[parent] else self.acc[parent]) + self.score

    def _enter(self, state: int, token: int) -> tuple[int, float] | None:
        child = self.children[state].get(token)
        if child is None:
            return None
        return (child if self.children[child] else 0), self.score

    def forward(self, state: int, token: int) -> tuple[int, float]:
        """Next state and score change after ``token`` from ``state`` (0 is the root)."""
        step = self._enter(state, token)
        if step is not None:
            return step
        back = 0.0 if self.is_end[state] else -self.acc[state]
        if state != 0:
            again = self._enter(0, token)
            if again is not None:
                return again[0], back + again[1]
        return 0, back

    def finalize(self, state: int) -> float:
        """Score change at the end of the input: the boost of an unfinished match is removed."""
        return 0.0 if self.is_end[state] else -self.acc[state]


class _Prefix:
    __slots__ = ("ctx_score", "ctx_state", "lm_score", "lm_state", "pb", "peak", "pnb", "times_b", "times_nb", "vb",
                 "vnb")

    def __init__(self, ctx_state: int = 0, ctx_score: float = 0.0, lm_state: Any = None, lm_score: float = 0.0) -> None:
        self.pb = NEG_INF
        self.pnb = NEG_INF
        self.vb = NEG_INF
        self.vnb = NEG_INF
        self.times_b: list[int] = []
        self.times_nb: list[int] = []
        self.peak = NEG_INF
        self.ctx_state = ctx_state
        self.ctx_score = ctx_score
        self.lm_state = lm_state
        self.lm_score = lm_score

    def same(self) -> _Prefix:
        """An empty prefix state for the same token sequence (hotword and LM state carried over)."""
        return _Prefix(self.ctx_state, self.ctx_score, self.lm_state, self.lm_score)

    @property
    def total(self) -> float:
        return _lae2(self.pb, self.pnb)

    @property
    def times(self) -> list[int]:
        return self.times_b if self.vb > self.vnb else self.times_nb


class CtcPrefixBeamSearch:
    """Incremental CTC prefix beam search: feed log-posteriors chunk by chunk, read the n-best at any time.

    Parameters
    ----------
    beam_size
        Prefixes kept, and tokens tried per frame (the per-frame top-k).
    blank_id
        The blank token.
    context_graph
        Optional hotword biasing.
    lm
        Optional language model fusion (:meth:`audioforge.asr.lm.NgramLM.bind` gives one, with its weight and bonus).
    """

    def __init__(self, beam_size: int = 10, blank_id: int = 0, context_graph: ContextGraph | None = None,
                 lm: TokenLM | None = None) -> None:
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
            raise InvalidParameterError(f"beam_size must be an integer >= 1, got {beam_size!r}")
        self.beam_size = beam_size
        self.blank_id = blank_id
        self.context_graph = context_graph
        self.lm = lm
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new utterance)."""
        start = _Prefix(lm_state=self.lm.start if self.lm is not None else None)
        start.pb = 0.0
        start.vb = 0.0
        self._beam: dict[tuple[int, ...], _Prefix] = {(): start}
        self.num_frames = 0

    def _child(self, nxt: dict[tuple[int, ...], _Prefix], parent: _Prefix, key: tuple[int, ...]) -> _Prefix:
        """A new prefix ``key`` (``parent`` extended by ``key[-1]``), with its hotword state, added to ``nxt``."""
        state, score = parent.ctx_state, parent.ctx_score
        if self.context_graph is not None:
            state, delta = self.context_graph.forward(state, key[-1])
            score += delta
        lm_state, lm_score = parent.lm_state, parent.lm_score
        if self.lm is not None:
            lm_state, lp = self.lm.step(lm_state, key[-1])
            lm_score += self.lm.weight * lp + self.lm.bonus
        node = nxt[key] = _Prefix(state, score, lm_state, lm_score)
        return node

    def search(self, log_probs: Any) -> None:
        """Consume ``(T, vocab)`` log-posteriors (the next frames of the utterance)."""
        lp = _to_numpy(log_probs)
        if lp.ndim != 2:
            raise InvalidParameterError(f"log_probs must be (T, vocab), got shape {lp.shape}")
        k = min(self.beam_size, lp.shape[1])
        blank = self.blank_id
        beam_size = self.beam_size
        child = self._child
        for frame in lp:
            t = self.num_frames
            self.num_frames += 1
            top = np.argpartition(-frame, k - 1)[:k] if k < frame.shape[0] else np.arange(frame.shape[0])
            tokens = [(s, float(frame[s])) for s in top.tolist()]
            nxt: dict[tuple[int, ...], _Prefix] = {}
            for prefix, st in self._beam.items():
                last = prefix[-1] if prefix else -1
                for s, p in tokens:
                    if s == blank:
                        n = nxt.get(prefix)
                        if n is None:
                            n = nxt[prefix] = st.same()
                        n.pb = _lae3(n.pb, st.pb + p, st.pnb + p)
                        v, times = (st.vb, st.times_b) if st.vb > st.vnb else (st.vnb, st.times_nb)
                        if v + p > n.vb:
                            n.vb, n.times_b = v + p, times
                    elif s == last:
                        n = nxt.get(prefix)
                        if n is None:
                            n = nxt[prefix] = st.same()
                        n.pnb = _lae2(n.pnb, st.pnb + p)
                        if st.vnb + p > n.vnb:
                            n.vnb = st.vnb + p
                            if p > st.peak:
                                n.times_nb, n.peak = [*st.times_nb[:-1], t], p
                            else:
                                n.times_nb, n.peak = st.times_nb, st.peak
                        key = (*prefix, s)
                        m = nxt.get(key)
                        if m is None:
                            m = child(nxt, st, key)
                        m.pnb = _lae2(m.pnb, st.pb + p)
                        if st.vb + p > m.vnb:
                            m.vnb, m.times_nb, m.peak = st.vb + p, [*st.times_b, t], p
                    else:
                        key = (*prefix, s)
                        m = nxt.get(key)
                        if m is None:
                            m = child(nxt, st, key)
                        m.pnb = _lae3(m.pnb, st.pb + p, st.pnb + p)
                        v, times = (st.vb, st.times_b) if st.vb > st.vnb else (st.vnb, st.times_nb)
                        if v + p > m.vnb:
                            m.vnb, m.times_nb, m.peak = v + p, [*times, t], p
            ranked = sorted(nxt.items(), key=lambda kv: _lae2(kv[1].pb, kv[1].pnb) + kv[1].ctx_score + kv[1].lm_score,
                            reverse=True)
            self._beam = dict(ranked[:beam_size])

    def hypotheses(self, nbest: int | None = None, *, final: bool = False) -> list[Hypothesis]:
        """The current n-best, best first (``final``: unfinished hotword matches lose their boost and the language
        model scores the end of the sentence)."""
        out = []
        for prefix, st in self._beam.items():
            ctx = st.ctx_score
            if final and self.context_graph is not None:
                ctx += self.context_graph.finalize(st.ctx_state)
            lm = st.lm_score
            if final and self.lm is not None:
                lm += self.lm.weight * self.lm.end(st.lm_state)
            ctc = st.total
            out.append(Hypothesis(prefix, ctc + ctx + lm, ctc, list(st.times), ctx, lm_score=lm))
        out.sort(key=lambda h: h.score, reverse=True)
        return out[: nbest or len(out)]


def ctc_prefix_beam_search(
    log_probs: Any,
    beam_size: int = 10,
    *,
    nbest: int | None = None,
    length: int | None = None,
    blank_id: int = 0,
    context_graph: ContextGraph | None = None,
    lm: TokenLM | None = None,
) -> list[Hypothesis]:
    """CTC prefix beam search over one utterance's ``(T, vocab)`` log-posteriors; n-best list, best first.

    Parameters
    ----------
    beam_size
        Prefixes kept per frame and tokens tried per frame.
    nbest
        Hypotheses returned (default ``beam_size``).
    length
        Valid frames (default all).
    context_graph
        Hotword biasing.
    lm
        Language model fusion.
    """
    lp = _to_numpy(log_probs)
    if lp.ndim != 2:
        raise InvalidParameterError(f"log_probs must be (T, vocab), got shape {lp.shape}")
    searcher = CtcPrefixBeamSearch(beam_size, blank_id, context_graph, lm)
    searcher.search(lp[: length if length is not None else lp.shape[0]])
    return searcher.hypotheses(nbest or beam_size, final=True)


def combine_rescoring_scores(
    hyps: Sequence[Hypothesis],
    score: Any,
    r_score: Any,
    *,
    ctc_weight: float = 0.5,
    reverse_weight: float = 0.0,
) -> list[Hypothesis]:
    """Rescored copies of ``hyps``, best first:
    ``(1 - rw) * score + rw * r_score + ctc_weight * (hyp.ctc_score + hyp.context_score) + hyp.lm_score``.

    ``score`` / ``r_score`` are the decoder log-probabilities of each hypothesis followed by ``<eos>``; the language
    model's fusion score is kept as it is (its weight already applied).
    """
    s = _to_numpy(score).reshape(-1)
    r = _to_numpy(r_score).reshape(-1)
    out = []
    for h, a, b in zip(hyps, s.tolist(), r.tolist(), strict=True):
        total = (1.0 - reverse_weight) * a + reverse_weight * b + ctc_weight * (h.score - h.lm_score) + h.lm_score
        out.append(Hypothesis(h.tokens, total, h.ctc_score, list(h.times), h.context_score, a, b, h.lm_score))
    out.sort(key=lambda h: h.score, reverse=True)
    return out


def attention_rescoring(
    model: Any,
    hyps: Sequence[Hypothesis],
    encoder_out: Any,
    *,
    ctc_weight: float = 0.5,
    reverse_weight: float = 0.0,
) -> list[Hypothesis]:
    """Rescore CTC n-best ``hyps`` with the attention decoder of ``model`` (a :class:`~audioforge.asr.model.U2Model`).

    ``encoder_out`` ``(1, T, d)``. Returns the hypotheses re-ranked by :func:`combine_rescoring_scores`.
    """
    import torch

    if not hyps:
        return []
    hyps_in, lens = pad_hyps_with_sos([h.tokens for h in hyps], model.sos, model.eos)
    with torch.no_grad():
        score, r_score = model.score_hyps(
            torch.from_numpy(hyps_in), torch.from_numpy(lens), encoder_out, float(reverse_weight)
        )
    rw = reverse_weight if model.is_bidirectional else 0.0
    return combine_rescoring_scores(hyps, score, r_score, ctc_weight=ctc_weight, reverse_weight=rw)


def pad_hyps_with_sos(hyps: Sequence[Sequence[int]], sos: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, max_len + 1)`` int64 rows ``<sos> tokens pad...`` and lengths including the ``<sos>``."""
    width = 1 + max((len(h) for h in hyps), default=0)
    out = np.full((len(hyps), width), pad, dtype=np.int64)
    out[:, 0] = sos
    for i, h in enumerate(hyps):
        out[i, 1 : 1 + len(h)] = h
    return out, np.array([len(h) + 1 for h in hyps], dtype=np.int64)


def attention_beam_search(
    model: Any, encoder_out: Any, encoder_mask: Any | None = None, beam_size: int = 10, max_len: int | None = None
) -> Hypothesis:
    """Autoregressive beam search over the left-to-right decoder (no CTC); the best finished hypothesis.

    ``encoder_out`` ``(1, T, d)``; ``max_len`` defaults to ``T`` tokens.
    """
    import torch

    if encoder_mask is None:
        encoder_mask = torch.ones((1, 1, encoder_out.size(1)), dtype=torch.bool)
    max_len = max_len if max_len is not None else max(int(encoder_out.size(1)), 1)
    sos, eos = model.sos, model.eos
    alive: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    ended: list[tuple[tuple[int, ...], float]] = []
    with torch.no_grad():
        for _ in range(max_len):
            n = len(alive)
            tgt = torch.tensor([[sos, *toks] for toks, _ in alive], dtype=torch.long)
            logp = model.decoder.forward_one_step(encoder_out.expand(n, -1, -1), encoder_mask.expand(n, -1, -1), tgt)
            vals, ids = logp.topk(min(beam_size, logp.size(1)), dim=1)
            cands = [
                (toks, score + float(v), int(i))
                for (toks, score), row_v, row_i in zip(alive, vals, ids, strict=True)
                for v, i in zip(row_v, row_i, strict=True)
            ]
            cands.sort(key=lambda c: c[1], reverse=True)
            alive = []
            for toks, score, tok in cands[:beam_size]:
                if tok == eos:
                    ended.append((toks, score))
                else:
                    alive.append(((*toks, tok), score))
            best_end = max((s for _, s in ended), default=NEG_INF)
            if not alive or best_end >= max(s for _, s in alive):
                break
    pool = ended or alive
    toks, score = max(pool, key=lambda c: c[1])
    return Hypothesis(toks, score, 0.0, [], 0.0, score)
