"""The keyword side's terms: a text's words lower-cased and stemmed (Snowball English, the stemmer RediSearch itself
uses), written with every fact as its own full-text field and asked the same way, so a query word and a fact word
meet exactly when their stems are equal and BM25 counts each stem once.

RediSearch's own stemming indexes a word and its stem as two terms and expands a query word to both: a fact holding
"cell" and "cells" is scored twice over, and BM25 then trails the textbook figure (measured in docs/retrieval.md).
"""

from __future__ import annotations

from functools import lru_cache

import Stemmer

from kb_mcp.store.search.querytext import MAX_QUERY_WORDS, STOP_WORDS, WORD_RE

_STEMMER = Stemmer.Stemmer("english")


@lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    """The stem of one lower-case word."""
    return str(_STEMMER.stemWord(word))


def stemmed_text(text: str) -> str:
    """Every word of `text` as its stem, in order: the F_STEMS field of a fact's hash."""
    return " ".join(stem(w) for w in WORD_RE.findall(text.lower()))


def query_stems(text: str) -> list[str]:
    """The stems a keyword search asks for: the query's words but the stop words, once each, in order."""
    words = [w for w in WORD_RE.findall(text.lower()) if w not in STOP_WORDS][:MAX_QUERY_WORDS]
    return list(dict.fromkeys(stem(w) for w in words))


class Held:
    """Which of a query's stems a fact's stems field holds (asked of every full-text hit: the needles are built
    once, and the field is searched as the bytes Redis sent)."""

    def __init__(self, asked: list[str]) -> None:
        self._needles = [(stem, f" {stem} ".encode()) for stem in asked]

    def __call__(self, stems: bytes | None) -> frozenset[str]:
        padded = b" " + (stems or b"") + b" "
        return frozenset(stem for stem, needle in self._needles if needle in padded)
