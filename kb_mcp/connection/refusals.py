"""What a failed Redis call was, read from its exception's cause chain (libraries such as redisvl wrap redis-py's
errors): a refusal Redis answered with (out of memory, read-only, loading, credentials...), a connection that was
refused outright, or a connection/timeout error. By class where redis-py gives one, by reply text only where it does
not, in this one place."""

from __future__ import annotations

from collections.abc import Iterator

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kb_mcp.errors import IndexMissing, KbError, RedisRefused

MAX_CHAIN = 10  # causes looked at, at most

_REFUSAL_CLASSES: tuple[tuple[type[RedisError], str], ...] = (
    (BusyLoadingError, "LOADING"), (AuthenticationError, "AUTH"), (AuthorizationError, "AUTH"),
    (OutOfMemoryError, "OOM"), (ReadOnlyError, "READONLY"), (NoPermissionError, "NOPERM"),
)
_REFUSAL_PREFIXES = (("MISCONF", "MISCONF"), ("BUSY", "BUSY"), ("NOAUTH", "AUTH"), ("WRONGPASS", "AUTH"),
                     ("OOM", "OOM"), ("READONLY", "READONLY"), ("LOADING", "LOADING"), ("NOPERM", "NOPERM"))


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it was raised from or during, and so on (at most MAX_CHAIN)."""
    seen: BaseException | None = exc
    for _ in range(MAX_CHAIN):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def refusal(exc: BaseException, op: str) -> KbError | None:
    """The agent-facing error for a Redis error reply in `exc`'s cause chain, or None (not a refusal we know:
    NOSCRIPT, "Index already exists" and the like are handled by their callers).

    redis-py picks a class for some codes and strips the code from the text; pipelines prefix the text with
    "Command # n (...) of pipeline caused error: "; Lua wraps a refused call as "ERR ... <CODE> ...".
    """
    cause = next((c for c in causes(exc) if isinstance(c, RedisError)), None)
    if cause is None:
        return None
    for cls, code in _REFUSAL_CLASSES:
        if isinstance(cause, cls):
            return RedisRefused(code, op)
    if not isinstance(cause, ResponseError):
        return None
    text = str(cause).rsplit("caused error: ", 1)[-1].strip()
    lower = text.lower()
    if "no such index" in lower or "unknown index name" in lower:
        return IndexMissing(op)
    for prefix, code in _REFUSAL_PREFIXES:
        if text == prefix or text.startswith(prefix + " ") or f" {prefix} " in text:
            return RedisRefused(code, op)
    return None


def connection_refused(exc: BaseException) -> bool:
    """A connection refused (nothing listening on that port) anywhere in the cause chain."""
    return any(isinstance(c, ConnectionRefusedError) or "Error 111 " in str(c) for c in causes(exc))


def connection_cause(exc: BaseException) -> BaseException:
    """The first redis-py connection/timeout error (or OSError) in the cause chain, else `exc` itself."""
    return next((c for c in causes(exc) if isinstance(c, RedisTimeoutError | RedisConnectionError | OSError)), exc)


def short(exc: BaseException) -> str:
    """An error's first line, at most 200 characters, for a message."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
