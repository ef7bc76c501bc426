"""Bench plumbing: timing helpers, the server and Redis processes a run starts, RSS sampling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kb_mcp.config import Settings

Result = dict[str, Any]


async def ok(call: Awaitable[Any]) -> Any:
    result = await call
    if result.is_error:
        raise RuntimeError(result.content[0].text)
    return result


async def timed(call: Awaitable[Any]) -> float:
    t = time.perf_counter()
    await call
    return (time.perf_counter() - t) * 1000


async def ops_per_s(op: Callable[[int], Awaitable[None]], concurrency: int, seconds: float) -> float:
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal count
        i = w
        while time.perf_counter() < deadline:
            await op(i)
            count += 1
            i += concurrency

    t = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return count / (time.perf_counter() - t)


def pcts(values: list[float], already_ms: bool = True) -> Result:
    if not values:
        return {}
    ordered = sorted(values)

    def pick(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "mean": round(statistics.fmean(ordered), 2),
            "n": len(ordered)}


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _sample(self) -> None:
        while True:
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
            await asyncio.sleep(0.2)


def kb_mcp_command() -> str:
    beside = Path(sys.executable).with_name("kb-mcp")
    return str(beside) if beside.exists() else (shutil.which("kb-mcp") or "kb-mcp")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(settings: Settings, **extra_env: str) -> Any:
    import httpx

    port = free_port()
    env = {**os.environ, "KB_REDIS_URL": str(settings.redis_url), "KB_NAMESPACE": settings.namespace,
           "KB_LOG_LEVEL": "WARNING", **extra_env}
    proc = subprocess.Popen([kb_mcp_command(), "serve", "--transport", "http", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kb-mcp HTTP server did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp", proc.pid
    finally:
        proc.terminate()
        proc.wait(15)


@dataclass(frozen=True)
class BenchRedis:
    """The Redis a bench run uses: the user's KB_REDIS_URL (never restarted), or a private Redis Stack that the
    run may stop and start again (to time a restart)."""

    url: str
    env: dict[str, str] | None = None

    @property
    def restartable(self) -> bool:
        return self.env is not None

    def stop(self) -> None:
        """SIGTERM (Redis flushes its AOF and saves an RDB), waiting for the process to exit."""
        assert self.env is not None
        subprocess.run(["bash", str(_stack_script()), "stop"], env={**self.env, "REDIS_STOP_TIMEOUT": "900"},
                       check=True)

    def start(self, wait: bool = True) -> None:
        """Start it again on its data; without `wait`, return while it is still loading."""
        assert self.env is not None
        subprocess.run(["bash", str(_stack_script()), "start"], check=True,
                       env={**self.env, "REDIS_START_WAIT": "yes" if wait else "no"})


def _stack_script() -> Path:
    return Path(__file__).resolve().parents[2] / "scripts" / "redis-stack.sh"


@contextlib.asynccontextmanager
async def redis(settings: Settings) -> AsyncIterator[BenchRedis]:
    """KB_REDIS_URL when the user set it; otherwise a private Redis Stack on a free port, removed afterwards."""
    if "KB_REDIS_URL" in os.environ:
        yield BenchRedis(str(settings.redis_url))
        return
    script = _stack_script()
    if not script.exists():
        raise SystemExit("kb-mcp bench: set KB_REDIS_URL (scripts/redis-stack.sh is not beside this install)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kb-bench-redis-") as tmp:
        env = {**os.environ, "REDIS_PORT": str(port), "REDIS_DATA_DIR": str(Path(tmp) / "data")}
        private = BenchRedis(f"redis://127.0.0.1:{port}/0", env)
        private.start()
        try:
            yield private
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                private.stop()


def machine() -> Result:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


