"""User text into RediSearch query syntax, safely: words only, every one escaped, never read as query syntax."""

from __future__ import annotations

import re

from kb_mcp.store.schema import F_CREATED, F_TAGS, F_TEXT

MAX_QUERY_WORDS = 64
WORD_RE = re.compile(r"\w+", re.UNICODE)
# Left out of the keyword side's OR-query: they match nearly every fact and only add noise to BM25 (on SciFact,
# asking for them too cost 0.18 nDCG@10: docs/retrieval.md). The index keeps every word: a keyword listing may ask
# for any of them.
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


def any_word_query(terms: list[str], field: str = F_TEXT) -> str | None:
    """Facts whose `field` holds any of `terms` (the BM25 side of search); None when there are none."""
    return f"@{field}:(" + " | ".join(escape(w) for w in terms) + ")" if terms else None
