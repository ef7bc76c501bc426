"""Writing facts: the one Lua script that puts a fact, the pipelined writer, and durability (WAITAOF).

Every write goes through `Writer.write`: one pipeline on one connection, so `WAITAOF` (KB_DURABILITY=fsync) follows
the writes it must cover on the connection that made them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from string import Template
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError

from kb_mcp.errors import StoreUnavailable
from kb_mcp.store.context import StoreContext
from kb_mcp.store.records import Record
from kb_mcp.store.replies import as_text
from kb_mcp.store.schema import F_CREATED, F_HASH

WRITE_BATCH = 256  # facts per pipeline on the bulk paths
PutMode = Literal["upsert", "create", "replace"]

# Write one fact atomically. KEYS[1] fact key; ARGV: mode, now, content_hash, then field/value pairs.
#   'upsert'  replace the hash, keeping created_at (or now for a new fact)  -> {1|0 created, created_at}
#   'create'  write only if absent; the same content there is a dedup hit  -> {0, created_at}; other content -> {-1}
#   'replace' replace the hash with exactly the given fields (import, documents)
# DEL + HSET in one script: stale fields never linger and a fact and its vector can never disagree.
PUT_SCRIPT = Template("""
local mode = ARGV[1]
if mode == 'replace' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
  return {1, ARGV[2]}
end
local existing = redis.call('HGET', KEYS[1], '$created')
if existing and mode == 'create' then
  if redis.call('HGET', KEYS[1], '$hash') == ARGV[3] then return {0, existing} end
  return {-1, existing}
end
local created = existing or ARGV[2]
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '$created', created, unpack(ARGV, 4))
if existing then return {0, created} end
return {1, created}
""").substitute(created=F_CREATED, hash=F_HASH)
PUT_SHA = hashlib.sha1(PUT_SCRIPT.encode()).hexdigest()


class Writer:
    """Pipelined, durable writes of whole fact hashes."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    async def write(self, op: str, add: Callable[[Pipeline], Awaitable[Any]]) -> list[Any]:
        """Queue writes with `add(pipe)` and send them as one pipeline (one connection, one round trip).

        With KB_DURABILITY=fsync, `WAITAOF 1 0` rides the same pipeline: WAITAOF only covers the writes of its own
        connection, so it must follow them on that connection. Returns the replies of the queued writes.
        """
        fsync = self._ctx.settings.durability == "fsync"
        redis_s = self._ctx.settings.timeouts.redis_s

        async def run(r: Redis) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            try:
                await add(pipe)
                if fsync:
                    pipe.execute_command("WAITAOF", 1, 0, int(redis_s * 1000))
                return await pipe.execute()
            finally:
                await asyncio.shield(pipe.reset())  # type: ignore[no-untyped-call]  # hand the connection back on every path, even when cancelled

        try:
            try:
                replies = await self._ctx.redis(op, run)
            except NoScriptError:  # Redis restarted (script cache is empty): load it once, replay (writes idempotent)
                await self._ctx.redis("SCRIPT LOAD", lambda r: r.script_load(PUT_SCRIPT))
                replies = await self._ctx.redis(op, run)
        except ResponseError as exc:
            if fsync and "appendonly" in str(exc).lower():
                raise StoreUnavailable(f"{op}: KB_DURABILITY=fsync needs AOF on the Redis server (appendonly yes); "
                                       "the write itself was applied") from exc
            raise
        if fsync:
            local = int(replies.pop()[0])
            if local < 1:
                raise StoreUnavailable(f"{op}: the write was applied but Redis did not confirm the AOF fsync within "
                                       f"{redis_s:.1f} s (is appendonly on?)")
        return replies

    def queue_put(self, pipe: Pipeline, fact_id: str, record: Record, mode: PutMode, now: str,
                  chash: str = "") -> None:
        """Queue the put script for one fact."""
        args: list[str | bytes] = [mode, now, chash]
        for name, value in record.items():
            args += [name, value]
        # EVALSHA straight into the pipeline: redis-py's Script objects add a SCRIPT EXISTS round trip per
        # execute (and 5.3 leaks the pipeline's connection when that pre-check fails).
        pipe.evalsha(PUT_SHA, 1, self._ctx.keyspace.key(fact_id), *args)  # type: ignore[arg-type]

    async def put(self, fact_id: str, record: Record, mode: PutMode, now: str, chash: str) -> tuple[int, str]:
        """Put one fact: (1 created | 0 existed | -1 taken by other content, created_at)."""

        async def add(pipe: Pipeline) -> None:
            self.queue_put(pipe, fact_id, record, mode, now, chash)

        (result,) = await self.write("store fact", add)
        return int(result[0]), as_text(result[1])

    async def replace_all(self, records: list[tuple[str, Record]], op: str) -> None:
        """Pipelined batches; each fact is replaced whole by the write script (never half-written)."""
        for start in range(0, len(records), WRITE_BATCH):
            batch = records[start:start + WRITE_BATCH]

            async def add(pipe: Pipeline, batch: list[tuple[str, Record]] = batch) -> None:
                for fact_id, record in batch:
                    self.queue_put(pipe, fact_id, record, "replace", as_text(record.get(F_CREATED, "")))

            await self.write(op, add)

    async def delete_keys(self, keys: list[bytes] | list[str], op: str) -> int:
        """Delete whole keys (facts or chunks); returns how many existed."""
        if not keys:
            return 0

        async def add(pipe: Pipeline) -> None:
            pipe.delete(*keys)

        (removed,) = await self.write(op, add)
        return int(removed)
