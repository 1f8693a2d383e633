"""Tokenizers of the ASR models, WeNet's symbol table layout: ``<blank>`` = 0, ``<unk>`` = 1, ..., ``<sos/eos>`` last.

- :class:`CharTokenizer`: one token per character; spaces become ``"▁"`` tokens;
- :class:`BpeTokenizer`: a sentencepiece model (trained offline from text lines with :meth:`BpeTokenizer.train`,
  kept as bytes so it travels inside a bundle); sentencepiece ids are shifted by one to make room for ``<blank>``.

Both give :meth:`~Tokenizer.words` to group token pieces into words (a piece starting with ``"▁"`` starts a word).
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import CheckpointError, InvalidParameterError, MissingToolError

__all__ = ["BLANK", "SOS_EOS", "UNK", "WORD_BOUNDARY", "BpeTokenizer", "CharTokenizer", "Tokenizer", "load_tokenizer"]

BLANK = "<blank>"
UNK = "<unk>"
SOS_EOS = "<sos/eos>"
WORD_BOUNDARY = "▁"


class Tokenizer(ABC):
    """Common interface: a symbol table with ``<blank>`` first, ``<unk>`` second and ``<sos/eos>`` last."""

    symbols: list[str]

    @property
    def vocab_size(self) -> int:
        """Number of ids (model output size)."""
        return len(self.symbols)

    @property
    def blank_id(self) -> int:
        """0."""
        return 0

    @property
    def unk_id(self) -> int:
        """1."""
        return 1

    @property
    def sos_id(self) -> int:
        """The last id."""
        return len(self.symbols) - 1

    @property
    def eos_id(self) -> int:
        """The last id (shared with ``<sos>``)."""
        return len(self.symbols) - 1

    def id_to_token(self, i: int) -> str:
        """The symbol of id ``i``."""
        return self.symbols[i]

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """Symbols of ``ids``."""
        return [self.symbols[i] for i in ids]

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` (special tokens dropped)."""

    def words(self, ids: Sequence[int]) -> list[tuple[str, int, int]]:
        """Group ``ids`` into words: ``(word, first token index, last token index)`` (special tokens skipped)."""
        out: list[tuple[str, int, int]] = []
        current, first, last = "", -1, -1
        for k, i in enumerate(ids):
            piece = self.symbols[i]
            if i in (self.blank_id, self.sos_id):
                continue
            starts = piece.startswith(WORD_BOUNDARY) or self._is_cjk(piece)
            body = piece.lstrip(WORD_BOUNDARY)
            if starts and current:
                out.append((current, first, last))
                current = ""
            if not body:
                continue
            if not current:
                first = k
            current += body
            last = k
            if self._is_cjk(piece):
                out.append((current, first, last))
                current = ""
        if current:
            out.append((current, first, last))
        return out

    @staticmethod
    def _is_cjk(piece: str) -> bool:
        return len(piece) == 1 and "\u4e00" <= piece <= "\u9fff"

    @abstractmethod
    def to_json(self) -> str:
        """Serialise (see :func:`load_tokenizer`)."""


class CharTokenizer(Tokenizer):
    """Character tokenizer.

    Parameters
    ----------
    symbols
        The full symbol table (``<blank>``, ``<unk>``, characters ..., ``<sos/eos>``).
    """

    def __init__(self, symbols: Sequence[str]) -> None:
        symbols = list(symbols)
        if len(symbols) < 3 or symbols[0] != BLANK or symbols[1] != UNK or symbols[-1] != SOS_EOS:
            raise InvalidParameterError(
                f"a symbol table must start with {BLANK!r}, {UNK!r} and end with {SOS_EOS!r}; got {symbols[:3]}..."
            )
        if len(set(symbols)) != len(symbols):
            raise InvalidParameterError("the symbol table has duplicate symbols")
        self.symbols = symbols
        self._ids = {s: i for i, s in enumerate(symbols)}

    @classmethod
    def build(cls, lines: Iterable[str]) -> CharTokenizer:
        """The table of all characters in ``lines`` (sorted; spaces as ``"▁"``)."""
        chars = sorted({WORD_BOUNDARY if c == " " else c for line in lines for c in line.strip()})
        return cls([BLANK, UNK, *chars, SOS_EOS])

    def encode(self, text: str) -> list[int]:
        """One id per character (``" "`` -> ``"▁"``, unknown -> ``<unk>``); surrounding spaces dropped."""
        return [self._ids.get(WORD_BOUNDARY if c == " " else c, self.unk_id) for c in " ".join(text.split())]

    def decode(self, ids: Iterable[int]) -> str:
        """Characters joined, ``"▁"`` -> space, specials dropped."""
        out = [self.symbols[i] for i in ids if i not in (self.blank_id, self.sos_id)]
        return "".join(out).replace(WORD_BOUNDARY, " ").strip()

    def to_json(self) -> str:
        """``{"type": "char", "symbols": [...]}``."""
        return json.dumps({"type": "char", "symbols": self.symbols}, ensure_ascii=False)


