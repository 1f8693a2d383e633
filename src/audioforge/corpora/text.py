"""English sentences for the synthetic speech corpus: offline sources, normalisation and templates.

Sources (all installed by the set-up's Debian packages, read from disk, nothing downloaded):

* ``fortune``: Debian's ``fortunes-min`` cookie files (fortunes, literature, riddles), split into sentences;
* ``wordnet``: the usage examples quoted in WordNet glosses (``wordnet-base``);
* ``gcide``: the literary quotations of the GNU Collaborative International Dictionary of English (``dict-gcide``);
* ``templates``: generated voice commands, numbers, times and dates (written with digits and symbols, so the
  normaliser is exercised on them).

Every sentence goes through :func:`spoken_form` (numbers, times, dates, money, symbols and abbreviations spelled out,
lowercase, only ``, . ? !`` kept for prosody) and :func:`normalize_text` (lowercase words and apostrophes only, the
transcript an ASR recipe wants). The TTS engines are given the spoken form, so the audio says exactly the transcript.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidParameterError, MissingToolError

__all__ = [
    "SOURCES",
    "Sentence",
    "fortune_sentences",
    "gcide_sentences",
    "normalize_text",
    "number_to_words",
    "ordinal_to_words",
    "sentence_pool",
    "split_sentences",
    "spoken_form",
    "template_sentences",
    "wordnet_sentences",
    "year_to_words",
]

FORTUNE_DIR = Path("/usr/share/games/fortunes")
FORTUNE_FILES = ("fortunes", "literature", "riddles")
WORDNET_DIR = Path("/usr/share/wordnet")
GCIDE_FILE = Path("/usr/share/dictd/gcide.dict.dz")

# source name -> Debian package(s) that provide it (None: generated, always available)
SOURCES: dict[str, str | None] = {
    "fortune": "fortune-mod fortunes-min",
    "wordnet": "wordnet-base",
    "gcide": "dict-gcide",
    "templates": None,
}


@dataclass(frozen=True)
class Sentence:
    """One corpus sentence.

    Attributes
    ----------
    text
        The original text as found in the source (or as the template wrote it).
    spoken
        What the TTS engine is given: lowercase words with ``, . ? !`` kept for prosody.
    txt
        The transcript: lowercase words and apostrophes separated by single spaces.
    source
        ``"fortune"``, ``"wordnet"``, ``"gcide"`` or ``"templates"``.
    """

    text: str
    spoken: str
    txt: str
    source: str

    @property
    def n_words(self) -> int:
        """Number of words of the transcript."""
        return len(self.txt.split())


# --------------------------------------------------------------------------------------------------------------------
# numbers to words
# --------------------------------------------------------------------------------------------------------------------
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                      "nine": "ninth", "twelve": "twelfth"}


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10] + (f" {_ONES[n % 10]}" if n % 10 else ""))
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int) -> str:
    """Spell out an integer in English words, without "and" or hyphens (``1234`` -> ``one thousand two hundred thirty
    four``). Negative numbers start with ``minus``; magnitudes up to 10**15 - 1 are supported.

    Raises
    ------
    InvalidParameterError
        If ``|n|`` is 10**15 or more.
    """
    n = int(n)
    if n < 0:
        return "minus " + number_to_words(-n)
    if n >= 10**15:
        raise InvalidParameterError(f"number_to_words supports |n| < 10**15, got {n}; read it digit by digit instead")
    if n < 1000:
        return " ".join(_below_thousand(n))
    words: list[str] = []
    for value, name in _SCALES:
        if n >= value:
            words += [*_below_thousand(n // value), name]
            n %= value
    if n:
        words += _below_thousand(n)
    return " ".join(words)


def ordinal_to_words(n: int) -> str:
    """Spell out an ordinal (``21`` -> ``twenty first``, ``100`` -> ``one hundredth``)."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year_to_words(n: int) -> str:
    """Read a year the way people say it (``1999`` -> ``nineteen ninety nine``, ``2005`` -> ``two thousand five``,
    ``1900`` -> ``nineteen hundred``, ``1805`` -> ``eighteen oh five``, ``2024`` -> ``twenty twenty four``)."""
    n = int(n)
    if not 1000 <= n <= 9999:
        return number_to_words(n)
    hi, lo = divmod(n, 100)
    if 2000 <= n <= 2009 or n % 1000 == 0:
        return number_to_words(n)
    if lo == 0:
        return f"{number_to_words(hi)} hundred"
    if lo < 10:
        return f"{number_to_words(hi)} oh {number_to_words(lo)}"
    return f"{number_to_words(hi)} {number_to_words(lo)}"


