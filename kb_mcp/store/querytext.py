"""User text into RediSearch query syntax, safely: words only, every one escaped, never read as query syntax."""

from __future__ import annotations

import re
from collections.abc import Iterable

from kb_mcp.store.schema import F_CREATED, F_TAGS, F_TEXT

MAX_QUERY_WORDS = 64
WORD_RE = re.compile(r"\w+", re.UNICODE)
# Dropped from the OR-query of hybrid search: they match nearly every fact and only add noise to BM25. (The index
# itself keeps every word: a keyword listing may ask for any of them.)
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both but
by can could did do does doing down during each few for from further had has have having he her here hers herself
him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or
other our ours ourselves out over own same she should so some such than that the their theirs them themselves then
there these they this those through to too under until up very was we were what when where which while who whom why
will with would you your yours yourself yourselves s t don
""".split())  # noqa: SIM905 - a word list reads better as text


def escape(word: str) -> str:
    """Escape every character RediSearch could read as syntax: only letters and digits pass through (a lone "_" is a
    syntax error unescaped; found by the property tests)."""
    return "".join(c if c.isalnum() else "\\" + c for c in word)


def words(text: str) -> list[str]:
    return WORD_RE.findall(text)[:MAX_QUERY_WORDS]


def tag_clauses(tags: list[str]) -> list[str]:
    """One TAG clause per tag: a fact must carry all of them."""
    return [f"@{F_TAGS}:{{{escape(t)}}}" for t in tags]


def time_clauses(after_s: float | None, before_s: float | None) -> list[str]:
    """A NUMERIC range on created_at, both ends inclusive (none when neither end is given)."""
    if after_s is None and before_s is None:
        return []
    low = "-inf" if after_s is None else f"{after_s:.3f}"
    high = "+inf" if before_s is None else f"{before_s:.3f}"
    return [f"@{F_CREATED}:[{low} {high}]"]


def all_words_query(text: str) -> str | None:
    """Facts containing every word of `text` (keyword listing); None when it has no words."""
    found = words(text)
    return f"@{F_TEXT}:(" + " ".join(escape(w) for w in found) + ")" if found else None


def any_word_query(terms: list[str]) -> str | None:
    """Facts containing any of `terms` (the BM25 side of hybrid search); None when there are none."""
    return f"@{F_TEXT}:(" + " | ".join(escape(w) for w in terms) + ")" if terms else None


def content_terms(text: str) -> list[str]:
    """The query's content words, lower-cased, once each, in order (what hybrid search weighs)."""
    return list(dict.fromkeys(w.lower() for w in words(text) if w.lower() not in STOP_WORDS))


def word_forms(text: str) -> set[str]:
    """The words of a fact in the form `content_terms` are compared in (lower-case, a plural 's' dropped)."""
    return {singular(w.lower()) for w in WORD_RE.findall(text)}


def singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


class TermMatcher:
    """Which of some query terms a text holds, in `word_forms`' sense (lower-case, a plural "s" dropped), without
    building every word's form: only a word spelled like a term's form or its plural is looked at (hybrid search
    asks this of every candidate; the set of all forms was its largest Python cost at 100,000 facts)."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._by_spelling: dict[str, list[tuple[str, str]]] = {}
        for term in terms:
            form = singular(term)
            for spelling in (form, form + "s"):  # singular(w) is w or w minus its "s": only these can match
                self._by_spelling.setdefault(spelling, []).append((term, form))

    def held(self, text: str) -> frozenset[str]:
        # Lower-casing the whole text splits it into the same words only for ASCII ("İ" lower-cases to two code
        # points, the second not a word character): other text is lower-cased word by word.
        found = WORD_RE.findall(text.lower()) if text.isascii() else [w.lower() for w in WORD_RE.findall(text)]
        spelled = self._by_spelling.keys() & found
        return frozenset(term for spelling in spelled for term, form in self._by_spelling[spelling]
                         if form == singular(spelling))
