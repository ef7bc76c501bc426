"""Errors an agent may see; `str(exc)` is exactly what it reads, so each text says what happened and what to do.

    KbError
     ├── InvalidInput      the caller's argument is wrong (names the field and the limit); nothing was changed
     ├── NotFound          no fact under that id
     ├── StoreUnavailable  Redis unreachable or the circuit breaker is open (carries retry_after_s)
     │    └── NotListening nothing has ever answered at KB_REDIS_URL: says how to start Redis, not "retry"
     ├── OperationTimeout  one Redis / file / index operation exceeded its standard deadline
     ├── RedisRefused      Redis answered but refused: out of memory, read-only replica, loading, cannot persist,
     │                     credentials, busy script (Redis is up: the breaker stays closed)
     ├── IndexMissing      the search index vanished (FLUSHALL, FT.DROPINDEX, restart without data); healed by the store
     ├── ServerBusy        too many tool calls in flight in this process
     ├── InternalError     an unexpected failure (a bug): the agent gets a sentence, the log gets the traceback
     └── StartupError      the store cannot be opened as configured (dimension mismatch, no search module)
          └── ModelMismatch the namespace's vectors come from another embedding model than this server's
"""

from __future__ import annotations

__all__ = [
    "REFUSALS",
    "IndexMissing",
    "InternalError",
    "InvalidInput",
    "KbError",
    "ModelMismatch",
    "NotFound",
    "NotListening",
    "OperationTimeout",
    "RedisRefused",
    "ServerBusy",
    "StartupError",
    "StoreUnavailable",
]


class KbError(Exception):
    """Base of every error whose text is meant for the agent."""


class InvalidInput(KbError):
    """An argument is out of its limits; the store was not touched."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid {field}: {problem}")
        self.field = field
        self.problem = problem


class NotFound(KbError):
    """No fact is stored under `fact_id`."""

    def __init__(self, fact_id: str) -> None:
        super().__init__(
            f"fact not found: no fact with fact_id {fact_id!r}; use get_fact(query=...) or semantic_search to find ids"
        )
        self.fact_id = fact_id


class StoreUnavailable(KbError):
    """Redis cannot be reached, or the breaker is failing calls fast while it is down."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        hint = f", retry in {max(1, round(retry_after_s))} s" if retry_after_s is not None else ", retry shortly"
        super().__init__(f"knowledge store unavailable ({reason}){hint}")
        self.reason = reason
        self.retry_after_s = retry_after_s


class NotListening(StoreUnavailable):
    """The first connection of this process was refused: there is no Redis at that address (yet). Retrying will
    not help until someone starts one, so the text says how."""

    def __init__(self, message: str) -> None:
        KbError.__init__(self, message)
        self.reason = message
        self.retry_after_s = None


_TIMEOUT_SUBJECT = {"redis": "Redis did not answer", "file": "file operation did not finish",
                    "index": "embedding/index operation did not finish", "tool": "tool call did not finish"}


class OperationTimeout(KbError):
    """One bounded operation ran past its standard deadline (see `config.Timeouts`)."""

    def __init__(self, operation: str, kind: str, seconds: float) -> None:
        subject = _TIMEOUT_SUBJECT.get(kind, f"{kind} operation did not finish")
        super().__init__(f"{subject} within {seconds:.1f} s ({operation}) — retry shortly")
        self.operation = operation
        self.kind = kind
        self.seconds = seconds


class ServerBusy(KbError):
    """The per-process limit on concurrent tool calls is reached; failing fast beats an unbounded queue."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"server busy: {limit} tool calls already in flight — retry in a moment")
        self.limit = limit


class StartupError(KbError):
    """The store cannot start as configured; the text says what to change."""


class ModelMismatch(StartupError):
    """The namespace records another embedding model than the one this server is configured with: refused at start,
    and on a write once `kb-mcp reindex --re-embed` has moved the namespace under a running server."""

    def __init__(self, namespace: str, recorded: str, configured: str) -> None:
        super().__init__(
            f"namespace {namespace!r} holds vectors of the embedding model {recorded!r}, but this server is "
            f"configured with {configured!r}: vectors of two models cannot be compared, so its searches would rank "
            "by noise. Set KB_EMBEDDING_PROVIDER/KB_EMBEDDING_MODEL back, use another KB_NAMESPACE, or embed every "
            "fact again with the new model: kb-mcp reindex --re-embed (stop the servers still using the old one "
            "first; restart them with the new model)")


# What each refusal means for the agent: (what happened, what to do). Keys are Redis's error codes.
REFUSALS: dict[str, tuple[str, str]] = {
    "OOM": ("Redis is out of memory (maxmemory)", "delete facts or raise maxmemory; reads still work"),
    "READONLY": ("Redis is a read-only replica (e.g. right after a failover)", "retry shortly"),
    "LOADING": ("Redis is loading its data into memory", "retry in a few seconds"),
    "MISCONF": ("Redis cannot persist to disk (MISCONF) and refuses writes",
                "the operator must fix its disk or save settings; reads still work"),
    "NOPERM": ("the Redis user in KB_REDIS_URL lacks a permission (NOPERM)",
               "grant it the commands and keys kb-mcp uses"),
    "AUTH": ("Redis refused the credentials in KB_REDIS_URL (NOAUTH/WRONGPASS)",
             "set the right user and password in KB_REDIS_URL"),
    "BUSY": ("Redis is busy running a script", "retry shortly"),
    "ERR": ("Redis refused the command", "this is unexpected; retry, and report it if it repeats"),
}
RETRYABLE = frozenset({"READONLY", "LOADING", "BUSY"})


class RedisRefused(KbError):
    """Redis answered with an error reply. It is alive, so this never counts towards opening the breaker."""

    def __init__(self, code: str, operation: str, detail: str = "") -> None:
        what, todo = REFUSALS.get(code, REFUSALS["ERR"])
        extra = f": {detail}" if code == "ERR" and detail else ""
        super().__init__(f"{what} ({operation}{extra}) — {todo}")
        self.code = code
        self.operation = operation
        self.retryable = code in RETRYABLE


class IndexMissing(KbError):
    """The namespace's search index does not exist (any more). The store recreates it and retries once, so an
    agent sees this only if that failed too."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"the search index is missing ({operation}; Redis lost its data, or it was dropped) and "
                         "is being recreated — retry shortly")
        self.operation = operation


class InternalError(KbError):
    """Anything unexpected inside a tool call: a bug. The text names the tool and the exception type only (the
    traceback, which may hold data, goes to the server log)."""

    def __init__(self, tool: str, exc: BaseException) -> None:
        super().__init__(f"{tool} failed unexpectedly ({type(exc).__name__}); the details are in the server log — "
                         "retry once, and report it if it repeats")
        self.tool = tool