def _digits_to_words(digits: str) -> str:
    return " ".join("oh" if d == "0" else _ONES[int(d)] for d in digits)


def _plural_number(words: str) -> str:
    """``nineteen ninety`` -> ``nineteen nineties`` (for decades such as 1990s)."""
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return f"{head} {last}".strip()


# --------------------------------------------------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------------------------------------------------
_CHAR_MAP = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2013": " - ", "\u2014": " - ", "\u2015": " - ", "\u2026": "...",
    "\u00a0": " ", "\t": " ", "\n": " ",
    "\u00bd": " 1/2", "\u00bc": " 1/4", "\u00be": " 3/4",
})

_ABBREVIATIONS = {
    "mr.": "mister", "mrs.": "missus", "ms.": "miz", "dr.": "doctor", "prof.": "professor", "jr.": "junior",
    "sr.": "senior", "vs.": "versus", "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is",
    "approx.": "approximately", "dept.": "department", "capt.": "captain", "gen.": "general", "gov.": "governor",
    "lt.": "lieutenant", "sgt.": "sergeant", "col.": "colonel", "rev.": "reverend", "mt.": "mount",
    "ft.": "feet", "lb.": "pounds", "lbs.": "pounds", "oz.": "ounces", "min.": "minutes", "hr.": "hour",
    "hrs.": "hours", "ave.": "avenue", "co.": "company", "inc.": "incorporated",
}
_ABBREVIATION_RE = re.compile(
    r"(?<![\w.])(?:" + "|".join(re.escape(a) for a in sorted(_ABBREVIATIONS, key=len, reverse=True)) + ")",
    re.IGNORECASE,
)
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "=": " equals ", "@": " at ", "#": " number ",
            "°": " degrees ", "×": " times "}
_MONTHS = ("January February March April May June July August September October November December").split()

_MONEY = re.compile(r"([$£€])(\d[\d,]*)(?:\.(\d\d))?\b")
_TIME = re.compile(r"\b(\d{1,2}):(\d\d)(?:\s*([ap])\.?\s?m\b\.?)?", re.IGNORECASE)
_HOUR_AMPM = re.compile(r"\b(\d{1,2})\s*([ap])\.?\s?m\b\.?", re.IGNORECASE)
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DECADE = re.compile(r"\b(1\d|20)(\d)0'?s\b")
_COMMA_NUMBER = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_DECIMAL = re.compile(r"(?<![\d.])(\d+)\.(\d+)\b")
_FRACTION = re.compile(r"\b(\d+)/(\d+)\b")
_PHONE = re.compile(r"\b(\d{3})-(\d{3})-(\d{4})\b")
_YEAR = re.compile(r"\b(1[1-9]\d\d|20\d\d)\b")
_INTEGER = re.compile(r"(?<![\w])(-?)(\d+)\b")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_ROMAN = re.compile(r"\b[IVXLCDM]{2,}\b")
_ALLOWED = re.compile(r"[a-z' ,.?!]*")
_HAS_DIGIT = re.compile(r"\d")
_DASH = re.compile(r"\s+-\s+|--+")
_HYPHEN = re.compile(r"(?<=[a-z])-(?=[a-z])")
_QUOTE = re.compile(r"(?<![a-z])'|'(?![a-z])")
_ELLIPSIS = re.compile(r"\.{2,}")
_TOKEN = re.compile(r"[a-z']+|[,.?!]")
_UNREADABLE = re.compile(r"https?:|www\.|\S@\S|[<>{}\[\]\\|_^~*]")
_NUMBER_ABBR = re.compile(r"\b[Nn]o\.\s*(?=\d)")
_SAINT = re.compile(r"\bSt\.(?=\s+[A-Z])")


