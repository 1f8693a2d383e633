"""The token n-gram language model: Kneser-Ney estimation against a float64 reference, ARPA I/O, and fusion in the
CTC prefix beam search (scores equal the model's own sentence scores; weight 0 changes nothing)."""

from __future__ import annotations

import gzip
import math
from collections import Counter

import numpy as np
import pytest
import torch

from audioforge.asr.infer import Recognizer
from audioforge.asr.lm import BOS, EOS, LM_FILE, UNK, NgramLM
from audioforge.asr.search import ctc_prefix_beam_search
from audioforge.asr.streaming import DecodingConfig
from audioforge.asr.tokenizer import CharTokenizer
from audioforge.errors import CheckpointError, InvalidParameterError

from .conftest import tiny_model

SYMBOLS = ["<blank>", "<unk>", *"abcdefghijklmnopqrstuvwxyz", "▁", "<sos/eos>"]
PHRASES = ["the cat sat", "a dog ran far", "the dog sat on the mat", "cats and dogs", "far far away", "the end",
           "a cat and a dog", "on and on"]


def corpus(n: int = 300, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [list(PHRASES[i].replace(" ", "▁")) for i in rng.integers(0, len(PHRASES), n)]


# ------------------------------------------------------------------------------------------- float64 reference


def reference_kn(sentences: list[list[str]], order: int, extra_vocab: list[str]):
    """Interpolated modified Kneser-Ney written straight from Chen & Goodman's formulas, in float64 recursion over
    raw counts (no back-off tables): the independent reference for NgramLM.estimate."""
    padded = [(BOS, *s, EOS) for s in sentences]
    raw: list[Counter] = [Counter() for _ in range(order + 1)]
    for s in padded:
        for n in range(1, order + 1):
            for i in range(len(s) - n + 1):
                raw[n][s[i:i + n]] += 1

    def adjusted(n: int, g: tuple) -> int:
        if n == order or g[0] == BOS:
            return raw[n][g]
        return len({x[0] for x in raw[n + 1] if x[1:] == g})

    adj = [{g: adjusted(n, g) for g in raw[n]} if n else {} for n in range(order + 1)]
    adj[1].pop((BOS,), None)
    vocab = sorted({t for s in sentences for t in s} | set(extra_vocab) | {EOS, UNK})

    def discounts(n: int) -> tuple[float, float, float]:
        cc = Counter(c for c in adj[n].values() if c > 0)
        n1, n2, n3, n4 = (cc.get(k, 0) for k in (1, 2, 3, 4))
        y = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
        ds = []
        for k, num, den in ((1, n2, n1), (2, n3, n2), (3, n4, n3)):
            d = k - (k + 1) * y * num / den if den else math.nan
            ds.append(d if 0 < d < k else y)
        return ds[0], ds[1], ds[2]

    def prob(w: str, h: tuple) -> float:
        n = len(h) + 1
        if n > 1 and sum(c for g, c in adj[n].items() if g[:-1] == h) == 0:
            return prob(w, h[1:])  # an unseen history: the shorter one
        d = discounts(n)
        ext = {g[-1]: c for g, c in adj[n].items() if g[:-1] == h and c > 0}
        total = sum(ext.values())
        gamma = sum(d[min(c, 3) - 1] for c in ext.values()) / total
        c = ext.get(w, 0)
        main = (c - d[min(c, 3) - 1]) / total if c else 0.0
        lower = 1.0 / len(vocab) if n == 1 else prob(w, h[1:])
        return main + gamma * lower

    return prob, vocab


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kneser_ney_equals_float64_reference(order: int) -> None:
    sents = corpus(120)
    lm = NgramLM.estimate(sents, order, vocab=["x", "y"])
    prob, vocab = reference_kn(sents, order, ["x", "y"])
    assert sorted([*lm.vocab, EOS, UNK]) == vocab
    histories = {()} | {tuple(s[max(0, i - order + 1):i]) for s in [[BOS, *x] for x in sents[:20]]
                        for i in range(1, len(s) + 1)}
    histories |= {(BOS,), ("q",), ("a", "x"), (BOS, "z", "a")}  # unseen ones back off
    for h in histories:
        for w in vocab:
            want = prob(w, h[-(order - 1):] if order > 1 else ())
            got = math.exp(lm.log_prob(h, w))
            assert got == pytest.approx(want, rel=1e-12), (h, w)


def test_every_context_sums_to_one_and_perplexity_falls_with_order() -> None:
    sents = corpus(300)
    ppl = []
    for order in (1, 2, 3, 5):
        lm = NgramLM.estimate(sents, order, vocab=list("xyz"))
        outcomes = [*lm.vocab, EOS, UNK]
        for h in [(), *lm.contexts]:
            assert math.fsum(math.exp(lm.log_prob(h, w)) for w in outcomes) == pytest.approx(1.0, abs=1e-12)
        assert lm.num_ngrams[0] == len(outcomes) + 1  # with <s>
        ppl.append(lm.perplexity(corpus(50, seed=1)))
    assert ppl == sorted(ppl, reverse=True) and ppl[-1] < 2.0 < ppl[0]


def test_count_cutoff_keeps_the_model_normalised_and_well_formed() -> None:
    sents = [*corpus(300), list("zebra▁quiz▁jumps")]
    full = NgramLM.estimate(sents, 5)
    same = NgramLM.estimate(sents, 5, min_counts=[1] * 5)
    assert same.probs == full.probs and same.bows == full.bows
    pruned = NgramLM.estimate(sents, 5, min_counts=[1, 1, 2, 3, 3])
    assert pruned.num_ngrams[:2] == full.num_ngrams[:2]
    assert all(p < f for p, f in zip(pruned.num_ngrams[3:], full.num_ngrams[3:], strict=True))
    for g in pruned.probs:  # ARPA needs every kept n-gram's history and suffix
        if len(g) > 1:
            assert g[:-1] in pruned.probs and g[1:] in pruned.probs
    for g, lp in pruned.probs.items():
        assert lp == full.probs[g]  # kept n-grams keep their interpolated probability
    outcomes = [*pruned.vocab, EOS, UNK]
    for h in [(), *pruned.contexts, *full.contexts]:
        assert math.fsum(math.exp(pruned.log_prob(h, w)) for w in outcomes) == pytest.approx(1.0, abs=1e-12)
    assert full.perplexity(sents[:50]) <= pruned.perplexity(sents[:50])
    with pytest.raises(InvalidParameterError, match="min_counts"):
        NgramLM.estimate(sents, 3, min_counts=[1, 2])


def test_arpa_roundtrip_plain_and_gzip(tmp_path) -> None:
    lm = NgramLM.estimate(corpus(200), 4)
    for name in ("lm.arpa", "lm.arpa.gz"):
        path = lm.to_arpa(tmp_path / name)
        data = path.read_bytes()
        assert (data[:2] == b"\x1f\x8b") == name.endswith(".gz")
        text = (gzip.decompress(data) if name.endswith(".gz") else data).decode()
        assert text.lstrip().startswith("\\data\\") and text.rstrip().endswith("\\end\\")
        again = NgramLM.from_arpa(path)
        assert again.order == 4 and again.num_ngrams == lm.num_ngrams
        for s in corpus(20, seed=2):
            assert again.sentence_log_prob(s) == pytest.approx(lm.sentence_log_prob(s), abs=1e-4)
    assert lm.arpa_bytes(compress=True) == lm.arpa_bytes(compress=True)  # reproducible bytes


def test_kenlm_reads_our_arpa_with_the_same_scores(tmp_path) -> None:
    kenlm = pytest.importorskip("kenlm")  # optional: the query library of KenLM, where installed
    for min_counts in (None, [1, 1, 2, 3, 3]):
        lm = NgramLM.estimate(corpus(200), 5, min_counts=min_counts)
        path = lm.to_arpa(tmp_path / "lm.arpa")
        ref = kenlm.Model(str(path))
        assert ref.order == 5
        for s in [*corpus(30, seed=3), list("zzz▁qq"), list("the▁cab")]:
            want = ref.score(" ".join(s), bos=True, eos=True) * math.log(10)
            assert lm.sentence_log_prob(s) == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "no \\\\data\\\\ section|no \\\\end"),
        ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t</s>\n-1\t<unk>\n", "no \\\\end"),
        ("\\data\\\nngram 1=3\n\n\\1-grams:\n-1\t</s>\n-1\t<unk>\n\\end\\\n", "declares 3 1-grams"),
        ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t</s>\nabc\t<unk>\n\\end\\\n", "bad number"),
        ("\\data\\\nngram 1=2\n\n\\2-grams:\n-1\t</s>\n\\end\\\n", "not declared"),
        ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\t<unk>\n\\end\\\n", "no unigram '</s>'"),
    ],
)
def test_malformed_arpa_is_a_checkpoint_error(tmp_path, text: str, match: str) -> None:
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(CheckpointError, match=match):
        NgramLM.from_arpa(path)
    with pytest.raises(CheckpointError, match="no language model file"):
        NgramLM.from_arpa(tmp_path / "missing.arpa")
    with pytest.raises(CheckpointError, match="gzip"):
        NgramLM.from_arpa_bytes(b"\x1f\x8b broken")


