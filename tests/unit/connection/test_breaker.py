"""The circuit breaker, driven by an injected clock: opens, fails fast, probes once, closes."""

from __future__ import annotations

import pytest

from kb_mcp.connection.breaker import BreakerState, CircuitBreaker
from kb_mcp.errors import StoreUnavailable


def test_breaker_opens_fails_fast_then_probes_once() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, cooldown_s=5.0, clock=lambda: now[0])
    for _ in range(2):
        breaker.before_call()
        breaker.record(ok=False, error="boom")
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    breaker.record(ok=False, error="boom")
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(StoreUnavailable, match=r"circuit open after: boom\), retry in 5 s"):
        breaker.before_call()
    now[0] = 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the probe
    with pytest.raises(StoreUnavailable):
        breaker.before_call()  # only one probe at a time
    breaker.record(ok=False, error="still down")
    assert breaker.state is BreakerState.OPEN
    now[0] = 10.0
    breaker.before_call()
    breaker.record(ok=True)
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0