def _money_words(m: re.Match[str]) -> str:
    symbol, whole, cents = m.group(1), int(m.group(2).replace(",", "")), m.group(3)
    unit, sub = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent")}[symbol]
    out = f"{number_to_words(whole)} {unit}{'' if whole == 1 else 's'}"
    if cents and int(cents):
        c = int(cents)
        subname = "pence" if sub == "penny" and c != 1 else (sub if c == 1 else sub + "s")
        out += f" and {number_to_words(c)} {subname}"
    return f" {out} "


def _time_words(m: re.Match[str]) -> str:
    hour, minute, ampm = int(m.group(1)), int(m.group(2)), m.group(3)
    if hour > 24 or minute > 59:
        return m.group(0)
    if minute == 0:
        words = f"{number_to_words(hour)} o'clock" if not ampm else number_to_words(hour)
    elif minute < 10:
        words = f"{number_to_words(hour)} oh {number_to_words(minute)}"
    else:
        words = f"{number_to_words(hour)} {number_to_words(minute)}"
    if ampm:
        words += f" {ampm.lower()} m"
    return f" {words} "


def _prepare(text: str) -> str:
    if text.isascii():
        return " ".join(text.replace("`", "'").split())
    s = unicodedata.normalize("NFKC", text).translate(_CHAR_MAP)
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    s = s.replace("æ", "ae").replace("Æ", "Ae").replace("œ", "oe").replace("Œ", "Oe")
    return " ".join(s.split())


def _expand_numbers(s: str) -> str:
    s = _MONEY.sub(_money_words, s)
    s = _TIME.sub(_time_words, s)
    s = _HOUR_AMPM.sub(lambda m: f" {number_to_words(int(m.group(1)))} {m.group(2).lower()} m ", s)
    s = _PHONE.sub(lambda m: " " + ", ".join(_digits_to_words(g) for g in m.groups()) + " ", s)
    s = _ORDINAL.sub(lambda m: f" {ordinal_to_words(int(m.group(1)))} ", s)
    s = _DECADE.sub(lambda m: f" {_plural_number(year_to_words(int(m.group(1) + m.group(2) + '0')))} ", s)
    s = _COMMA_NUMBER.sub(lambda m: f" {number_to_words(int(m.group(0).replace(',', '')))} ", s)
    s = _DECIMAL.sub(lambda m: f" {number_to_words(int(m.group(1)))} point {_digits_to_words(m.group(2))} ", s)
    s = _FRACTION.sub(lambda m: _fraction_words(int(m.group(1)), int(m.group(2))), s)
    s = _YEAR.sub(lambda m: f" {year_to_words(int(m.group(1)))} ", s)

    def integer(m: re.Match[str]) -> str:
        digits = m.group(2)
        if len(digits) > 15:
            return f" {_digits_to_words(digits)} "
        return f" {'minus ' if m.group(1) else ''}{number_to_words(int(digits))} "

    return _INTEGER.sub(integer, s)


def _fraction_words(num: int, den: int) -> str:
    if den == 0:
        return f" {number_to_words(num)} over zero "
    if den == 2:
        name = "half" if num == 1 else "halves"
    elif den == 4:
        name = "quarter" if num == 1 else "quarters"
    else:
        name = ordinal_to_words(den) + ("" if num == 1 else "s")
    return f" {number_to_words(num)} {name} "


