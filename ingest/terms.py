"""Words for matching a question to code: identifiers split into lower-case parts, stemmed.

`parse_question` keeps both the whole identifiers a question names (`HTTPConnection`) and the
words inside them, so "how does the http connection retry" meets `HTTPConnection.retry`.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
MIN_TERM_CHARS = 2
_STOPWORD_TEXT = """
a an and are as at be been but by can could did do does doing for from had has have
how i if in into is it its itself me my of on or our out over should so some such than
that the their them then there these they this those through to up use used uses using
was we were what when where which while who whom why will with would you your get gets
set sets make makes made happen happens handle handles handled file files code function
functions method methods class classes module modules implement implemented
implementation defined define defines find found work works done each every given way
new own
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ers", "er", "ed", "es", "s", "e")
MIN_STEM_CHARS = 3


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A crude, deterministic stem: `parse`, `parsing`, `parses`, `parser` -> `pars`."""
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= MIN_STEM_CHARS:
            return word[: -len(suffix)]
    return word


@functools.lru_cache(maxsize=1 << 16)
def split_identifier(name: str) -> tuple[str, ...]:
    """`HTTPConnectionPool_max` -> ('http', 'connection', 'pool', 'max')."""
    return tuple(part.lower() for part in _PARTS.findall(name))


def terms_of(text: str) -> list[str]:
    """Stemmed word parts of every identifier-like word in `text`, stopwords removed."""
    found: list[str] = []
    for word in _WORD.findall(text):
        for part in split_identifier(word):
            if len(part) >= MIN_TERM_CHARS and part not in STOPWORDS:
                found.append(stem(part))
    return found


_WORD_BYTES = frozenset(b"_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_BLANK_NON_WORD = bytes(c if c in _WORD_BYTES else 32 for c in range(256))
"""Byte table that blanks every byte but ASCII letters, digits and `_`."""


def word_counts(text: str) -> dict[str, int]:
    """Each run of ASCII letters, digits and `_` in `text`, counted (identifiers, numbers).

    A byte table and `split` cut the text at C speed; a regex is several times slower."""
    return dict(Counter(text.encode("utf-8").translate(_BLANK_NON_WORD).decode("ascii").split()))


def doc_words(text: str) -> list[str]:
    """The identifier-like words of a short text (a docstring)."""
    return _WORD.findall(text)


@functools.lru_cache(maxsize=1 << 18)
def word_terms(word: str) -> tuple[str, ...]:
    """Stemmed parts of one word or name (no stopwords, no numbers), cached: words repeat."""
    if word.isascii() and word.islower() and word.replace("_", "").isalpha():  # no regex needed
        parts = iter(word.split("_"))
    else:
        parts = (part.lower() for part in _PARTS.findall(word))
    return tuple(
        stem(part)
        for part in parts
        if len(part) >= MIN_TERM_CHARS and part not in STOPWORDS and not part.isdigit()
    )


@dataclass(frozen=True, slots=True)
class Question:
    """What a question asks about: its stemmed terms and the identifiers it names verbatim."""

    terms: frozenset[str]
    identifiers: frozenset[str]

    @property
    def empty(self) -> bool:
        return not self.terms and not self.identifiers


def parse_question(text: str) -> Question:
    """Terms and identifiers of a question ("" gives an empty question)."""
    identifiers = {
        word
        for word in _WORD.findall(text)
        if len(word) >= MIN_TERM_CHARS and word.lower() not in STOPWORDS
    }
    return Question(frozenset(terms_of(text)), frozenset(identifiers))
