"""Integration test bed: a real Redis Stack (started by scripts/test.sh, or here if absent), one namespace per test,
and private Redis servers for tests that pause, kill or restart Redis."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from kb_mcp.config import Settings
from kb_mcp.embeddings.onnx import OnnxMiniLMEmbedding
from kb_mcp.store import KnowledgeStore
from tests.support.redis import RedisServer, free_port
from tests.support.topology import LocalCluster, LocalSentinel, owner_client, running


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The suite's Redis Stack: KB_TEST_REDIS_URL (scripts/test.sh sets it), else one started here."""
    url = os.environ.get("KB_TEST_REDIS_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="kb-test-redis-") as tmp:
        server = RedisServer(free_port(), Path(tmp) / "data")
        try:
            server.start()
            yield server.url
        finally:
            server.stop()


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    """A 3-primary, 3-replica Redis Cluster for the whole session (started on first use; failover tests make
    their own)."""
    with running(LocalCluster, "kb-test-cluster-") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def local_sentinel() -> Iterator[LocalSentinel]:
    """A master, a replica and 3 sentinels for the whole session (started on first use)."""
    with running(LocalSentinel, "kb-test-sentinel-") as sentinel:
        yield sentinel


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    """Private Redis servers for fault tests; all stopped (or killed) at the end."""
    servers: list[RedisServer] = []
    tmp = tempfile.TemporaryDirectory(prefix="kb-fault-redis-")

    def make(**env: str) -> RedisServer:
        """A started server; `env` adds redis-stack.sh settings (REDIS_APPENDFSYNC=everysec...)."""
        server = RedisServer(free_port(), Path(tmp.name) / f"data-{len(servers)}")
        server.start(**env)
        servers.append(server)
        return server

    yield make
    for server in servers:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            server.kill()
    tmp.cleanup()


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
async def raw_redis(redis_url: str, namespace: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client for assertions and fault injection (not the code under test): connected to the server that
    holds the test's namespace (the cluster shard that owns its slot; the master Sentinel names)."""
    client = await owner_client(redis_url, namespace)
    try:
        yield client
    finally:
        await client.aclose()
