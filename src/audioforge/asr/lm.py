"""Token n-gram language models for shallow fusion in the CTC prefix beam search.

:class:`NgramLM` estimates an interpolated modified Kneser-Ney model (Chen & Goodman 1998; the smoothing KenLM's
``lmplz`` and SRILM's ``-kndiscount -interpolate`` use) from token sequences, stores it in the ARPA back-off format
(readable by KenLM, SRILM, pocketsphinx) and answers ``log P(token | history)``. The model works on the recogniser's
own units (characters with ``"▁"`` between words, or BPE pieces), so it needs no lexicon and every hypothesis can be
scored while it grows, partial words included.

Estimation, per order ``n`` (``1..order``):

* adjusted counts: the raw count for the highest order and for n-grams that start with ``<s>``; otherwise the
  number of distinct tokens seen to the left (the continuation count);
* three discounts from the count-of-counts ``n1..n4`` of the adjusted counts: ``Y = n1 / (n1 + 2 n2)``,
  ``D1 = 1 - 2Y n2/n1``, ``D2 = 2 - 3Y n3/n2``, ``D3+ = 3 - 4Y n4/n3`` (a discount that cannot be computed or falls
  outside ``(0, k)`` is replaced by ``Y``, or 0.5 when ``Y`` is undefined, which happens only on toy corpora);
* ``p(w | h) = (a(hw) - D(a(hw))) / a(h.) + gamma(h) p(w | h[1:])`` with
  ``gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / a(h.)``; the unigrams interpolate with the uniform
  distribution over the vocabulary (every token, ``</s>`` and ``<unk>``, not ``<s>``).

The interpolated model is written exactly in back-off form: a stored n-gram holds its interpolated probability and
a context its ``gamma`` as back-off weight.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..audio import atomic_path
from ..errors import CheckpointError, InvalidParameterError

__all__ = ["BOS", "EOS", "LM_FILE", "UNK", "NgramLM", "TokenLM", "fusion_lm", "lm_from_any"]

BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"
LM_FILE = "lm.arpa.gz"  # its name in a bundle or an ONNX export folder
LN10 = math.log(10.0)
_CACHE_LIMIT = 2_000_000
_ARPA_NEG_INF = -99.0  # log10 probability KenLM writes for <s> (never predicted)


def _discounts(count_of_counts: Counter[int]) -> tuple[float, float, float]:
    n1, n2, n3, n4 = (count_of_counts.get(k, 0) for k in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else 0.5
    out = []
    for k, (num, den) in enumerate(((n2, n1), (n3, n2), (n4, n3)), start=1):
        d = k - (k + 1) * y * num / den if den > 0 else math.nan
        out.append(d if 0.0 < d < k else y)
    return out[0], out[1], out[2]


class NgramLM:
    """A back-off n-gram model over string tokens (natural-log probabilities).

    Build one with :meth:`estimate` or :meth:`from_arpa`; write it with :meth:`to_arpa`.

    Attributes
    ----------
    order
        The highest n-gram order.
    vocab
        The tokens it predicts besides ``</s>`` and ``<unk>`` (sorted).
    discounts
        The three modified Kneser-Ney discounts per order (empty for a model read from ARPA).
    """

    def __init__(self, order: int, probs: dict[tuple[str, ...], float], bows: dict[tuple[str, ...], float],
                 discounts: list[tuple[float, float, float]] | None = None) -> None:
        if order < 1:
            raise InvalidParameterError(f"order must be >= 1, got {order}")
        for sym in (EOS, UNK):
            if (sym,) not in probs:
                raise CheckpointError(f"the language model has no unigram {sym!r}")
        self.order = int(order)
        self.probs = probs  # n-gram -> ln p(last | rest)
        self.bows = bows  # context -> ln back-off weight (absent: 0)
        self.discounts = list(discounts or [])
        self.contexts = {g[:-1] for g in probs if len(g) > 1}  # histories some stored n-gram extends
        self.vocab = sorted(g[0] for g in probs if len(g) == 1 and g[0] not in (BOS, EOS, UNK))

    # ------------------------------------------------------------------------------------------------ estimation

    @classmethod
    def estimate(cls, sentences: Iterable[Sequence[str]], order: int = 6, *,
                 vocab: Iterable[str] | None = None, min_counts: Sequence[int] | None = None) -> NgramLM:
        """Estimate an interpolated modified Kneser-Ney model.

        Parameters
        ----------
        sentences
            Token sequences (one per sentence; ``<s>``/``</s>`` are added).
        order
            Highest order (>= 1).
        vocab
            Tokens to give probability mass even when unseen (e.g. the recogniser's whole symbol table).
        min_counts
            Count cut-off per order (``min_counts[n - 1]`` for order ``n``; unigrams are never pruned): an n-gram
            whose adjusted count is below it is dropped unless a longer kept n-gram needs it, and the back-off
            weights are recomputed so every context still sums to one. Default: keep everything.

        Raises
        ------
        InvalidParameterError
            ``order < 1``, no sentences, a token that is empty, holds whitespace or is a reserved symbol, or
            ``min_counts`` of the wrong length.
        """
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise InvalidParameterError(f"order must be an integer >= 1, got {order!r}")
        if min_counts is not None and (len(min_counts) != order or any(int(c) < 1 for c in min_counts)):
            raise InvalidParameterError(f"min_counts needs {order} counts >= 1 (one per order), got {min_counts!r}")
        raw: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order + 1)]
        seen_vocab: set[str] = set()
        n_sent = 0
        for sent in sentences:
            toks = [str(t) for t in sent]
            for t in toks:
                if t not in seen_vocab:
                    _check_token(t)
                    seen_vocab.add(t)
            padded = (BOS, *toks, EOS)
            n_sent += 1
            for n in range(1, order + 1):
                for i in range(len(padded) - n + 1):
                    raw[n][padded[i:i + n]] += 1
        if n_sent == 0:
            raise InvalidParameterError("estimate needs at least one sentence")
        for t in vocab or ():
            _check_token(str(t))
            seen_vocab.add(str(t))
        # adjusted counts
        adj: list[dict[tuple[str, ...], int]] = [{} for _ in range(order + 1)]
        adj[order] = dict(raw[order])
        for n in range(order - 1, 0, -1):
            left: Counter[tuple[str, ...]] = Counter()
            for g in raw[n + 1]:
                left[g[1:]] += 1
            a = adj[n]
            for g, c in raw[n].items():
                a[g] = c if g[0] == BOS else left.get(g, 0)
        adj[1].pop((BOS,), None)
        # estimate from the unigrams up
        predicted = sorted(seen_vocab | {EOS, UNK})
        probs: dict[tuple[str, ...], float] = {}
        bows: dict[tuple[str, ...], float] = {}
        all_d: list[tuple[float, float, float]] = []
        for n in range(1, order + 1):
            a = {g: c for g, c in adj[n].items() if c > 0}
            d1, d2, d3 = _discounts(Counter(a.values()))
            all_d.append((d1, d2, d3))

            def disc(c: int, d1: float = d1, d2: float = d2, d3: float = d3) -> float:
                return d1 if c == 1 else d2 if c == 2 else d3

            total: dict[tuple[str, ...], float] = defaultdict(float)
            removed: dict[tuple[str, ...], float] = defaultdict(float)
            for g, c in a.items():
                total[g[:-1]] += c
                removed[g[:-1]] += disc(c)
            if n == 1:
                t = total[()]
                gamma = removed[()] / t
                uniform = 1.0 / len(predicted)
                for w in predicted:
                    c = a.get((w,), 0)
                    p = (c - disc(c)) / t + gamma * uniform if c > 0 else gamma * uniform
                    probs[(w,)] = math.log(p)
                probs[(BOS,)] = _ARPA_NEG_INF * LN10
                continue
            for g, c in a.items():
                h = g[:-1]
                lower = math.exp(probs[g[1:]])
                p = (c - disc(c)) / total[h] + removed[h] / total[h] * lower
                probs[g] = math.log(p)
            for h, t in total.items():
                bows[h] = math.log(removed[h] / t)
        if min_counts is not None and any(int(c) > 1 for c in min_counts[1:]):
            _prune(order, probs, bows, adj, [int(c) for c in min_counts])
        return cls(order, probs, bows, all_d)

    # ------------------------------------------------------------------------------------------------ queries

    def log_prob(self, history: Sequence[str], token: str) -> float:
        """``ln P(token | history)`` by back-off (unknown tokens score as ``<unk>``; ``<s>`` may open the history)."""
        return _backoff_log_prob(self.probs, self.bows, self.order, history, token)

    def sentence_log_prob(self, tokens: Sequence[str], *, eos: bool = True) -> float:
        """``ln P`` of a whole sentence (``<s>`` first; ``</s>`` last when ``eos``)."""
        hist: list[str] = [BOS]
        total = 0.0
        for t in [*tokens, EOS] if eos else list(tokens):
            total += self.log_prob(hist, t)
            hist.append(t)
        return total

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        """Per-token perplexity (``</s>`` counted as a token, as KenLM and SRILM do)."""
        lp, n = 0.0, 0
        for s in sentences:
            lp += self.sentence_log_prob(s)
            n += len(s) + 1
        if n == 0:
            raise InvalidParameterError("perplexity needs at least one sentence")
        return math.exp(-lp / n)

    def bind(self, symbols: Sequence[str], *, weight: float = 0.5, bonus: float = 0.0) -> TokenLM:
        """A :class:`TokenLM` that scores the recogniser's token ids (``symbols[i]`` is token ``i``)."""
        return TokenLM(self, symbols, weight=weight, bonus=bonus)

    @property
    def num_ngrams(self) -> list[int]:
        """How many n-grams of each order are stored (index 0 = unigrams)."""
        counts = [0] * self.order
        for g in self.probs:
            counts[len(g) - 1] += 1
        return counts

    # ------------------------------------------------------------------------------------------------ ARPA

    def arpa_bytes(self, *, compress: bool = False) -> bytes:
        """The model as ARPA text (gzip-compressed when ``compress``), n-grams sorted within each order."""
        buf = io.StringIO()
        buf.write("\n\\data\\\n")
        by_order: list[list[tuple[str, ...]]] = [[] for _ in range(self.order)]
        for g in self.probs:
            by_order[len(g) - 1].append(g)
        for n, grams in enumerate(by_order, start=1):
            buf.write(f"ngram {n}={len(grams)}\n")
        for n, grams in enumerate(by_order, start=1):
            buf.write(f"\n\\{n}-grams:\n")
            for g in sorted(grams):
                lp = self.probs[g] / LN10
                line = f"{lp:.6g}\t{' '.join(g)}"
                if n < self.order and g in self.bows:
                    line += f"\t{self.bows[g] / LN10:.6g}"
                buf.write(line + "\n")
        buf.write("\n\\end\\\n")
        data = buf.getvalue().encode("utf-8")
        return gzip.compress(data, mtime=0) if compress else data

    def to_arpa(self, path: str | os.PathLike[str]) -> Path:
        """Write the ARPA file atomically (gzip when the name ends in ``.gz``) and return its path."""
        p = Path(path)
        data = self.arpa_bytes(compress=p.suffix == ".gz")
        with atomic_path(p) as tmp:
            tmp.write_bytes(data)
        return p

    @classmethod
    def from_arpa_bytes(cls, data: bytes, *, source: str = "ARPA data") -> NgramLM:
        """Read ARPA text (plain or gzip bytes)."""
        if data[:2] == b"\x1f\x8b":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise CheckpointError(f"{source}: broken gzip data ({exc})") from exc
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError(f"{source} is not UTF-8 text: {exc}") from exc
        return cls._parse_arpa(text.splitlines(), source)

    @classmethod
    def from_arpa(cls, path: str | os.PathLike[str]) -> NgramLM:
        """Read an ARPA file (``.gz`` too), e.g. one written by :meth:`to_arpa`, KenLM or SRILM.

        Raises
        ------
        CheckpointError
            The file is missing or is not a well-formed ARPA model.
        """
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"no language model file at {p}")
        return cls.from_arpa_bytes(p.read_bytes(), source=str(p))

    @classmethod
    def _parse_arpa(cls, lines: list[str], source: str) -> NgramLM:
        declared: dict[int, int] = {}
        probs: dict[tuple[str, ...], float] = {}
        bows: dict[tuple[str, ...], float] = {}
        section = 0  # 0: before \data\, -1: in \data\, n: in \n-grams:
        ended = False
        for lineno, raw_line in enumerate(lines, start=1):
            line = raw_line.strip()
            if not line:
                continue
            if line == "\\data\\":
                section = -1
                continue
            if line == "\\end\\":
                ended = True
                break
            if line.startswith("\\") and line.endswith("-grams:"):
                try:
                    section = int(line[1:-len("-grams:")])
                except ValueError as exc:
                    raise CheckpointError(f"{source}:{lineno}: bad section header {line!r}") from exc
                if section not in declared:
                    raise CheckpointError(f"{source}:{lineno}: section {section} is not declared in \\data\\")
                continue
            if section == -1:
                if line.startswith("ngram ") and "=" in line:
                    n, count = line[6:].split("=", 1)
                    declared[int(n)] = int(count)
                    continue
                raise CheckpointError(f"{source}:{lineno}: unexpected line in \\data\\: {line!r}")
            if section <= 0:
                continue  # text before \data\ is a comment
            parts = line.split()
            if len(parts) not in (section + 1, section + 2):
                raise CheckpointError(f"{source}:{lineno}: a {section}-gram line needs {section + 1} or "
                                      f"{section + 2} fields, got {len(parts)}")
            try:
                lp = float(parts[0])
                bow = float(parts[section + 1]) if len(parts) == section + 2 else None
            except ValueError as exc:
                raise CheckpointError(f"{source}:{lineno}: bad number in {line!r}") from exc
            g = tuple(parts[1:section + 1])
            probs[g] = lp * LN10
            if bow is not None and bow != 0.0:
                bows[g] = bow * LN10
        if not ended:
            raise CheckpointError(f"{source}: no \\end\\ marker (truncated file?)")
        if not declared:
            raise CheckpointError(f"{source}: no \\data\\ section; is this an ARPA language model?")
        counts = Counter(len(g) for g in probs)
        for n, c in declared.items():
            if counts.get(n, 0) != c:
                raise CheckpointError(f"{source}: \\data\\ declares {c} {n}-grams but the file holds "
                                      f"{counts.get(n, 0)}")
        if UNK not in {g[0] for g in probs if len(g) == 1}:
            probs[(UNK,)] = _ARPA_NEG_INF * LN10  # SRILM omits <unk> in closed-vocabulary models
        return cls(max(declared), probs, bows)


