"""`kb-mcp doctor`: check everything kb-mcp depends on and print a table with a verdict.

Each check says what it found and, when something is wrong, what to do. Exit 0 for OK or WARN, 1 for FAIL.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

from kb_mcp.config import Settings
from kb_mcp.connection.topology import RedisClient
from kb_mcp.deadlines import bounded
from kb_mcp.errors import KbError, StartupError
from kb_mcp.store.replies import as_text, pairs

Level = Literal["ok", "warn", "fail"]


@dataclass
class Check:
    name: str
    level: Level
    detail: str


async def run_doctor(settings: Settings) -> int:
    from kb_mcp.embeddings.factory import build_embedding
    from kb_mcp.store import Backend

    checks: list[Check] = []
    t = settings.timeouts
    checks.append(Check("timeouts", "ok", f"redis {t.redis_s} s, file {t.file_s} s, index {t.index_s} s, "
                                          f"tool {t.tool_s} s"))
    if t.tool_s < t.redis_s or t.tool_s < t.index_s:
        checks[-1] = Check("timeouts", "warn", checks[-1].detail + " (tool deadline is shorter than a step's)")
    started = time.perf_counter()
    try:
        embedding = build_embedding(settings)
        vector = (await bounded("index", embedding.aembed(["kb-mcp doctor"]), "embed", policy=t))[0]
        checks.append(Check("embedding model", "ok" if len(vector) == embedding.dim else "fail",
                            f"{embedding.model_name}, {len(vector)}-d, first call "
                            f"{(time.perf_counter() - started) * 1000:.0f} ms"))
    except Exception as exc:  # the doctor reports every failure instead of raising
        checks.append(Check("embedding model", "fail", f"{type(exc).__name__}: {exc}"))
        embedding = None

    async with Backend.open(settings, embedding=embedding) as backend:
        manager = backend.manager
        try:
            rtt = await manager.ping()
            checks.append(Check("redis", "ok", f"{manager.where} answers PING in {rtt * 1000:.1f} ms"))
            store = backend.store(settings.namespace)
            placement = await store.placement()
            checks.append(Check("deployment", "ok", f"{placement.mode}: {', '.join(placement.nodes)}; namespace "
                                                    f"{settings.namespace!r} on {placement.owner}"
                                                    + (f" (slot {placement.slot})" if placement.slot is not None
                                                       else "")))
            key = store.index_name  # server-wide questions go to the node holding the namespace

            def on_owner(r: RedisClient) -> dict[str, Any]:
                return manager.topology.owner_kwargs(r, key)

            info = await manager.run("INFO", lambda r: r.info("server", **on_owner(r)))
            version = str(info.get("redis_version", "?"))
            major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
            checks.append(Check("redis version", "ok" if major_minor >= (7, 2) else "warn",
                                f"{version}" + ("" if major_minor >= (7, 2) else
                                                " (KB_DURABILITY=fsync needs WAITAOF, Redis >= 7.2)")))
            modules = await manager.run("MODULE LIST", lambda r: r.execute_command("MODULE", "LIST", **on_owner(r)))
            names = {_module_name(m): _module_ver(m) for m in modules}
            search = names.get("search") or names.get("ft")
            checks.append(Check("search module", "ok" if search else "fail",
                                f"RediSearch {search}" if search else
                                "not loaded: kb-mcp needs Redis Stack (scripts/redis-stack.sh start)"))
            aof = await manager.run("CONFIG GET", lambda r: r.config_get("append*", **on_owner(r)))
            checks.append(_persistence(_val(aof, "appendonly"), _val(aof, "appendfsync"), settings.durability))
            replication = await manager.run("INFO", lambda r: r.info("replication", **on_owner(r)))
            replicas = int(replication.get("connected_slaves", 0))
            wants_replica = settings.durability == "replica"
            checks.append(Check("replicas", "fail" if wants_replica and replicas < 1 else "ok",
                                f"{replicas} connected to the namespace's master" + (
                                    " (KB_DURABILITY=replica: every write waits for one)" if wants_replica else "")))
            if search and embedding is not None:
                try:
                    await store.ensure_index()
                except StartupError as exc:  # another model's vectors, another dimension: what to do is in it
                    checks.append(Check("index", "fail", str(exc)))
                else:
                    stats = await store.stats()
                    checks.append(Check("index", "ok", f"{stats.index}: {stats.facts} facts, {stats.index_state}, "
                                                       f"{stats.vector_algorithm} {stats.dimensions}-d, vectors of "
                                                       f"{stats.embedding}"))
                    drift = await store.index_drift()
                    if drift:
                        checks.append(Check("index settings", "warn", f"built with {drift}: run `kb-mcp reindex` "
                                                                      "to rebuild it (no data loss)"))
        except KbError as exc:
            checks.append(Check("redis", "fail", str(exc)))
        checks.append(Check("breaker", "ok" if manager.breaker.state.value == "closed" else "warn",
                            manager.state().model_dump_json()))
    return _report(checks)


def _persistence(appendonly: str, appendfsync: str, durability: str) -> Check:
    """Whether a crash of Redis can lose an acknowledged write: only `appendfsync always`, or kb-mcp waiting for the
    fsync or a replica, rules it out (with `everysec` Redis postpones the AOF write, not the reply, while an fsync
    is running)."""
    if appendonly != "yes":
        return Check("persistence (AOF)", "warn",
                     "appendonly no: a Redis crash loses recent writes (CONFIG SET appendonly yes)")
    if appendfsync == "always" or durability != "none":
        return Check("persistence (AOF)", "ok", f"appendonly yes, appendfsync {appendfsync}"
                     + ("" if durability == "none" else f", KB_DURABILITY={durability}"))
    loss = ("a Redis crash can lose up to 2 s of acknowledged writes when the disk is slow"
            if appendfsync == "everysec" else "an OS crash can lose the acknowledged writes of the last 30 s or so")
    return Check("persistence (AOF)", "warn", f"appendonly yes, appendfsync {appendfsync}: {loss} "
                                              "(CONFIG SET appendfsync always, or KB_DURABILITY=fsync)")


def _val(reply: dict[object, object], key: str) -> str:
    value = reply.get(key, reply.get(key.encode(), "?"))
    return value.decode() if isinstance(value, bytes) else str(value)


def _module_name(entry: object) -> str:
    return as_text(pairs(entry).get("name", "")).lower()


def _module_ver(entry: object) -> str:
    raw = int(as_text(pairs(entry).get("ver", 0)) or 0)
    return f"{raw // 10000}.{raw // 100 % 100}.{raw % 100}"


def _report(checks: list[Check]) -> int:
    width = max(len(c.name) for c in checks)
    marks = {"ok": "OK  ", "warn": "WARN", "fail": "FAIL"}
    for check in checks:
        print(f"{marks[check.level]}  {check.name:<{width}}  {check.detail}")
    worst = "fail" if any(c.level == "fail" for c in checks) else "warn" if any(
        c.level == "warn" for c in checks) else "ok"
    verdict = {"ok": "all checks passed", "warn": "usable, with warnings above",
               "fail": "NOT usable: fix the FAIL lines above"}[worst]
    print(f"\nverdict: {marks[worst].strip()} - {verdict}")
    sys.stdout.flush()
    return 1 if worst == "fail" else 0
