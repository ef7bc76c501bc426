"""Errors an agent may see; `str(exc)` is exactly what it reads, so each text says what happened and what to do.

    KbError
     ├── InvalidInput      the caller's argument is wrong (names the field and the limit); nothing was changed
     ├── NotFound          no fact under that id
     ├── StoreUnavailable  Redis unreachable or the circuit breaker is open (carries retry_after_s)
     ├── OperationTimeout  one Redis / file / index operation exceeded its standard deadline
     ├── ServerBusy        too many tool calls in flight in this process
     └── StartupError      the store cannot be opened as configured (dimension mismatch, no search module)
"""

from __future__ import annotations

__all__ = [
    "InvalidInput",
    "KbError",
    "NotFound",
    "OperationTimeout",
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
