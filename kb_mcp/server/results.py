"""The response budget (KB_MAX_RESPONSE_CHARS): how much fact content one search or listing may put into an agent's
context window. Without it, top_k=50 over 32 KB facts is 1.6 MB of text in one reply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fitted:
    """One item's content as sent: maybe cut (`truncated`), with its full length (`content_chars`)."""

    content: str
    truncated: bool
    content_chars: int


def fit(contents: list[str], budget: int) -> list[Fitted]:
    """Contents in order until `budget` characters are used: the one that crosses it is cut, the rest dropped. The
    first is never dropped (at most cut), so an answer is never empty because one fact is long."""
    out: list[Fitted] = []
    left = budget
    for i, content in enumerate(contents):
        if len(content) <= left:
            out.append(Fitted(content, False, len(content)))
            left -= len(content)
        elif i == 0 or left > 0:
            out.append(Fitted(content[:max(left, 0)], True, len(content)))
            left = 0
        else:
            break
    return out
