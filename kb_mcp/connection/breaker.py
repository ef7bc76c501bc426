"""A small circuit breaker: a dead Redis turns from "every call spends the deadline" into "every call fails in
microseconds, one probe per cool-down"."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

from kb_mcp.errors import StoreUnavailable

log = logging.getLogger("kb_mcp.connection.manager")


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """After `threshold` straight failures, fail fast for `cooldown_s` instead of spending the deadline each call.

    After the cool-down one probe call is let through (half-open); its outcome closes or re-opens the circuit.
    The clock is injected so tests can open and close it without sleeping.
    """

    def __init__(self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self.last_error: str | None = None

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def failures(self) -> int:
        return self._failures

    def retry_after_s(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

    def before_call(self) -> None:
        """Raise StoreUnavailable while open; in half-open, admit exactly one probe at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return
        reason = "circuit open"
        if self.last_error:
            reason += f" after: {self.last_error}"
        raise StoreUnavailable(reason, retry_after_s=max(self.retry_after_s(), 1.0))

    def record(self, *, ok: bool, error: str | None = None) -> None:
        """A success closes the circuit; the threshold-th straight failure (or a failed probe) opens it."""
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if ok:
            if self._opened_at is not None:
                log.warning("Redis is back: circuit closed")
            self._failures = 0
            self._opened_at = None
            self.last_error = None
            return
        self._failures += 1
        self.last_error = error
        if was_probe or (self._opened_at is None and self._failures >= self.threshold):
            if self._opened_at is None:
                log.error("circuit opened after %d straight Redis failures: %s", self._failures, error)
            self._opened_at = self._clock()

    def release_probe(self) -> None:
        """A probe that ended without a verdict (cancelled, or a non-connection error) frees the slot."""
        self._probe_in_flight = False