def _backoff_log_prob(probs: dict[tuple[str, ...], float], bows: dict[tuple[str, ...], float], order: int,
                      history: Sequence[str], token: str) -> float:
    """``ln P(token | history)`` in a back-off table (unknown tokens and ``<s>`` score as ``<unk>``)."""
    if (token,) not in probs or token == BOS:
        token = UNK
    ctx = tuple(history)[-(order - 1):] if order > 1 else ()
    total = 0.0
    while True:
        p = probs.get((*ctx, token))
        if p is not None:
            return total + p
        total += bows.get(ctx, 0.0)
        ctx = ctx[1:]


def _prune(order: int, probs: dict[tuple[str, ...], float], bows: dict[tuple[str, ...], float],
           adj: list[dict[tuple[str, ...], int]], min_counts: list[int]) -> None:
    """Count cut-off in place: drop rare n-grams (orders >= 2) no kept n-gram needs, then renormalise back-offs."""
    needed: set[tuple[str, ...]] = set()
    for n in range(order, 1, -1):
        floor = min_counts[n - 1]
        kept_next: set[tuple[str, ...]] = set()
        for g, c in adj[n].items():
            if c <= 0:
                continue
            if c >= floor or g in needed:
                kept_next.add(g)
            else:
                del probs[g]
        needed = {g[:-1] for g in kept_next} | {g[1:] for g in kept_next}
    # back-off weights from the pruned model, lower orders first (their probabilities are final by then)
    by_context: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for g in probs:
        if len(g) > 1:
            by_context[g[:-1]].append(g[-1])
    bows.clear()
    for h in sorted(by_context, key=len):
        words = by_context[h]
        kept = math.fsum(math.exp(probs[(*h, w)]) for w in words)
        lower = math.fsum(math.exp(_backoff_log_prob(probs, bows, order, h[1:], w)) for w in words)
        bows[h] = math.log(max(1.0 - kept, 1e-300) / max(1.0 - lower, 1e-300))