def spoken_form(text: str) -> str | None:
    """Rewrite ``text`` into what a TTS engine should read so that the audio matches :func:`normalize_text`.

    Numbers, years, decades, ordinals, times (``7:30 pm``), money (``$3.50``), percentages, fractions, phone numbers,
    common abbreviations (``Mr.``, ``e.g.``) and symbols (``&``, ``%``, ``+``) are spelled out; accents are folded to
    ASCII; the result is lowercase words (with inner apostrophes) and the punctuation ``, . ? !``.

    Returns
    -------
    str or None
        The spoken form, or ``None`` when the text holds something that cannot be read unambiguously (URLs, e-mail
        addresses, Roman numerals, code, characters outside the Latin alphabet) or has no words.
    """
    s = _prepare(text)
    if not s or _UNREADABLE.search(s) or _ROMAN.search(s):
        return None
    if "." in s:
        s = _NUMBER_ABBR.sub(" number ", s)
        s = _SAINT.sub(" saint ", s)
        s = _ABBREVIATION_RE.sub(lambda m: f" {_ABBREVIATIONS[m.group(0).lower()]} ", s)
    if _HAS_DIGIT.search(s):
        s = _expand_numbers(s)
    for sym, word in _SYMBOLS.items():
        if sym in s:
            s = s.replace(sym, word)
    s = s.lower().replace(";", ",").replace(":", ",")
    if "-" in s:
        s = _DASH.sub(", ", s)  # dashes between words are pauses
        s = _HYPHEN.sub(" ", s)  # hyphenated compounds read as two words
    s = s.replace('"', " ").replace("(", ", ").replace(")", ", ").replace("/", " ")
    if "'" in s:
        s = _QUOTE.sub(" ", s)  # quote marks, not apostrophes
    if ".." in s:
        s = _ELLIPSIS.sub(",", s)
    if not _ALLOWED.fullmatch(s):
        return None
    tokens: list[str] = []
    for tok in _TOKEN.findall(s):
        if tok in ",.?!":
            if tokens and tokens[-1][-1] not in ",.?!":
                tokens[-1] += tok
            elif tokens and tok != "," and tokens[-1][-1] == ",":
                tokens[-1] = tokens[-1][:-1] + tok
            continue
        tok = tok.strip("'")
        if tok and _WORD.fullmatch(tok):
            tokens.append(tok)
        elif tok:
            return None
    if not tokens:
        return None
    out = " ".join(tokens).rstrip(",")
    return out if out[-1] in ".?!" else out + "."


def normalize_text(text: str) -> str | None:
    """The ASR transcript of ``text``: lowercase words and inner apostrophes separated by single spaces.

    ``None`` where :func:`spoken_form` rejects the text.

    Examples
    --------
    >>> normalize_text("Dr. Smith paid $3.50 at 7:05 PM on May 3rd, 1999!")
    'doctor smith paid three dollars and fifty cents at seven oh five p m on may third nineteen ninety nine'
    """
    spoken = spoken_form(text)
    return None if spoken is None else _strip_punctuation(spoken)


def _strip_punctuation(spoken: str) -> str:
    return " ".join(re.sub(r"[,.?!]", " ", spoken).split())


def _make_sentence(text: str, source: str) -> Sentence | None:
    spoken = spoken_form(text)
    if spoken is None:
        return None
    txt = _strip_punctuation(spoken)
    return Sentence(text=text.strip(), spoken=spoken, txt=txt, source=source) if txt else None


# --------------------------------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')]*\s+(?=[\"'(]*[A-Z])")


def _split_sentences(paragraph: str) -> list[str]:
    parts = _SENTENCE_END.split(paragraph)
    out: list[str] = []
    for p in parts:  # do not split after an abbreviation such as "Mr."
        if out and re.search(r"\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Mt|vs|[A-Z])\.$", out[-1]):
            out[-1] = f"{out[-1]} {p}"
        else:
            out.append(p)
    return [p.strip() for p in out if p.strip()]


def _require_file(path: Path, source: str) -> Path:
    if not path.exists():
        raise MissingToolError(
            f"text source {source!r} needs {path}, which is not installed; install it with: "
            f"sudo apt-get install -y {SOURCES[source]} (or leave {source!r} out of sources)"
        )
    return path


@functools.lru_cache(maxsize=1)
def _fortune_texts() -> tuple[str, ...]:
    out: list[str] = []
    for name in FORTUNE_FILES:
        path = _require_file(FORTUNE_DIR / name, "fortune")
        raw = path.read_text(encoding="utf-8", errors="replace")
        for cookie in raw.split("\n%\n"):
            lines = [ln for ln in cookie.strip("%\n").split("\n") if not re.match(r"^\s*(--|-- |\()", ln)]
            if not lines:
                continue
            text = " ".join(ln.strip() for ln in lines)
            text = re.sub(r"^[QA]:\s*", "", text)
            for piece in re.split(r"\s+[QA]:\s+", text):
                out.extend(_split_sentences(piece))
    return tuple(out)


