"""AsyncRedisManager: the process's one Redis client (standalone, cluster or sentinel: see `topology`), its
retry policy and its circuit breaker (`breaker`); what a failure was is read in `refusals`.

redis-py does the pooling and the retrying (connection errors only, with exponential backoff); `bounded()` caps
every command or pipeline at the Redis deadline, so retries can never run past it. The breaker turns a dead Redis
from "every call spends the deadline" into "every call fails in microseconds, one probe per cool-down".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    RedisError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from kb_mcp.config import Settings, TimeoutKind, Timeouts
from kb_mcp.connection.breaker import BreakerState, CircuitBreaker
from kb_mcp.connection.refusals import connection_cause, connection_refused, refusal, short
from kb_mcp.connection.topology import Placement, RedisClient, Topology
from kb_mcp.deadlines import Observer, bounded, no_observer
from kb_mcp.errors import NotListening, OperationTimeout, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
RECOVERY_PROBE_S = 0.25  # how often an open circuit checks whether Redis is back
RECOVERY_PROBE_TIMEOUT_S = 0.5


@dataclass
class _Slot:
    """When a call got its connection slot (see `AsyncRedisManager.run`): a timeout counts against Redis only if
    most of the deadline was spent talking to it, not queueing for a connection."""

    taken_at: float | None = None

    def in_redis_s(self) -> float:
        return 0.0 if self.taken_at is None else time.monotonic() - self.taken_at


class ManagerState(BaseModel):
    """What health checks and metrics show about the Redis side."""

    breaker: str
    consecutive_failures: int
    retry_after_s: float
    pool_in_use: int
    pool_max: int
    last_error: str | None


class AsyncRedisManager:
    """One async pool per process; every command runs through `run()`, which applies breaker, deadline and mapping."""

    def __init__(self, settings: Settings, *, observe: Observer | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._timeouts: Timeouts = settings.timeouts
        self._observe: Observer = observe or no_observer
        self.topology = Topology(settings)
        self.client: RedisClient = self.topology.client
        self.max_connections = settings.redis_max_connections
        self._in_flight = 0
        self._slots = asyncio.Semaphore(settings.redis_max_connections)
        self._answered = False  # has Redis ever answered this process? (a refused first connection: no Redis)
        self.breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown, clock=clock)
        self._watcher: asyncio.Task[None] | None = None

    @property
    def where(self) -> str:
        """Where Redis is, without credentials, for messages."""
        return self.topology.where

    async def run(self, op: str, call: Callable[[RedisClient], Awaitable[T]], kind: TimeoutKind = "redis") -> T:
        """Run `call(client)` (one command or one pipeline) under the breaker and the deadline of `kind` (the
        Redis deadline; "index" for a vector query, which the README promises the LlamaIndex deadline).

        Only Redis itself failing (no connection, or no answer in time) counts towards opening the breaker: not an
        error reply (Redis answered), and not a call that spent its deadline waiting for a free pool connection.
        """
        self.breaker.before_call()
        slot = _Slot()
        try:
            result = await bounded(kind, self._in_slot(call, slot), op, policy=self._timeouts, observe=self._observe)
        except OperationTimeout as exc:
            if slot.in_redis_s() < exc.seconds / 2:  # the deadline went on waiting for a connection, not on Redis
                self.breaker.release_probe()
                raise OperationTimeout(f"{op}, waiting for one of {self.max_connections} Redis connections",
                                       kind, exc.seconds) from None
            self._failed(f"timeout in {op}")
            raise
        except Exception as exc:
            refused = refusal(exc, op)
            if refused is not None:  # an error reply: Redis is alive
                self.breaker.record(ok=True)
                raise refused from exc
            # Libraries wrap redis-py's errors (redisvl raises RedisSearchError from them): classify by the cause.
            cause = connection_cause(exc)
            if isinstance(cause, RedisTimeoutError):
                self._failed(f"timeout in {op}")
                raise OperationTimeout(op, kind, self._timeouts.limit_s(kind)) from exc
            if isinstance(cause, RedisConnectionError | OSError):
                if not self._answered and connection_refused(exc):  # never reached: most likely no Redis there at all
                    self._failed(self.nothing_listening)
                    raise NotListening(self.nothing_listening) from exc
                self._failed(f"cannot connect to {self.where}")
                raise StoreUnavailable(f"cannot reach Redis at {self.where}: {short(cause)}") from exc
            self.breaker.record(ok=True)  # Redis answered (with an error reply) or the bug is ours: it is alive
            raise
        except BaseException:
            self.breaker.release_probe()  # cancelled: no verdict on Redis
            raise
        self.breaker.record(ok=True)
        self._answered = True
        return result

    @property
    def nothing_listening(self) -> str:
        return (f"nothing is listening at {self.where} — start Redis with scripts/run.sh (or scripts/redis-stack.sh "
                "start), or set KB_REDIS_URL to your Redis")

    async def _in_slot(self, call: Callable[[RedisClient], Awaitable[T]], slot: _Slot) -> T:
        """At most `max_connections` calls talk to Redis at once; the rest wait here, where the wait is visible
        (inside the pool it would look like a slow Redis)."""
        async with self._slots:
            slot.taken_at = time.monotonic()
            self._in_flight += 1
            try:
                await self.topology.ready(self.client)  # cluster: the slot map, once (routing by hand needs it)
                return await call(self.client)
            except asyncio.CancelledError:
                # Cancelled mid-call (our deadline or the caller): the cluster client strands that connection, so
                # it is reset BEFORE the slot passes on — the next call would otherwise find none free
                # (MaxConnectionsError when every connection of the node is stranded).
                await asyncio.shield(self.topology.after_cancel())
                raise
            finally:
                self._in_flight -= 1

    async def execute(self, *args: Any, op: str | None = None) -> Any:
        """One raw command (FT.*, HMGET, MODULE LIST...) through `run`; `op` names it in errors (default: the
        command itself)."""

        async def call(r: RedisClient) -> Any:
            return await r.execute_command(*args)

        return await self.run(op or str(args[0]), call)

    def _failed(self, error: str) -> None:
        self.breaker.record(ok=False, error=error)
        if self.breaker.state is not BreakerState.CLOSED and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.create_task(self._watch_recovery(), name="kb-redis-recovery")

    async def _watch_recovery(self) -> None:
        """While the circuit is open, PING every RECOVERY_PROBE_S (short deadline) and close it on the first
        answer: recovery is noticed within a fraction of a second, and no agent's call is spent as the probe."""
        probe = Timeouts(redis_s=min(self._timeouts.redis_s, RECOVERY_PROBE_TIMEOUT_S))
        while self.breaker.state is not BreakerState.CLOSED:
            await asyncio.sleep(RECOVERY_PROBE_S)
            try:
                await bounded("redis", self.topology.probe(), "recovery PING", policy=probe)
            except (OperationTimeout, RedisError, OSError):
                continue
            self.breaker.record(ok=True)

    async def scan(self, key: str, cursor: int, match: str, count: int, kind: str | None) -> tuple[int, list[bytes]]:
        """One bounded SCAN step on the node that holds `key` (cluster: the namespace's shard)."""
        return await self.run("SCAN", lambda r: self.topology.scan(r, key, cursor, match, count, kind))

    async def placement(self, key: str) -> Placement:
        """The mode, the nodes and the one holding `key`, under the Redis deadline."""
        return await self.run("placement", lambda r: self.topology.placement(key))

    async def ping(self) -> float:
        """Round-trip time of PING in seconds (raises like `run`)."""
        started = time.perf_counter()
        await self.run("PING", lambda r: r.ping())
        return time.perf_counter() - started

    def state(self) -> ManagerState:
        return ManagerState(
            breaker=self.breaker.state.value,
            consecutive_failures=self.breaker.failures,
            retry_after_s=round(self.breaker.retry_after_s(), 3),
            pool_in_use=self._in_flight,
            pool_max=self.max_connections,
            last_error=self.breaker.last_error,
        )

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        await self.topology.aclose()
