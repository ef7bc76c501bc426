"""Test bed: a real Redis Stack (started by scripts/test.sh, or here if absent), one namespace per test, and
private Redis servers for tests that pause, kill or restart Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from kb_mcp.config import Settings
from kb_mcp.embeddings import OnnxMiniLMEmbedding
from kb_mcp.store import KnowledgeStore

ROOT = Path(__file__).resolve().parents[1]
REDIS_SCRIPT = ROOT / "scripts" / "redis-stack.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private Redis Stack on a free loopback port, with its own data dir (AOF on) — safe to pause or kill."""

    def __init__(self, port: int, data_dir: Path) -> None:
        self.port = port
        self.data_dir = data_dir
        self.url = f"redis://127.0.0.1:{port}/0"

    def _script(self, *args: str) -> None:
        env = {**os.environ, "REDIS_PORT": str(self.port), "REDIS_DATA_DIR": str(self.data_dir)}
        subprocess.run(["bash", str(REDIS_SCRIPT), *args], env=env, check=True, capture_output=True, timeout=300)

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        self._script("stop")

    @property
    def pid(self) -> int:
        return int((self.data_dir / "redis.pid").read_text().strip())

    def kill(self) -> None:
        """kill -9: the process dies without flushing anything (AOF writes precede replies, so none are lost)."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                state = Path(f"/proc/{pid}/stat").read_text().split()[2]
                if state == "Z":
                    break
            except (ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.02)
        (self.data_dir / "redis.pid").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The suite's Redis Stack: KB_TEST_REDIS_URL (scripts/test.sh sets it), else one started here."""
    url = os.environ.get("KB_TEST_REDIS_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="kb-test-redis-") as tmp:
        server = RedisServer(free_port(), Path(tmp) / "data")
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[[], RedisServer]]:
    """Private Redis servers for fault tests; all stopped (or killed) at the end."""
    servers: list[RedisServer] = []
    tmp = tempfile.TemporaryDirectory(prefix="kb-fault-redis-")

    def make() -> RedisServer:
        server = RedisServer(free_port(), Path(tmp.name) / f"data-{len(servers)}")
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            server.kill()
    tmp.cleanup()


@pytest.fixture(scope="session")
def embedding() -> Iterator[OnnxMiniLMEmbedding]:
    """One model for the whole suite (loading it costs ~0.3 s)."""
    model = OnnxMiniLMEmbedding()
    yield model


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def make_settings(redis_url: str, namespace: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"redis_url": redis_url, "namespace": namespace}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def store(settings: Settings, embedding: OnnxMiniLMEmbedding) -> AsyncIterator[KnowledgeStore]:
    async with KnowledgeStore.open(settings, embedding=embedding) as kb:
        try:
            yield kb
        finally:
            await kb.drop_namespace()


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client for assertions and fault injection (not the code under test)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