def fortune_sentences() -> Iterator[Sentence]:
    """Sentences from Debian's fortune cookie files (``fortunes-min``), attribution lines dropped."""
    for t in _fortune_texts():
        s = _make_sentence(t, "fortune")
        if s is not None:
            yield s


@functools.lru_cache(maxsize=1)
def _wordnet_texts() -> tuple[str, ...]:
    out: list[str] = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = _require_file(WORDNET_DIR / f"data.{pos}", "wordnet")
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(" ") or "|" not in line:
                    continue  # licence header
                gloss = line.split("|", 1)[1]
                out.extend(m.strip() for m in re.findall(r'"([^"]+)"', gloss))
    return tuple(out)


def wordnet_sentences() -> Iterator[Sentence]:
    """The usage examples quoted in WordNet's glosses (``wordnet-base``)."""
    for t in _wordnet_texts():
        s = _make_sentence(t, "wordnet")
        if s is not None:
            yield s


@functools.lru_cache(maxsize=1)
def _gcide_texts() -> tuple[str, ...]:
    path = _require_file(GCIDE_FILE, "gcide")
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
        raw = fh.read()
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if block:
            text = " ".join(block)
            m = re.search(r"\s--\s?[A-Z][^\n]*$", text)
            if m:  # a literary quotation ends with its attribution: keep only those
                quote = text[: m.start()].strip()
                out.extend(_split_sentences(re.sub(r"\s+", " ", quote)))
            block.clear()

    for line in raw.split("\n"):
        if line.startswith(" " * 12) and line.strip() and not line.lstrip().startswith("["):
            block.append(line.strip())
        else:
            flush()
    flush()
    return tuple(out)


def gcide_sentences() -> Iterator[Sentence]:
    """The attributed literary quotations of the GCIDE dictionary (``dict-gcide``)."""
    for t in _gcide_texts():
        s = _make_sentence(t, "gcide")
        if s is not None:
            yield s


# --------------------------------------------------------------------------------------------------------------------
# templates: voice commands, numbers, times, dates
# --------------------------------------------------------------------------------------------------------------------
_ROOMS = ["kitchen", "living room", "bedroom", "bathroom", "office", "garage", "hallway", "dining room", "basement",
          "nursery", "porch", "attic"]
_DEVICES = ["lights", "lamp", "fan", "heater", "radio", "television", "speaker", "air conditioner", "coffee maker",
            "dishwasher", "oven", "blinds"]
_NAMES = ["Anna", "Ben", "Carlos", "Diana", "Emma", "Frank", "Grace", "Henry", "Isabel", "Jack", "Karen", "Liam",
          "Maria", "Noah", "Olivia", "Peter", "Rachel", "Sam", "Tom", "Victoria", "mom", "dad", "grandma", "the office"]
_CITIES = ["London", "Paris", "Boston", "Chicago", "Denver", "Dallas", "Seattle", "Toronto", "Dublin", "Berlin",
           "Madrid", "Rome", "Tokyo", "Sydney", "Miami", "Houston", "Phoenix", "Atlanta", "Vienna", "Oslo"]
_GENRES = ["jazz", "rock", "classical music", "country music", "the blues", "folk songs", "some reggae", "hip hop",
           "piano music", "the news", "my playlist", "something relaxing"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "today", "tomorrow",
         "tonight", "this weekend"]
_TASKS = ["call the dentist", "buy milk", "water the plants", "take out the trash", "pick up the kids",
          "pay the rent", "feed the cat", "book a table", "send the report", "walk the dog", "charge my phone",
          "check the mail"]
_ITEMS = ["apples", "eggs", "bread", "coffee", "batteries", "tickets", "chairs", "books", "bottles of water",
          "pencils", "boxes", "oranges"]
_EVENTS = ["the meeting", "the train", "the concert", "my flight", "the bus", "the game", "the lecture", "dinner",
           "the movie", "the appointment"]


def _time_text(rng: np.random.Generator) -> str:
    hour = int(rng.integers(1, 13))
    minute = int(rng.choice([0, 0, 5, 10, 15, 20, 30, 30, 45, 50, int(rng.integers(0, 60))]))
    ampm = str(rng.choice(["AM", "PM", "a.m.", "p.m.", ""]))
    if minute == 0 and ampm and rng.random() < 0.5:
        return f"{hour} {ampm}"
    return f"{hour}:{minute:02d} {ampm}".strip()


