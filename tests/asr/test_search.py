from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from audioforge.asr.search import (
    ContextGraph,
    CtcPrefixBeamSearch,
    attention_beam_search,
    attention_rescoring,
    ctc_greedy_search,
    ctc_prefix_beam_search,
    frames_to_seconds,
)

from .conftest import tiny_model


def random_log_probs(t: int, v: int, seed: int, sharp: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = sharp * rng.standard_normal((t, v))
    return logits - np.log(np.exp(logits).sum(1, keepdims=True))


def collapse(path: tuple[int, ...], blank: int = 0) -> tuple[int, ...]:
    out, prev = [], None
    for s in path:
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return tuple(out)


def exhaustive(lp: np.ndarray) -> dict[tuple[int, ...], float]:
    t, v = lp.shape
    probs: dict[tuple[int, ...], float] = {}
    p = np.exp(lp.astype(np.float64))
    for path in itertools.product(range(v), repeat=t):
        key = collapse(path)
        probs[key] = probs.get(key, 0.0) + float(np.prod(p[np.arange(t), path]))
    return {k: math.log(x) for k, x in probs.items()}


@pytest.mark.parametrize("seed", range(6))
def test_prefix_beam_search_equals_exhaustive_enumeration(seed: int) -> None:
    lp = random_log_probs(5, 4, seed, sharp=1.0 + seed * 0.5)
    truth = exhaustive(lp)
    ranked = sorted(truth.items(), key=lambda kv: kv[1], reverse=True)
    hyps = ctc_prefix_beam_search(lp, beam_size=200, nbest=5)
    assert hyps[0].tokens == ranked[0][0]
    assert abs(hyps[0].score - ranked[0][1]) < 1e-9
    for h in hyps:
        assert abs(h.ctc_score - truth[h.tokens]) < 1e-9
    # a realistic beam still finds the best on this tiny problem, with a torch input
    small = ctc_prefix_beam_search(torch.from_numpy(lp).float(), beam_size=4)
    assert small[0].tokens == ranked[0][0]


def test_incremental_search_equals_one_shot() -> None:
    lp = random_log_probs(30, 6, 7)
    one = ctc_prefix_beam_search(lp, beam_size=5)
    inc = CtcPrefixBeamSearch(5)
    for lo, hi in [(0, 4), (4, 5), (5, 30)]:
        inc.search(lp[lo:hi])
    two = inc.hypotheses(5, final=True)
    assert [h.tokens for h in one] == [h.tokens for h in two]
    assert [h.times for h in one] == [h.times for h in two]


def test_greedy_is_argmax_collapse() -> None:
    for seed in range(5):
        lp = random_log_probs(40, 7, seed)
        hyp = ctc_greedy_search(lp)
        assert hyp.tokens == collapse(tuple(lp.argmax(1).tolist()))
        assert hyp.score == pytest.approx(lp.max(1).sum())
    assert ctc_greedy_search(np.zeros((0, 4))).tokens == ()


def peaky(frames: list[tuple[int, float]], v: int = 5) -> np.ndarray:
    """One frame per entry: token id with probability p, the rest spread."""
    rows = []
    for tok, p in frames:
        row = np.full(v, (1 - p) / (v - 1))
        row[tok] = p
        rows.append(np.log(row))
    return np.array(rows)


def test_timestamps_are_token_peaks() -> None:
    lp = peaky([(0, 0.9), (2, 0.6), (2, 0.95), (0, 0.9), (0, 0.9), (3, 0.9), (0, 0.9), (3, 0.8)])
    for hyp in (ctc_prefix_beam_search(lp, 4)[0], ctc_greedy_search(lp)):
        assert hyp.tokens == (2, 3, 3)
        assert hyp.times == [2, 5, 7]
    assert frames_to_seconds([2, 5], 4) == [0.08, 0.2]


def test_hotword_boost_changes_result_only_when_relevant() -> None:
    # best path "1 2", second best "1 3": boosting the hotword [1, 3] flips the result
    lp = peaky([(1, 0.9), (0, 0.9), (2, 0.55), (0, 0.9)])
    lp[2, 3] = np.log(0.4)
    lp[2] -= np.logaddexp.reduce(lp[2])
    plain = ctc_prefix_beam_search(lp, 4)
    assert plain[0].tokens == (1, 2)
    biased = ctc_prefix_beam_search(lp, 4, context_graph=ContextGraph([[1, 3]], score=1.0))
    assert biased[0].tokens == (1, 3)
    assert biased[0].context_score == pytest.approx(2.0)
    # a hotword that does not occur changes nothing (its partial boost on "1" is removed again)
    absent = ctc_prefix_beam_search(lp, 4, context_graph=ContextGraph([[1, 4, 4]], score=1.0))
    assert [h.tokens for h in absent] == [h.tokens for h in plain]
    assert absent[0].score == pytest.approx(plain[0].score)


def test_context_graph_partial_match_is_taken_back() -> None:
    g = ContextGraph([[1, 2, 3], [1, 2]], score=2.0)
    s, d = g.forward(0, 1)
    assert d == 2.0
    s, d = g.forward(s, 2)  # completes [1, 2]: kept
    assert d == 2.0 and g.finalize(s) == 0.0
    s, d = g.forward(s, 4)  # [1, 2, 3] fails after a complete word: nothing taken back
    assert (s, d) == (0, 0.0)
    g2 = ContextGraph([[5, 6, 7]], score=1.5)
    s, _ = g2.forward(0, 5)
    s, _ = g2.forward(s, 6)
    s, d = g2.forward(s, 9)
    assert s == 0 and d == pytest.approx(-3.0)
    s, _ = g2.forward(0, 5)
    assert g2.finalize(s) == pytest.approx(-1.5)
    s, d = g2.forward(s, 5)  # fail then restart a match on the same token
    assert d == pytest.approx(0.0) and s != 0


def overfit_decoder(model, target: list[int], steps: int = 40) -> torch.Tensor:
    """Train only the decoder to emit ``target`` for a fixed encoder output."""
    torch.manual_seed(0)
    enc = torch.randn(1, 8, 64)
    params = list(model.decoder.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    ys = torch.tensor([target])
    model.train()
    for _ in range(steps):
        loss = model._att_loss(enc, torch.ones(1, 1, 8, dtype=torch.bool), ys, torch.tensor([len(target)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return enc


def test_rescoring_and_attention_search_follow_an_overfit_decoder() -> None:
    model = tiny_model(vocab_size=12, input_dim=20)
    target = [3, 5, 7]
    enc = overfit_decoder(model, target)
    # the CTC prefers (3, 6, 7); the decoder, overfit to (3, 5, 7), must win with a small ctc weight
    lp = peaky([(3, 0.9), (0, 0.9), (6, 0.5), (0, 0.9), (7, 0.9)], v=12)
    lp[2, 5] = np.log(0.45)
    lp[2] -= np.logaddexp.reduce(lp[2])
    hyps = ctc_prefix_beam_search(lp, 5)
    assert hyps[0].tokens == (3, 6, 7) and (3, 5, 7) in [h.tokens for h in hyps]
    rescored = attention_rescoring(model, hyps, enc, ctc_weight=0.1, reverse_weight=0.3)
    assert rescored[0].tokens == (3, 5, 7)
    assert rescored[0].att_score > rescored[1].att_score
    best = attention_beam_search(model, enc, beam_size=4)
    assert best.tokens == (3, 5, 7)


def test_two_and_three_term_log_add_match_the_generic_one_bit_for_bit() -> None:
    from audioforge.asr.search import _lae, _lae2, _lae3

    rng = np.random.default_rng(0)
    values = [*rng.normal(0, 30, 200).tolist(), -math.inf, 0.0, -1e-300, 700.0]
    for _ in range(2000):
        a, b, c = (values[i] for i in rng.integers(0, len(values), 3))
        assert _lae2(a, b) == _lae(a, b)
        assert _lae3(a, b, c) == _lae(a, b, c)
    assert _lae2(-math.inf, -math.inf) == -math.inf and _lae3(-math.inf, -math.inf, -math.inf) == -math.inf
