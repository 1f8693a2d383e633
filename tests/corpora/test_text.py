"""Sentence sources, normalisation (numbers to words), templates, pool determinism and sentence splits."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audioforge.corpora import text as T
from audioforge.errors import InvalidParameterError

TXT_RE = re.compile(r"[a-z]+(?:'[a-z]+)*(?: [a-z]+(?:'[a-z]+)*)*")


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (42, "forty two"), (100, "one hundred"),
        (101, "one hundred one"), (999, "nine hundred ninety nine"), (1000, "one thousand"),
        (1234, "one thousand two hundred thirty four"), (1_000_000, "one million"),
        (2_000_017, "two million seventeen"), (-5, "minus five"),
    ],
)
def test_number_to_words(n: int, words: str) -> None:
    assert T.number_to_words(n) == words


def test_number_to_words_rejects_huge() -> None:
    with pytest.raises(InvalidParameterError, match="digit by digit"):
        T.number_to_words(10**15)


@pytest.mark.parametrize(("n", "words"), [(1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (12, "twelfth"),
                                          (20, "twentieth"), (21, "twenty first"), (100, "one hundredth")])
def test_ordinals(n: int, words: str) -> None:
    assert T.ordinal_to_words(n) == words


@pytest.mark.parametrize(("n", "words"), [(1999, "nineteen ninety nine"), (2005, "two thousand five"),
                                          (1900, "nineteen hundred"), (1805, "eighteen oh five"),
                                          (2024, "twenty twenty four"), (2000, "two thousand")])
def test_years(n: int, words: str) -> None:
    assert T.year_to_words(n) == words


@pytest.mark.parametrize(
    ("text", "txt"),
    [
        ("Dr. Smith paid $3.50 at 7:05 PM on May 3rd, 1999!",
         "doctor smith paid three dollars and fifty cents at seven oh five p m on may third nineteen ninety nine"),
        ('In the 1990s, 25% of 1,200 people said "No."',
         "in the nineteen nineties twenty five percent of one thousand two hundred people said no"),
        ("It's 10:00 a.m. -- time for No. 5 at St. Paul's.", "it's ten a m time for number five at saint paul's"),
        ("A well-known man (really)...", "a well known man really"),
        ("Call 555-123-4567 now", "call five five five one two three four five six seven now"),
        ("Café naïve résumé", "cafe naive resume"),
        ("3.14 & 1/2", "three point one four and one half"),
        ("It is -5 degrees", "it is minus five degrees"),
        ("Meet me at 3 pm.", "meet me at three p m"),
        ("The 'quoted' word", "the quoted word"),
    ],
)
def test_normalize_text(text: str, txt: str) -> None:
    assert T.normalize_text(text) == txt


@pytest.mark.parametrize("text", ["see http://example.com", "Henry VIII", "a_b", "mail me@example.org", "", "!!!",
                                  "Привет мир"])
def test_unreadable_text_is_rejected(text: str) -> None:
    assert T.normalize_text(text) is None


def test_spoken_form_keeps_prosody_and_matches_transcript() -> None:
    spoken = T.spoken_form("Well, Mr. Jones: is it 5 o'clock?")
    assert spoken == "well, mister jones, is it five o'clock?"
    assert T.normalize_text("Well, Mr. Jones: is it 5 o'clock?") == "well mister jones is it five o'clock"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_normalize_output_is_always_lowercase_words(text: str) -> None:
    txt = T.normalize_text(text)
    assert txt is None or TXT_RE.fullmatch(txt), txt


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_numbers_in_text_become_words(n: int) -> None:
    txt = T.normalize_text(f"the value is {n} today")
    assert txt is not None and TXT_RE.fullmatch(txt) and not re.search(r"\d", txt)


def test_templates_are_deterministic_and_normalised() -> None:
    a = T.template_sentences(300, seed=3)
    b = T.template_sentences(300, seed=3)
    c = T.template_sentences(300, seed=4)
    assert a == b and a != c
    assert len({s.txt for s in a}) > 250
    for s in a:
        assert s.source == "templates" and TXT_RE.fullmatch(s.txt)
        assert T.normalize_text(s.text) == s.txt


def test_fortune_source() -> None:
    sents = list(T.fortune_sentences())
    assert len(sents) > 800
    assert all(TXT_RE.fullmatch(s.txt) for s in sents)
    assert not any(s.text.lstrip().startswith("--") for s in sents)


def test_small_pool_is_deterministic_deduplicated_and_bounded() -> None:
    a = T.sentence_pool(5, sources=("fortune", "templates"), n_templates=3000, max_words=20)
    b = T.sentence_pool(5, sources=("fortune", "templates"), n_templates=3000, max_words=20)
    c = T.sentence_pool(6, sources=("fortune", "templates"), n_templates=3000, max_words=20)
    assert [s.txt for s in a] == [s.txt for s in b]
    assert [s.txt for s in a] != [s.txt for s in c]
    assert len({s.txt for s in a}) == len(a)
    assert all(3 <= s.n_words <= 20 for s in a)
    assert {s.source for s in a} == {"fortune", "templates"}
    assert T.sentence_pool(5, sources=("fortune", "templates"), n_templates=3000, max_words=20, limit=10) == a[:10]


def test_unknown_source_and_bad_limits() -> None:
    with pytest.raises(InvalidParameterError, match="unknown sentence source"):
        T.sentence_pool(0, sources=("novels",))
    with pytest.raises(InvalidParameterError):
        T.sentence_pool(0, min_words=5, max_words=2)


def test_missing_source_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from audioforge.errors import MissingToolError

    monkeypatch.setattr(T, "GCIDE_FILE", tmp_path / "missing.dict.dz")
    T._gcide_texts.cache_clear()
    try:
        with pytest.raises(MissingToolError, match="dict-gcide"):
            list(T.gcide_sentences())
    finally:
        T._gcide_texts.cache_clear()


def test_split_sentences_is_disjoint_and_stable() -> None:
    pool = T.sentence_pool(0, sources=("fortune", "templates"), n_templates=3000)
    train, test = T.split_sentences(pool, 0.2, seed=0)
    assert not {s.txt for s in train} & {s.txt for s in test}
    assert len(train) + len(test) == len(pool)
    assert 0.15 < len(test) / len(pool) < 0.25
    # a sentence's side depends only on its transcript: a sub-pool splits the same way
    _, sub_test = T.split_sentences(pool[:500], 0.2, seed=0)
    assert {s.txt for s in sub_test} <= {s.txt for s in test}
    with pytest.raises(InvalidParameterError):
        T.split_sentences(pool, 1.0)


@pytest.mark.slow
def test_full_pool_offers_tens_of_thousands_of_sentences() -> None:
    pool = T.sentence_pool(0)
    by_source: dict[str, int] = {}
    for s in pool:
        by_source[s.source] = by_source.get(s.source, 0) + 1
    assert len(pool) > 50_000
    assert by_source["wordnet"] > 20_000 and by_source["gcide"] > 10_000 and by_source["fortune"] > 500
    assert all(TXT_RE.fullmatch(s.txt) for s in pool)