def test_bad_estimation_input() -> None:
    with pytest.raises(InvalidParameterError, match="order"):
        NgramLM.estimate(corpus(5), 0)
    with pytest.raises(InvalidParameterError, match="at least one sentence"):
        NgramLM.estimate([], 3)
    with pytest.raises(InvalidParameterError, match="whitespace"):
        NgramLM.estimate([["a b"]], 2)
    with pytest.raises(InvalidParameterError, match="reserved"):
        NgramLM.estimate([["a", "</s>"]], 2)
    lm = NgramLM.estimate(corpus(5), 2)
    for kw in ({"weight": -1.0}, {"weight": math.nan}, {"bonus": math.inf}):
        with pytest.raises(InvalidParameterError, match="language model"):
            lm.bind(SYMBOLS, **kw)
    with pytest.raises(InvalidParameterError, match="lm_weight"):
        DecodingConfig(lm_weight=-0.1)


# ------------------------------------------------------------------------------------------- fusion


def posteriors(seed: int = 0, frames: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(frames, len(SYMBOLS) - 1))
    logits[:, 0] += 1.0
    x = logits - logits.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("weight, bonus", [(0.7, 0.0), (0.3, 1.5)])
def test_fusion_scores_equal_the_models_sentence_scores(weight: float, bonus: float) -> None:
    lm = NgramLM.estimate(corpus(300), 4)
    tok = lm.bind(SYMBOLS, weight=weight, bonus=bonus)
    hyps = ctc_prefix_beam_search(posteriors(), 8, lm=tok)
    assert len(hyps) == 8
    for h in hyps:
        words = [SYMBOLS[t] for t in h.tokens]
        want = weight * lm.sentence_log_prob(words) + bonus * len(words)
        assert h.lm_score == pytest.approx(want, abs=1e-9)
        assert h.score == pytest.approx(h.ctc_score + h.lm_score, abs=1e-9)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_weight_zero_or_no_model_changes_nothing_and_a_strong_model_steers() -> None:
    lp = posteriors(1)
    plain = ctc_prefix_beam_search(lp, 8)
    lm = NgramLM.estimate([list("aaaa")] * 50, 3)
    assert [(h.tokens, h.score) for h in ctc_prefix_beam_search(lp, 8, lm=lm.bind(SYMBOLS, weight=0.0))] == \
        [(h.tokens, h.score) for h in plain]
    steered = ctc_prefix_beam_search(lp, 8, lm=lm.bind(SYMBOLS, weight=3.0, bonus=2.0))[0]
    a = SYMBOLS.index("a")
    assert sum(t == a for t in steered.tokens) > sum(t == a for t in plain[0].tokens)