def _date_text(rng: np.random.Generator) -> str:
    month = _MONTHS[int(rng.integers(0, 12))]
    day = int(rng.integers(1, 29))
    year = int(rng.integers(1950, 2040))
    style = int(rng.integers(0, 3))
    if style == 0:
        return f"{month} {day}, {year}"
    if style == 1:
        return f"{month} {day}{'th' if 10 <= day % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th')}"
    return f"the {day}{'th' if 10 <= day % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th')} of {month}"


def _template(rng: np.random.Generator) -> str:
    pick = lambda seq: seq[int(rng.integers(0, len(seq)))]  # noqa: E731
    n = int(rng.integers(2, 100))
    big = int(rng.integers(100, 100000))
    kind = int(rng.integers(0, 24))
    if kind == 0:
        return f"Turn {pick(['on', 'off'])} the {pick(_ROOMS)} {pick(_DEVICES)}."
    if kind == 1:
        return f"Set a timer for {n} minutes."
    if kind == 2:
        return f"Set an alarm for {_time_text(rng)} {pick(_DAYS)}."
    if kind == 3:
        return f"Remind me to {pick(_TASKS)} at {_time_text(rng)}."
    if kind == 4:
        return f"What's the weather like in {pick(_CITIES)} {pick(_DAYS)}?"
    if kind == 5:
        return f"Play {pick(_GENRES)} in the {pick(_ROOMS)}."
    if kind == 6:
        return f"Call {pick(_NAMES)} and tell them I'll be {n} minutes late."
    if kind == 7:
        return f"Set the thermostat in the {pick(_ROOMS)} to {int(rng.integers(15, 80))} degrees."
    if kind == 8:
        return f"Turn the volume {pick(['up', 'down'])} to {int(rng.integers(1, 11)) * 10}%."
    if kind == 9:
        return f"{pick(_EVENTS).capitalize()} starts at {_time_text(rng)} on {_date_text(rng)}."
    if kind == 10:
        return f"My appointment is on {_date_text(rng)} at {_time_text(rng)}."
    if kind == 11:
        return f"I was born on {_date_text(rng)}."
    if kind == 12:
        return f"Please order {n} {pick(_ITEMS)} for {pick(_NAMES)}."
    if kind == 13:
        a, b = int(rng.integers(1, 1000)), int(rng.integers(1, 1000))
        op, res = (("plus", a + b) if rng.random() < 0.5 else ("minus", a - b))
        return f"What is {a} {op} {b}? It is {res}."
    if kind == 14:
        return f"The total comes to ${big // 100}.{int(rng.integers(0, 100)):02d}."
    if kind == 15:
        area, exchange, line = int(rng.integers(200, 999)), int(rng.integers(200, 999)), int(rng.integers(0, 9999))
        return f"Call me back at {area}-{exchange}-{line:04d}."
    if kind == 16:
        return f"The population of the town was {big:,} in {int(rng.integers(1900, 2024))}."
    if kind == 17:
        return f"Turn left in {int(rng.integers(1, 10)) * 100} feet, then take the {ordinal_word_text(rng)} exit."
    if kind == 18:
        return f"Open chapter {n} and read page {big % 900 + 10}."
    if kind == 19:
        return f"Add {pick(_ITEMS)} to my shopping list for {pick(_DAYS)}."
    if kind == 20:
        return f"Send a message to {pick(_NAMES)} saying I'm on my way and I'll be there by {_time_text(rng)}."
    if kind == 21:
        return f"It is {int(rng.integers(-20, 40))} degrees outside and the wind is at {n} miles per hour."
    if kind == 22:
        return f"{pick(['Dim', 'Brighten'])} the {pick(_ROOMS)} {pick(['lights', 'lamp'])} to {n}%."
    return f"The flight to {pick(_CITIES)} leaves from gate {n} at {_time_text(rng)}."


def _template_text(rng: np.random.Generator) -> str:
    return _template(rng).replace("..", ".")


