"""A local Redis Cluster (3 primaries + 3 replicas) and a Sentinel set (master, replica, 3 sentinels), started with
scripts/redis-stack.sh on free loopback ports — real processes, safe to kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from kb_mcp.connection.url import parse_redis_url
from tests.support.redis import REDIS_SCRIPT, free_port_run

T = TypeVar("T")


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}  # not the suite's own Redis
    return {**env, **extra}


def kill9(pid_file: Path) -> None:
    """kill -9 the process named by `pid_file` and wait until it is gone."""
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                break
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.02)
    pid_file.unlink(missing_ok=True)


def make_tls_dir(path: Path) -> Path:
    """A throw-away CA and a server certificate for 127.0.0.1 (ca.crt, server.crt, server.key), as
    redis-stack.sh's REDIS_TLS_DIR wants them."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    path.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(path / "ca.crt"))
    cert.private_key_pem.write_to_path(str(path / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(path / "server.crt"))
    return path


def _tls(tls_dir: Path | None) -> tuple[str, str]:
    """URL scheme and query for a deployment with or without TLS."""
    return ("rediss", f"?ssl_ca_certs={tls_dir / 'ca.crt'}") if tls_dir else ("redis", "")


class LocalTopology:
    """A topology of `redis-stack.sh <kind>` on free loopback ports; `start` is idempotent and restarts dead nodes,
    `kill` is kill -9 of the data node on `port`."""

    kind = ""
    node_dir = ""  # the data dir of a node, by port

    def __init__(self, root: Path, env: dict[str, str], password: str, tls_dir: Path | None) -> None:
        self.root = root
        self.env = _env({**env, "REDIS_PASSWORD": password, "REDIS_TLS_DIR": str(tls_dir or "")})
        scheme, self._query = _tls(tls_dir)
        self._prefix = f"{scheme}+{self.kind}://" + (f":{password}@" if password else "")

    def start(self) -> None:
        """Start (or restart the dead nodes) and wait until every replica is in sync."""
        self._script("start")

    def stop(self) -> None:
        self._script("stop")

    def kill(self, port: int) -> None:
        kill9(self.root / self.node_dir.format(port=port) / "redis.pid")

    def _script(self, *args: str) -> None:
        subprocess.run(["bash", str(REDIS_SCRIPT), self.kind, *args], env=self.env, check=True,
                       capture_output=True, timeout=300)


class LocalCluster(LocalTopology):
    """`redis-stack.sh cluster`: nodes on base..base+5 (the first three start as primaries)."""

    kind, node_dir = "cluster", "node-{port}"

    def __init__(self, root: Path, node_timeout_ms: int = 1500, password: str = "", tls_dir: Path | None = None
                 ) -> None:
        self.base = free_port_run(6, bus=True)
        super().__init__(root, {"REDIS_CLUSTER_PORT": str(self.base), "REDIS_CLUSTER_DIR": str(root),
                                "REDIS_CLUSTER_NODE_TIMEOUT": str(node_timeout_ms)}, password, tls_dir)
        self.ports = list(range(self.base, self.base + 6))
        self.url = self._prefix + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3]) + self._query


class LocalSentinel(LocalTopology):
    """`redis-stack.sh sentinel`: master on base, replica on base+1, sentinels on base+2..base+4."""

    kind, node_dir = "sentinel", "data-{port}"
    SERVICE = "kb"

    def __init__(self, root: Path, down_after_ms: int = 1000, password: str = "", tls_dir: Path | None = None
                 ) -> None:
        self.base = free_port_run(5)
        super().__init__(root, {"REDIS_SENTINEL_DATA_PORT": str(self.base), "REDIS_SENTINEL_PORT": str(self.base + 2),
                                "REDIS_SENTINEL_DIR": str(root), "REDIS_SENTINEL_SERVICE": self.SERVICE,
                                "REDIS_SENTINEL_DOWN_AFTER": str(down_after_ms)}, password, tls_dir)
        self.data_ports = [self.base, self.base + 1]
        self.sentinel_ports = [self.base + 2, self.base + 3, self.base + 4]
        self.url = (self._prefix + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{self.SERVICE}"
                    + self._query)


@contextmanager
def running(make: Callable[[Path], T], prefix: str) -> Iterator[T]:
    """A topology (or server) made in a temporary folder by `make`, started, and stopped at the end (also when
    its start failed half-way)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        deployment = make(Path(tmp))
        try:
            deployment.start()  # type: ignore[attr-defined]
            yield deployment
        finally:
            deployment.stop()  # type: ignore[attr-defined]


async def owner_client(url: str, namespace: str) -> aioredis.Redis:
    """A plain client of the one server holding `namespace` under `url` (any KB_REDIS_URL mode)."""
    target = parse_redis_url(url)
    if target.mode == "standalone":
        return aioredis.Redis.from_url(url)
    if target.mode == "cluster":
        cluster = RedisCluster(host=target.nodes[0][0], port=target.nodes[0][1])
        try:
            await cluster.initialize()
            node = cluster.get_node_from_key(f"{{{namespace}}}:idx")
            return aioredis.Redis(host=node.host, port=node.port)
        finally:
            await cluster.aclose()
    sentinel = Sentinel(list(target.nodes))
    host, port = await sentinel.discover_master(target.service or "")
    for conn in sentinel.sentinels:
        await conn.aclose()
    return aioredis.Redis(host=host, port=port, db=target.db)