@pytest.fixture(scope="module")
def lm_recognizer() -> Recognizer:
    model = tiny_model(vocab_size=len(SYMBOLS))
    with torch.no_grad():
        model.ctc.ctc_lo.bias[0] -= 3.0
    cfg = DecodingConfig(chunk_size=4, num_left_chunks=2, beam_size=4, nbest=4, reverse_weight=0.3, lm_weight=0.8,
                         lm_bonus=0.5)
    return Recognizer(model, CharTokenizer(SYMBOLS), config=cfg, lm=NgramLM.estimate(corpus(300), 4))


def test_recognizer_streams_with_the_lm_as_it_transcribes_and_bundles_it(lm_recognizer: Recognizer, tmp_path) -> None:
    audio = (0.1 * np.random.default_rng(5).standard_normal(16000)).astype(np.float32)
    offline = lm_recognizer.transcribe(audio, 16000, simulate_streaming=True)
    session = lm_recognizer.stream()
    for i in range(0, audio.size, 1234):
        session.accept_waveform(audio[i:i + 1234])
    final = session.finalize()
    assert final.tokens == offline.tokens and [t for t, _ in final.nbest] == [t for t, _ in offline.nbest]
    without = Recognizer(lm_recognizer.model, lm_recognizer.tokenizer, config=lm_recognizer.config)
    assert without.transcribe(audio, 16000, simulate_streaming=True).nbest != offline.nbest
    path = lm_recognizer.to_bundle().save(tmp_path / "asr")
    assert (path / LM_FILE).is_file()
    again = Recognizer.from_bundle(path)
    assert again.lm is not None and again.lm.num_ngrams == lm_recognizer.lm.num_ngrams
    redo = again.transcribe(audio, 16000, simulate_streaming=True).nbest
    assert [t for t, _ in redo] == [t for t, _ in offline.nbest]
    assert np.allclose([s for _, s in redo], [s for _, s in offline.nbest], atol=1e-4)
    off = Recognizer.from_bundle(path, lm_weight=0.0)
    assert off.fusion() is None
    assert off.transcribe(audio, 16000, simulate_streaming=True).nbest == \
        without.transcribe(audio, 16000, simulate_streaming=True).nbest


def test_one_token_lm_serves_many_threads_with_the_results_of_one() -> None:
    from concurrent.futures import ThreadPoolExecutor

    lm = NgramLM.estimate(corpus(300), 5)
    inputs = [posteriors(seed, 60) for seed in range(8)]
    want = [[(h.tokens, h.score) for h in ctc_prefix_beam_search(lp, 6, lm=lm.bind(SYMBOLS, weight=0.6, bonus=0.5))]
            for lp in inputs]
    shared = lm.bind(SYMBOLS, weight=0.6, bonus=0.5)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda lp: [(h.tokens, h.score) for h in ctc_prefix_beam_search(lp, 6, lm=shared)],
                            inputs * 3))
    assert got == want * 3
    for state in range(len(shared._states)):  # every state id stands for its own history
        assert shared._ids[shared.history(state)] == state
