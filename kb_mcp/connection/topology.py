"""The one Redis client of a process, for each deployment KB_REDIS_URL can name: one server, a Redis Cluster, or the
master Sentinel points at. Everything that differs between the three lives here; the manager and the store ask.

- standalone: `redis.asyncio.Redis` over a `BlockingConnectionPool`.
- cluster: `redis.asyncio.cluster.RedisCluster` (seed nodes; MOVED/ASK and failover re-discovery are redis-py's).
  A namespace's keys and index share one hash tag, so everything of a namespace is on one shard: commands that
  carry no key of their own (SCAN, WAIT, WAITAOF) are sent to the node that owns the namespace's slot.
- sentinel: `Sentinel(...).master_for(service)`: every new connection asks the sentinels where the master is now,
  and a connection that finds a demoted master (READONLY) reconnects; redis-py does both.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from kb_mcp.config import Settings
from kb_mcp.connection.url import RedisTarget

log = logging.getLogger(__name__)
RedisClient = Redis | RedisCluster  # what a call passed to AsyncRedisManager.run receives


class Placement(BaseModel):
    """Where a namespace lives, for kb_stats, /health and doctor."""

    mode: str
    url: str  # KB_REDIS_URL without credentials
    nodes: list[str]  # cluster: primaries and replicas; sentinel: the master now and its replicas; standalone: it
    owner: str | None = None  # the node holding the namespace (cluster: its shard's primary; sentinel: the master)
    slot: int | None = None  # cluster: the hash slot of the namespace's tag


def tls_kwargs(target: RedisTarget) -> dict[str, Any]:
    """The URL's ssl_* options as redis-py's keyword arguments (standalone URLs carry them to redis-py as they are)."""
    options: dict[str, Any] = dict(target.tls_options)
    if "ssl_check_hostname" in options:
        options["ssl_check_hostname"] = options["ssl_check_hostname"].lower() in ("1", "true", "yes")
    return options


class Topology:
    """The client of one KB_REDIS_URL and the few things that depend on the mode."""

    def __init__(self, settings: Settings) -> None:
        self.target: RedisTarget = settings.redis_target
        self.mode = self.target.mode
        limit = settings.redis_max_connections
        t = settings.timeouts.redis_s
        common: dict[str, Any] = {
            # No socket_timeout: bounded() already caps every command, and redis-py would add an asyncio.wait_for
            # (a Task) on each send and a timer on each read — measured as most of the manager's overhead.
            "socket_timeout": None,
            "socket_connect_timeout": t,
            # No health_check_interval: redis-py 5.3 hangs its pre-command PING (with retries) on a Redis that
            # answers LOADING (measured). A dead idle connection fails its next command instead, which is retried.
            "health_check_interval": 0,
            "retry": Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=2),
            "retry_on_error": [RedisConnectionError],  # a stalled server is not retried: it would only stall again
            "decode_responses": False,  # vectors are binary
            "username": self.target.username,
            "password": self.target.password,
        }
        tls: dict[str, Any] = {"ssl": True, **tls_kwargs(self.target)} if self.target.tls else {}
        self._sentinel: Sentinel | None = None
        self.client: RedisClient
        if self.mode == "cluster":
            self.client = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in self.target.nodes],
                max_connections=limit,  # per node; the manager's semaphore keeps calls below it
                require_full_coverage=False,  # a shard failing over must not stop the namespaces on the others
                cluster_error_retry_attempts=2,
                **common, **tls)
        elif self.mode == "sentinel":
            sentinel_auth = {"username": self.target.sentinel_username, "password": self.target.sentinel_password}
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(self.target.nodes), socket_connect_timeout=t, socket_timeout=t,
                sentinel_kwargs={**sentinel_auth, "socket_connect_timeout": t, "socket_timeout": t, **tls})
            self.client = self._sentinel.master_for(
                self.target.service or "", redis_class=Redis, max_connections=limit,
                db=self.target.db, **common, **tls)
        else:
            pool = BlockingConnectionPool.from_url(
                self.target.url, max_connections=limit,
                timeout=t,  # wait this long for a free slot, then fail (bounded() fires first)
                **{k: v for k, v in common.items() if k not in ("username", "password")})
            self.client = Redis.from_pool(pool)

    @property
    def where(self) -> str:
        """Where Redis is, without credentials, for messages."""
        if self.mode == "standalone":
            host, port = self.target.nodes[0]
            return f"{host}:{port}"
        return self.target.display

    async def ready(self, client: RedisClient) -> None:
        """Cluster: learn the slot map before routing by hand (a no-op once known, and in the other modes)."""
        if isinstance(client, RedisCluster):
            await client.initialize()

    def owner_kwargs(self, client: RedisClient, key: str) -> dict[str, Any]:
        """kwargs that send a keyless command (WAIT, WAITAOF, SCAN) to the node holding `key` (after `ready`)."""
        if isinstance(client, RedisCluster):
            return {"target_nodes": client.get_node_from_key(key)}
        return {}

    async def scan(self, client: RedisClient, key: str, cursor: int, match: str, count: int,
                   kind: str | None) -> tuple[int, list[bytes]]:
        """One SCAN step over the keys of the node holding `key` (cluster: the namespace's shard)."""
        found = await client.scan(cursor=cursor, match=match, count=count, _type=kind,
                                  **self.owner_kwargs(client, key))
        next_cursor, keys = found
        if isinstance(next_cursor, dict):  # the cluster client answers {node: cursor}
            next_cursor = next(iter(next_cursor.values()), 0)
        return int(next_cursor), list(keys)

    async def after_cancel(self) -> None:
        """A deadline cancelled a call mid-reply. The cluster client then keeps that connection checked out for
        good (redis-py 5.3 releases it only on a finished read); closing the client makes the next call re-learn
        the cluster on fresh connections. The other modes' pools give the connection back themselves."""
        if isinstance(self.client, RedisCluster):
            await self.client.aclose()

    async def probe(self) -> None:
        """The recovery probe while the circuit is open: any answering node will do (cluster: a random one)."""
        if isinstance(self.client, RedisCluster):
            await self.client.initialize()
            await self.client.ping(target_nodes=RedisCluster.RANDOM)
        else:
            await self.client.ping()

    async def placement(self, key: str) -> Placement:
        """Which nodes there are and which holds `key` (the namespace) — asks Redis (or the sentinels)."""
        if isinstance(self.client, RedisCluster):
            await self.client.initialize()
            owner = self.client.get_node_from_key(key)
            primaries = self.client.get_primaries()
            replicas = self.client.get_replicas()
            return Placement(mode=self.mode, url=self.target.display, nodes=sorted(
                [f"{n.name} (primary)" for n in primaries] + [f"{n.name} (replica)" for n in replicas]),
                owner=owner.name, slot=key_slot(key.encode()))
        if self._sentinel is not None:
            service = self.target.service or ""
            host, port = await self._sentinel.discover_master(service)
            master = f"{host}:{port}"
            replicas = [":".join(map(str, address)) + " (replica)"
                        for address in await self._sentinel.discover_slaves(service)]
            return Placement(mode=self.mode, url=self.target.display, nodes=[f"{master} (master)", *replicas],
                             owner=master)
        return Placement(mode=self.mode, url=self.target.display, nodes=[self.where], owner=self.where)

    async def aclose(self) -> None:
        await self.client.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()
