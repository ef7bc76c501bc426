"""The one place deadlines are applied: every await on Redis, a file or LlamaIndex goes through `bounded()`, and a
whole tool call through `call_deadline()`.

`bounded()` runs on every Redis command, so it must be cheap: instead of one `asyncio.timeout` per command (a timer
handle on the loop's heap each time: docs/benchmarks.md), all in-flight deadlines of a loop share one watchdog that
wakes every WATCHDOG_TICK_S while anything is in flight, so a deadline fires within one tick of its limit.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from kb_mcp.config import TimeoutKind, Timeouts
from kb_mcp.errors import OperationTimeout

T = TypeVar("T")
WATCHDOG_TICK_S = 0.01

#: Called after each bounded operation with (kind, operation, seconds, timed_out); metrics hook in here.
Observer = Callable[[TimeoutKind, str, float, bool], None]


class _Deadline:
    __slots__ = ("at", "cancelling", "expired", "task")

    def __init__(self, at: float, task: asyncio.Task[object]) -> None:
        self.at = at
        self.task = task
        self.cancelling = task.cancelling()
        self.expired = False


class _Watchdog:
    """Cancels the tasks whose deadline has passed; one per event loop, asleep when nothing is in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._deadlines: set[_Deadline] = set()
        self._ticker: asyncio.Task[None] | None = None

    def arm(self, limit_s: float) -> _Deadline:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - bounded() always runs inside a task
            raise RuntimeError("bounded() must be awaited inside a task")
        deadline = _Deadline(self._loop.time() + limit_s, task)
        self._deadlines.add(deadline)
        if self._ticker is None or self._ticker.done():
            self._ticker = self._loop.create_task(self._tick(), name="kb-deadline-watchdog")
        return deadline

    def disarm(self, deadline: _Deadline) -> None:
        self._deadlines.discard(deadline)

    async def _tick(self) -> None:
        while self._deadlines:
            await asyncio.sleep(WATCHDOG_TICK_S)
            now = self._loop.time()
            for deadline in [d for d in self._deadlines if not d.expired and d.at <= now]:
                deadline.expired = True
                deadline.task.cancel()


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = weakref.WeakKeyDictionary()


def _watchdog() -> _Watchdog:
    loop = asyncio.get_running_loop()
    dog = _watchdogs.get(loop)
    if dog is None:
        dog = _watchdogs[loop] = _Watchdog(loop)
    return dog


def no_observer(kind: TimeoutKind, op: str, seconds: float, timed_out: bool) -> None:
    """The Observer that records nothing (no metrics configured)."""
    return None


async def bounded(
    kind: TimeoutKind, awaitable: Awaitable[T], op: str, *, policy: Timeouts, observe: Observer = no_observer
) -> T:
    """Await `awaitable` under the policy deadline for `kind`.

    A dead or paused Redis costs the caller `policy.redis_s` and a typed `OperationTimeout`, never a hang. Only our
    own deadline becomes `OperationTimeout`: a cancellation from elsewhere (the client gave up) stays a cancellation.
    """
    limit = policy.limit_s(kind)
    dog = _watchdog()
    deadline = dog.arm(limit)
    started = time.perf_counter()
    try:
        return await awaitable
    except asyncio.CancelledError:
        if deadline.expired and deadline.task.uncancel() <= deadline.cancelling:
            raise OperationTimeout(op, kind, limit) from None
        raise
    finally:
        dog.disarm(deadline)
        observe(kind, op, time.perf_counter() - started, deadline.expired)


@asynccontextmanager
async def call_deadline(seconds: float, op: str) -> AsyncIterator[None]:
    """The deadline of one whole tool call (KB_TIMEOUT_TOOL): once per call, so a plain asyncio.timeout."""
    try:
        async with asyncio.timeout(seconds) as scope:
            yield
    except TimeoutError:
        if scope.expired():
            raise OperationTimeout(op, "tool", seconds) from None
        raise