def _check_token(t: str) -> None:
    if not t or any(c.isspace() for c in t):
        raise InvalidParameterError(f"language model tokens must be non-empty and hold no whitespace, got {t!r}")
    if t in (BOS, EOS, UNK):
        raise InvalidParameterError(f"{t!r} is reserved in the language model; remove it from the sentences")


class TokenLM:
    """An :class:`NgramLM` seen through a recogniser's token ids, with integer states, for the prefix beam search.

    A state stands for the shortest suffix of the history that the model can still extend (what KenLM calls state
    minimisation), so equal futures share one state and one cache entry. States are small integers (0 is the
    sentence start) and scores are memoised per ``(state, token)``: after warm-up a step is one dict lookup. One
    instance may serve many decoding threads.

    Parameters
    ----------
    lm
        The model.
    symbols
        The recogniser's symbol table (``symbols[i]`` is token ``i``); symbols the model does not know score as
        ``<unk>``.
    weight, bonus
        Shallow fusion: every token a hypothesis grows by adds ``weight * ln P_lm(token | history) + bonus`` to its
        score, and a finished hypothesis adds ``weight * ln P_lm(</s> | history)``. The bonus offsets the
        language model's preference for short outputs.
    """

    def __init__(self, lm: NgramLM, symbols: Sequence[str], *, weight: float = 0.5, bonus: float = 0.0) -> None:
        for name, value in (("weight", weight), ("bonus", bonus)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidParameterError(f"language model {name} must be a finite number, got {value!r}")
        if weight < 0:
            raise InvalidParameterError(f"language model weight must be >= 0, got {weight}")
        self.lm = lm
        self.weight = float(weight)
        self.bonus = float(bonus)
        self.symbols = [str(s) for s in symbols]
        self._n = len(self.symbols)
        self._lock = threading.Lock()
        self._states: list[tuple[str, ...]] = []
        self._ids: dict[tuple[str, ...], int] = {}
        self.start: int = self._id(self._minimise((BOS,)))
        self._cache: dict[int, tuple[int, float]] = {}
        self._end_cache: dict[int, float] = {}

    def _minimise(self, history: tuple[str, ...]) -> tuple[str, ...]:
        h = history[-(self.lm.order - 1):] if self.lm.order > 1 else ()
        while h and h not in self.lm.contexts:
            h = h[1:]
        return h

    def _id(self, state: tuple[str, ...]) -> int:
        i = self._ids.get(state)
        if i is None:
            with self._lock:
                i = self._ids.get(state)
                if i is None:
                    self._states.append(state)
                    i = self._ids[state] = len(self._states) - 1
        return i

    def history(self, state: int) -> tuple[str, ...]:
        """The (minimised) token history a state stands for."""
        return self._states[state]

    def step(self, state: int, token: int) -> tuple[int, float]:
        """``(next_state, ln P(token | state))`` (unweighted)."""
        key = state * self._n + token if 0 <= token < self._n else -1 - state
        hit = self._cache.get(key)
        if hit is None:
            sym = self.symbols[token] if 0 <= token < self._n else UNK
            hist = self._states[state]
            lp = self.lm.log_prob(hist, sym)
            if len(self._cache) > _CACHE_LIMIT:
                self._cache.clear()
            hit = self._cache[key] = (self._id(self._minimise((*hist, sym))), lp)
        return hit

    def end(self, state: int) -> float:
        """``ln P(</s> | state)`` (unweighted)."""
        lp = self._end_cache.get(state)
        if lp is None:
            lp = self._end_cache[state] = self.lm.log_prob(self._states[state], EOS)
        return lp

    def reset_cache(self) -> None:
        """Drop the memoised scores (states stay valid)."""
        self._cache.clear()
        self._end_cache.clear()


def lm_from_any(lm: Any) -> NgramLM:
    """An :class:`NgramLM` from a model, an ARPA path, or ARPA bytes."""
    if isinstance(lm, NgramLM):
        return lm
    if isinstance(lm, (bytes, bytearray)):
        return NgramLM.from_arpa_bytes(bytes(lm))
    if isinstance(lm, (str, os.PathLike)):
        return NgramLM.from_arpa(lm)
    raise InvalidParameterError(f"expected an NgramLM, an ARPA path or ARPA bytes, got {type(lm).__name__}")


def fusion_lm(lm: NgramLM | None, symbols: Sequence[str], weight: float, bonus: float,
              cached: TokenLM | None = None) -> TokenLM | None:
    """The :class:`TokenLM` a recogniser decodes with, or None without a model or with ``weight == 0``.

    ``cached`` (the one returned last time) is returned again while model, weight and bonus are unchanged, so its
    score cache survives from one utterance to the next.
    """
    if lm is None or weight == 0.0:
        return None
    if cached is not None and cached.lm is lm and (cached.weight, cached.bonus) == (weight, bonus):
        return cached
    return lm.bind(symbols, weight=weight, bonus=bonus)