def ordinal_word_text(rng: np.random.Generator) -> str:
    """A small ordinal written with digits (``1st`` ... ``5th``), used by the templates."""
    return str(rng.choice(["1st", "2nd", "3rd", "4th", "5th"]))


def template_sentences(n: int, *, seed: int = 0) -> list[Sentence]:
    """``n`` generated sentences (voice commands, numbers, times, dates; duplicates possible), deterministic in seed.

    They are written the way people type them (``Set an alarm for 7:30 AM``) and normalised like any other source.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E37]))
    out: list[Sentence] = []
    for _ in range(int(n)):
        s = _make_sentence(_template_text(rng), "templates")
        if s is not None:
            out.append(s)
    return out


# --------------------------------------------------------------------------------------------------------------------
# pool and split
# --------------------------------------------------------------------------------------------------------------------
def _collect(sources: Sequence[str], n_templates: int, seed: int) -> Iterable[Sentence]:
    for src in sources:
        if src == "fortune":
            yield from fortune_sentences()
        elif src == "wordnet":
            yield from wordnet_sentences()
        elif src == "gcide":
            yield from gcide_sentences()
        elif src == "templates":
            yield from template_sentences(n_templates, seed=seed)
        else:
            raise InvalidParameterError(f"unknown sentence source {src!r}; use some of {sorted(SOURCES)}")


def sentence_pool(
    seed: int = 0,
    *,
    sources: Sequence[str] = ("fortune", "wordnet", "gcide", "templates"),
    min_words: int = 3,
    max_words: int = 25,
    max_word_chars: int = 18,
    n_templates: int = 20000,
    limit: int | None = None,
) -> list[Sentence]:
    """All usable sentences from ``sources``, deduplicated on their transcript, shuffled deterministically by ``seed``.

    Parameters
    ----------
    seed
        Seeds the templates and the shuffle; the same seed always gives the same list.
    sources
        Any of ``"fortune"``, ``"wordnet"``, ``"gcide"``, ``"templates"``. A missing Debian package raises
        MissingToolError naming it.
    min_words, max_words
        Transcript length limits (25 words is about 10 s of speech at a normal rate).
    max_word_chars
        Drop sentences with a word longer than this (usually chemistry or markup, not speech).
    n_templates
        How many template sentences to draw before deduplication.
    limit
        Keep only the first ``limit`` sentences after shuffling.

    Returns
    -------
    list of Sentence
    """
    if min_words < 1 or max_words < min_words:
        raise InvalidParameterError(
            f"need 1 <= min_words <= max_words, got min_words={min_words}, max_words={max_words}"
        )
    pool = list(_cached_pool(int(seed), tuple(sources), int(min_words), int(max_words), int(max_word_chars),
                             int(n_templates)))
    return pool[:limit] if limit is not None else pool


@functools.lru_cache(maxsize=4)
def _cached_pool(
    seed: int, sources: tuple[str, ...], min_words: int, max_words: int, max_word_chars: int, n_templates: int
) -> tuple[Sentence, ...]:
    seen: set[str] = set()
    pool: list[Sentence] = []
    for s in _collect(sources, n_templates, seed):
        words = s.txt.split()
        if not min_words <= len(words) <= max_words or max(len(w) for w in words) > max_word_chars:
            continue
        if s.txt in seen:
            continue
        seen.add(s.txt)
        pool.append(s)
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 0x9001])).permutation(len(pool))
    return tuple(pool[i] for i in order)


def _unit_hash(txt: str, seed: int) -> float:
    h = hashlib.blake2b(f"{seed}\x00{txt}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def split_sentences(
    pool: Sequence[Sentence], test_fraction: float, *, seed: int = 0
) -> tuple[list[Sentence], list[Sentence]]:
    """Split sentences into (train, test) by a seeded hash of the transcript, so no transcript is in both.

    The assignment of a sentence depends only on its transcript and the seed, not on the rest of the pool.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise InvalidParameterError(f"test_fraction must be in [0, 1), got {test_fraction}")
    train: list[Sentence] = []
    test: list[Sentence] = []
    for s in pool:
        (test if _unit_hash(s.txt, seed) < test_fraction else train).append(s)
    return train, test