def _spm() -> Any:
    try:
        import sentencepiece
    except ImportError as exc:  # pragma: no cover - part of the train extra
        raise MissingToolError("BPE tokenizers need sentencepiece: pip install 'audioforge[train]'") from exc
    return sentencepiece


class BpeTokenizer(Tokenizer):
    """A sentencepiece model with WeNet's id layout (sentencepiece id ``k`` -> ``k + 1``; its ``<unk>`` is id 1).

    Parameters
    ----------
    model_proto
        The serialised sentencepiece model (bytes), trained with ``unk_id=0`` and no bos/eos/pad.
    """

    def __init__(self, model_proto: bytes) -> None:
        spm = _spm()
        self.model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self.model_proto)
        except Exception as exc:  # sentencepiece raises RuntimeError/OSError variants
            raise CheckpointError(f"not a sentencepiece model: {exc}") from exc
        if self._sp.unk_id() != 0 or self._sp.bos_id() >= 0 or self._sp.eos_id() >= 0:
            raise CheckpointError("the sentencepiece model must have unk_id=0 and no bos/eos (train with train())")
        pieces = [self._sp.id_to_piece(i) for i in range(1, self._sp.get_piece_size())]
        self.symbols = [BLANK, UNK, *pieces, SOS_EOS]

    @classmethod
    def train(
        cls,
        lines: Iterable[str],
        vocab_size: int,
        *,
        model_type: str = "bpe",
        character_coverage: float = 1.0,
        seed_sentencepiece_size: int = 100000,
    ) -> BpeTokenizer:
        """Train a sentencepiece model from text lines in memory (no files written).

        ``vocab_size`` counts sentencepiece pieces including ``<unk>``; the tokenizer has two more ids.
        """
        spm = _spm()
        data = [line.strip() for line in lines if line.strip()]
        if not data:
            raise InvalidParameterError("no text to train a BPE model on")
        writer = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(data),
                model_writer=writer,
                vocab_size=int(vocab_size),
                model_type=model_type,
                character_coverage=character_coverage,
                unk_id=0,
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                seed_sentencepiece_size=seed_sentencepiece_size,
                minloglevel=2,
            )
        except RuntimeError as exc:
            raise InvalidParameterError(f"sentencepiece training failed: {exc}") from exc
        return cls(writer.getvalue())

    def encode(self, text: str) -> list[int]:
        """Piece ids shifted by one (unknown pieces -> ``<unk>`` = 1)."""
        return [i + 1 for i in self._sp.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the pieces (specials dropped)."""
        return self._sp.decode([int(i) - 1 for i in ids if 0 < i < self.sos_id])

    def to_json(self) -> str:
        """``{"type": "bpe", "model": <hex of the sentencepiece model>}``."""
        return json.dumps({"type": "bpe", "model": self.model_proto.hex()})


def load_tokenizer(text: str) -> Tokenizer:
    """Rebuild a tokenizer from :meth:`Tokenizer.to_json`."""
    try:
        doc = json.loads(text)
        kind = doc["type"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"malformed tokenizer description: {exc}") from exc
    if kind == "char":
        return CharTokenizer(doc["symbols"])
    if kind == "bpe":
        return BpeTokenizer(bytes.fromhex(doc["model"]))
    raise CheckpointError(f"unknown tokenizer type {kind!r}")
