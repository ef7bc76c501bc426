"""`bounded()` and `call_deadline()`: our deadline becomes OperationTimeout within a watchdog tick; a cancellation
from elsewhere stays a cancellation; a library's own TimeoutError passes through unchanged."""

from __future__ import annotations

import asyncio
import time

import pytest

from kb_mcp.config import Timeouts
from kb_mcp.deadlines import WATCHDOG_TICK_S, bounded, call_deadline
from kb_mcp.errors import OperationTimeout

pytestmark = pytest.mark.anyio
FAST = Timeouts(redis_s=0.05, file_s=0.08, index_s=0.11)


async def test_each_kind_gets_its_own_deadline() -> None:
    for kind, limit in (("redis", 0.05), ("file", 0.08), ("index", 0.11)):
        started = time.perf_counter()
        with pytest.raises(OperationTimeout) as info:
            await bounded(kind, asyncio.sleep(5), f"op-{kind}", policy=FAST)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        assert limit <= elapsed < limit + 5 * WATCHDOG_TICK_S + 0.05
        assert (info.value.kind, info.value.operation, info.value.seconds) == (kind, f"op-{kind}", limit)


async def test_result_within_the_deadline_is_returned_and_observed() -> None:
    seen: list[tuple[str, str, bool]] = []

    async def answer() -> int:
        await asyncio.sleep(0.001)
        return 42

    assert await bounded("redis", answer(), "answer", policy=FAST,
                         observe=lambda kind, op, s, timed_out: seen.append((kind, op, timed_out))) == 42
    assert seen == [("redis", "answer", False)]


async def test_outside_cancellation_is_not_a_timeout() -> None:
    task = asyncio.create_task(bounded("redis", asyncio.sleep(5), "op", policy=Timeouts(redis_s=10)))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_library_timeout_error_passes_through() -> None:
    async def library() -> None:
        raise TimeoutError("the library's own")

    with pytest.raises(TimeoutError, match="the library's own"):
        await bounded("redis", library(), "op", policy=FAST)


async def test_many_concurrent_deadlines_share_one_watchdog() -> None:
    results = await asyncio.gather(*(bounded("redis", asyncio.sleep(5 if i % 2 else 0), "op", policy=FAST)
                                     for i in range(200)), return_exceptions=True)
    timeouts = [r for r in results if isinstance(r, OperationTimeout)]
    assert len(timeouts) == 100 and results.count(None) == 100


async def test_nested_deadline_inside_a_call_deadline() -> None:
    with pytest.raises(OperationTimeout, match=r"tool call did not finish within 0.1 s \(search\)"):
        async with call_deadline(0.1, "search"):
            await bounded("index", asyncio.sleep(5), "embed", policy=Timeouts(index_s=10))
