"""AsyncRedisManager: the process's one `redis.asyncio` pool, its retry policy and a small circuit breaker.

redis-py does the pooling and the retrying (connection errors only, with exponential backoff); `bounded()` caps
every command or pipeline at the Redis deadline, so retries can never run past it. The breaker turns a dead Redis
from "every call spends the deadline" into "every call fails in microseconds, one probe per cool-down".
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kb_mcp.config import Settings, Timeouts
from kb_mcp.errors import OperationTimeout, StoreUnavailable
from kb_mcp.timeouts import Observer, bounded, no_observer

log = logging.getLogger(__name__)
T = TypeVar("T")
RECOVERY_PROBE_S = 0.25  # how often an open circuit checks whether Redis is back
RECOVERY_PROBE_TIMEOUT_S = 0.5


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
        self._url = str(settings.redis_url)
        self._observe: Observer = observe or no_observer
        t = self._timeouts.redis_s
        self.pool: BlockingConnectionPool = BlockingConnectionPool.from_url(
            self._url,
            max_connections=settings.redis_max_connections,
            timeout=t,  # wait this long for a free slot, then fail (bounded() fires first)
            # No socket_timeout: bounded() already caps every command, and redis-py would add an asyncio.wait_for
            # (a Task) on each send and a timer on each read — measured as most of the manager's overhead.
            socket_timeout=None,
            socket_connect_timeout=t,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=2),
            retry_on_error=[RedisConnectionError],  # a stalled server is not retried: it would only stall again
            decode_responses=False,  # vectors are binary
        )
        self.client: Redis = Redis.from_pool(self.pool)
        self.breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown, clock=clock)
        self._watcher: asyncio.Task[None] | None = None

    @property
    def where(self) -> str:
        """host:port, without credentials, for messages."""
        kwargs = self.pool.connection_kwargs
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"

    async def run(self, op: str, call: Callable[[Redis], Awaitable[T]]) -> T:
        """Run `call(client)` (one command or one pipeline) under the breaker and the Redis deadline."""
        self.breaker.before_call()
        try:
            result = await bounded("redis", call(self.client), op, policy=self._timeouts, observe=self._observe)
        except OperationTimeout:
            self._failed(f"timeout in {op}")
            raise
        except Exception as exc:
            # Libraries wrap redis-py's errors (redisvl raises RedisSearchError from them): classify by the cause.
            cause = _redis_cause(exc)
            if isinstance(cause, RedisTimeoutError):
                self._failed(f"timeout in {op}")
                raise OperationTimeout(op, "redis", self._timeouts.redis_s) from exc
            if isinstance(cause, RedisConnectionError | OSError):
                self._failed(f"cannot connect to {self.where}")
                raise StoreUnavailable(f"cannot reach Redis at {self.where}: {_short(cause)}") from exc
            self.breaker.record(ok=True)  # Redis answered (with an error reply) or the bug is ours: it is alive
            raise
        except BaseException:
            self.breaker.release_probe()  # cancelled: no verdict on Redis
            raise
        self.breaker.record(ok=True)
        return result

    async def execute(self, *args: Any, op: str | None = None) -> Any:
        """One raw command (FT.*, HMGET, MODULE LIST...) through `run`; `op` names it in errors (default: the
        command itself)."""

        async def call(r: Redis) -> Any:
            return await r.execute_command(*args)  # type: ignore[no-untyped-call]

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
                await bounded("redis", self.client.ping(), "recovery PING", policy=probe)
            except (OperationTimeout, RedisError, OSError):
                continue
            self.breaker.record(ok=True)

    async def ping(self) -> float:
        """Round-trip time of PING in seconds (raises like `run`)."""
        started = time.perf_counter()
        await self.run("PING", lambda r: r.ping())
        return time.perf_counter() - started

    def state(self) -> ManagerState:
        in_use = len(getattr(self.pool, "_in_use_connections", ()))
        return ManagerState(
            breaker=self.breaker.state.value,
            consecutive_failures=self.breaker.failures,
            retry_after_s=round(self.breaker.retry_after_s(), 3),
            pool_in_use=in_use,
            pool_max=self.pool.max_connections,
            last_error=self.breaker.last_error,
        )

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        await self.client.aclose()


def _redis_cause(exc: BaseException) -> BaseException:
    """The first redis-py connection/timeout error (or OSError) in the cause chain, else `exc` itself."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, RedisTimeoutError | RedisConnectionError | OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
