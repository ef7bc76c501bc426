"""The one place a deadline is applied: every await on Redis, a file or LlamaIndex goes through `bounded()`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kb_mcp.config import TimeoutKind, Timeouts
from kb_mcp.errors import OperationTimeout

T = TypeVar("T")

#: Called after each bounded operation with (kind, operation, seconds, timed_out); metrics hook in here.
Observer = Callable[[TimeoutKind, str, float, bool], None]


def _no_observer(kind: TimeoutKind, op: str, seconds: float, timed_out: bool) -> None:
    return None


async def bounded(
    kind: TimeoutKind, awaitable: Awaitable[T], op: str, *, policy: Timeouts, observe: Observer = _no_observer
) -> T:
    """Await `awaitable` under the policy deadline for `kind`.

    A dead or paused Redis costs the caller `policy.redis_s` and a typed `OperationTimeout`, never a hang.
    Only our own deadline becomes `OperationTimeout`; a library's own TimeoutError passes through unchanged.
    """
    limit = policy.limit_s(kind)
    started = time.perf_counter()
    timed_out = False
    try:
        async with asyncio.timeout(limit) as deadline:
            return await awaitable
    except TimeoutError:
        if deadline.expired():
            timed_out = True
            raise OperationTimeout(op, kind, limit) from None
        raise
    finally:
        observe(kind, op, time.perf_counter() - started, timed_out)
