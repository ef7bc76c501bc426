"""KB_REDIS_URL: which kind of Redis deployment kb-mcp talks to, read once from one URL.

    redis://[user:pass@]host:port[/db]                      one server (rediss:// for TLS)
    redis+cluster://[user:pass@]host:port[,host:port...]     Redis Cluster, any reachable nodes as seeds
    redis+sentinel://[user:pass@]host:port[,host:port...]/<service>[/<db>]
                                                            the master Sentinel names for <service>
    rediss+cluster://, rediss+sentinel://                   the same over TLS

The user and password are the data nodes' (every mode); `?sentinel_password=...` (and `sentinel_username`) are the
sentinels' own, when they have any. TLS options ride in the query in every mode, as redis-py names them:
`?ssl_ca_certs=/etc/kb/ca.crt&ssl_certfile=...&ssl_keyfile=...&ssl_cert_reqs=required`.
A foundation module: nothing of kb-mcp is imported here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

Mode = Literal["standalone", "cluster", "sentinel"]
SCHEMES: dict[str, tuple[Mode, bool]] = {
    "redis": ("standalone", False), "rediss": ("standalone", True),
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
}
TLS_OPTIONS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
DEFAULT_PORTS: dict[Mode, int] = {"standalone": 6379, "cluster": 6379, "sentinel": 26379}


@dataclass(frozen=True)
class RedisTarget:
    """A parsed KB_REDIS_URL. `url` is the original (it may hold a password: never print it; see `display`)."""

    mode: Mode
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    db: int = 0
    service: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls_options: tuple[tuple[str, str], ...] = ()  # the ssl_* query parameters

    @property
    def display(self) -> str:
        """The URL without credentials, for logs, errors, kb_stats and doctor."""
        scheme = self.url.split("://", 1)[0]
        hosts = ",".join(f"{host}:{port}" for host, port in self.nodes)
        if self.mode == "sentinel":
            return f"{scheme}://{hosts}/{self.service}/{self.db}"
        return f"{scheme}://{hosts}" + (f"/{self.db}" if self.mode == "standalone" else "")


def parse_redis_url(url: str) -> RedisTarget:
    """Read KB_REDIS_URL; a ValueError says what is wrong in words a user can act on (never echoing a password)."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError("must start with redis://, rediss://, redis+cluster://, rediss+cluster://, "
                         "redis+sentinel:// or rediss+sentinel://")
    mode, tls = SCHEMES[scheme.lower()]
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    nodes = tuple(_node(item, DEFAULT_PORTS[mode]) for item in hostlist.split(",") if item.strip())
    if not nodes:
        raise ValueError("names no host (e.g. redis://127.0.0.1:6379/0)")
    if mode == "standalone" and len(nodes) > 1:
        raise ValueError("names several hosts: use redis+cluster:// for a cluster or redis+sentinel:// for Sentinel")
    path = [p for p in parts.path.split("/") if p]
    service: str | None = None
    if mode == "sentinel":
        if not path:
            raise ValueError("needs the Sentinel service name: redis+sentinel://host:26379[,host:port...]/<service>")
        service, path = unquote(path[0]), path[1:]
    if mode == "cluster" and path and path != ["0"]:
        raise ValueError("a Redis Cluster has only database 0: drop the /<db> from the URL")
    if len(path) > 1:
        raise ValueError("has too many path parts: the database number is the only one")
    db = _db(path[0]) if path else 0
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    return RedisTarget(
        mode=mode, url=url, nodes=nodes, tls=tls, db=db, service=service,
        username=unquote(username) or None, password=unquote(password) or None,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
        tls_options=tuple(sorted((k, v) for k, v in query.items() if k in TLS_OPTIONS)),
    )


def _node(item: str, default_port: int) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep:
        host, port = port, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"has a bad host:port {item.strip()!r}")
    return host, int(port)


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"has a bad database number {text!r} (a number, e.g. /0)")
    return int(text)


def is_loopback(host: str) -> bool:
    """Is `host` this machine only (localhost, 127.0.0.0/8, ::1)?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
