"""How a list of texts is cut into embedding calls: in order, within the texts and tokens one call may hold, the
token budget following the index deadline."""

from __future__ import annotations

from itertools import pairwise

from kb_mcp.store.context import EMBED_CALL_TEXTS, MIN_CALL_TOKENS, call_tokens, embedding_calls


def test_calls_keep_the_order_and_each_fits_the_budget() -> None:
    weights = [(i * 37) % 251 + 5 for i in range(400)]
    calls = embedding_calls(list(range(400)), lambda i: weights[i], 10.0)
    assert [i for call in calls for i in call] == list(range(400))
    assert all(sum(weights[i] for i in call) <= call_tokens(10.0) for call in calls)
    assert len(calls) > 1
    # Greedy: each call would overflow with the next call's first item.
    assert all(sum(weights[i] for i in call) + weights[nxt[0]] > call_tokens(10.0)
               for call, nxt in pairwise(calls))


def test_the_budget_follows_the_deadline() -> None:
    assert call_tokens(10.0) == 6_666
    assert call_tokens(30.0) >= 3 * call_tokens(10.0)
    assert call_tokens(0.1) == MIN_CALL_TOKENS
    short = len(embedding_calls(["x"] * 900, lambda _: 40, 30.0))
    assert short < len(embedding_calls(["x"] * 900, lambda _: 40, 2.0))


def test_an_item_heavier_than_the_budget_is_a_call_of_its_own() -> None:
    calls = embedding_calls(["a", "huge", "b"], lambda t: 10**6 if t == "huge" else 1, 10.0)
    assert calls == [["a"], ["huge"], ["b"]]


def test_short_texts_stop_at_the_text_limit() -> None:
    calls = embedding_calls(["n"] * (EMBED_CALL_TEXTS + 5), lambda _: 1, 10.0)
    assert [len(c) for c in calls] == [EMBED_CALL_TEXTS, 5]
    assert embedding_calls([], lambda _: 1, 10.0) == []
