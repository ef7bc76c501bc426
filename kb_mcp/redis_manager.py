"""AsyncRedisManager: the process's one Redis client (standalone, cluster or sentinel: see `redis_topology`), its
retry policy and a small circuit breaker.

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
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
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

from kb_mcp.config import Settings, TimeoutKind, Timeouts
from kb_mcp.errors import IndexMissing, KbError, NotListening, OperationTimeout, RedisRefused, StoreUnavailable
from kb_mcp.redis_topology import Placement, RedisClient, Topology
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
            cause = _redis_cause(exc)
            if isinstance(cause, RedisTimeoutError):
                self._failed(f"timeout in {op}")
                raise OperationTimeout(op, kind, self._timeouts.limit_s(kind)) from exc
            if isinstance(cause, RedisConnectionError | OSError):
                if not self._answered and _refused(exc):  # never reached: most likely no Redis there at all
                    self._failed(self.nothing_listening)
                    raise NotListening(self.nothing_listening) from exc
                self._failed(f"cannot connect to {self.where}")
                raise StoreUnavailable(f"cannot reach Redis at {self.where}: {_short(cause)}") from exc
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


_REFUSAL_CLASSES: tuple[tuple[type[RedisError], str], ...] = (
    (BusyLoadingError, "LOADING"), (AuthenticationError, "AUTH"), (AuthorizationError, "AUTH"),
    (OutOfMemoryError, "OOM"), (ReadOnlyError, "READONLY"), (NoPermissionError, "NOPERM"),
)
_REFUSAL_PREFIXES = (("MISCONF", "MISCONF"), ("BUSY", "BUSY"), ("NOAUTH", "AUTH"), ("WRONGPASS", "AUTH"),
                     ("OOM", "OOM"), ("READONLY", "READONLY"), ("LOADING", "LOADING"), ("NOPERM", "NOPERM"))


def refusal(exc: BaseException, op: str) -> KbError | None:
    """The agent-facing error for a Redis error reply in `exc`'s cause chain, or None (not a refusal we know:
    NOSCRIPT, "Index already exists" and the like are handled by their callers).

    redis-py picks a class for some codes and strips the code from the text; pipelines prefix the text with
    "Command # n (...) of pipeline caused error: "; Lua wraps a refused call as "ERR ... <CODE> ...".
    """
    cause = _redis_error(exc)
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


def _refused(exc: BaseException) -> bool:
    """A connection refused (nothing listening on that port) anywhere in the cause chain."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or "Error 111 " in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _redis_error(exc: BaseException) -> RedisError | None:
    """The first redis-py error in the cause chain (libraries such as redisvl wrap them)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, RedisError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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
