from __future__ import annotations

import pytest

from audioforge.asr.tokenizer import BpeTokenizer, CharTokenizer, load_tokenizer
from audioforge.errors import CheckpointError, InvalidParameterError

LINES = [
    "the quick brown fox jumps over the lazy dog",
    "a stitch in time saves nine",
    "streaming speech recognition with chunks",
    "the dog sleeps in the sun",
] * 5


def test_char_tokenizer_roundtrip() -> None:
    tok = CharTokenizer.build(LINES)
    assert tok.symbols[0] == "<blank>" and tok.symbols[1] == "<unk>" and tok.symbols[-1] == "<sos/eos>"
    assert tok.blank_id == 0 and tok.unk_id == 1 and tok.sos_id == tok.eos_id == tok.vocab_size - 1
    for line in LINES[:4]:
        assert tok.decode(tok.encode(line)) == line
    assert tok.encode("q!")[1] == tok.unk_id
    ids = tok.encode("the dog")
    assert [w for w, _, _ in tok.words(ids)] == ["the", "dog"]
    assert tok.words(ids)[1][1:] == (4, 6)
    again = load_tokenizer(tok.to_json())
    assert again.symbols == tok.symbols
    with pytest.raises(InvalidParameterError):
        CharTokenizer(["a", "b", "c"])


def test_bpe_tokenizer_roundtrip() -> None:
    tok = BpeTokenizer.train(LINES, vocab_size=40)
    assert tok.symbols[0] == "<blank>" and tok.symbols[1] == "<unk>" and tok.symbols[-1] == "<sos/eos>"
    assert tok.vocab_size == 42  # 40 sentencepiece pieces (incl. <unk>) + <blank> + <sos/eos>
    for line in LINES[:4]:
        ids = tok.encode(line)
        assert all(0 < i < tok.sos_id for i in ids)
        assert tok.decode(ids) == line
    ids = tok.encode("the lazy dog")
    assert [w for w, _, _ in tok.words(ids)] == ["the", "lazy", "dog"]
    assert tok.decode([0, *ids, tok.eos_id]) == "the lazy dog"
    again = load_tokenizer(tok.to_json())
    assert again.encode("the lazy dog") == ids
    with pytest.raises(CheckpointError):
        BpeTokenizer(b"not a model")
    with pytest.raises(CheckpointError):
        load_tokenizer('{"type": "other"}')
