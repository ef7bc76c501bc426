"""Writing facts: the one Lua script that puts a fact, the pipelined writer, and durability (WAITAOF, WAIT).

Every write goes through `Writer.write`: one pipeline on one connection, so `WAITAOF` (KB_DURABILITY=fsync) or
`WAIT` (KB_DURABILITY=replica) follows the writes it must cover on the connection that made them (in a cluster, on
the node that holds the namespace).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from string import Template
from typing import Any, Literal

from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError

from kb_mcp.errors import ModelMismatch, StoreUnavailable
from kb_mcp.store.context import StoreContext
from kb_mcp.store.filters import with_filter_fields
from kb_mcp.store.records import Record, ttl_ms
from kb_mcp.store.replies import as_text
from kb_mcp.store.schema import F_CREATED, F_HASH, F_META, F_MODEL

WRITE_BATCH = 256  # facts per pipeline on the bulk paths
PUT_MISSING = -3  # the put script's answer to an 'update' of a fact that does not exist
PutMode = Literal["upsert", "update", "create", "replace"]

# Write one fact atomically. KEYS[1] the fact's key, KEYS[2] its content's dedup key (-> the id of a fact with that
# content), KEYS[3] the namespace's model record; ARGV: mode, now, content_hash, fact key prefix, TTL in ms (0:
# permanent), the writer's embedding model, then field/value pairs.
#   another model recorded (`kb-mcp reindex --re-embed` moved the namespace under this server) -> {-2, that model}
# DEL + HSET leaves a key without TTL, so storing a fact again without one makes it permanent.
#   'upsert'  replace the hash, keeping created_at (or now for a new fact)        -> {1|0 created, created_at}
#   'create'  a fact with this content already exists (any id): a dedup hit        -> {0, created_at, its id}
#             else write only if absent; the same content there is a dedup hit     -> {0, created_at}
#             other content at that id                                              -> {-1, created_at}
#   'update'  as 'upsert', but only a fact that exists (update_fact: one deleted meanwhile is not written again)
#                                                                                   -> {0, created_at} | {-3, ''}
#   'replace' replace the hash with exactly the given fields (import, documents)   -> {1, now}
# DEL + HSET in one script: stale fields never linger and a fact and its vector can never disagree. The dedup key
# makes "same content, no id" atomic against any concurrent store of that content, with or without an id.
# The shebang (no flags, so no allow-oom) makes Redis check maxmemory BEFORE running it: a script without one is
# OOM-checked only at its first deny-oom write, which here comes after a DEL, and could push Redis past maxmemory.
# It is also refused up front on a read-only replica (READONLY).
PUT_SCRIPT = Template("""#!lua
local mode, now, chash, prefix, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local recorded = redis.call('HGET', KEYS[3], '$model')
if recorded and recorded ~= ARGV[6] then return {-2, recorded} end
local function claim()
  redis.call('SET', KEYS[2], string.sub(KEYS[1], #prefix + 1))
end
local function expire()
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
end
if mode == 'replace' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 7))
  expire()
  claim()
  return {1, now}
end
if mode == 'create' then
  local owner = redis.call('GET', KEYS[2])
  if owner and redis.call('HGET', prefix .. owner, '$hash') == chash then
    return {0, redis.call('HGET', prefix .. owner, '$created'), owner}
  end
end
local existing = redis.call('HGET', KEYS[1], '$created')
if mode == 'update' and not existing then return {-3, ''} end
if existing and mode == 'create' then
  if redis.call('HGET', KEYS[1], '$hash') == chash then
    claim()
    return {0, existing}
  end
  return {-1, existing}
end
local created = existing or now
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '$created', created, unpack(ARGV, 7))
expire()
claim()
if existing then return {0, created} end
return {1, created}
""").substitute(created=F_CREATED, hash=F_HASH, model=F_MODEL)
PUT_SHA = hashlib.sha1(PUT_SCRIPT.encode()).hexdigest()

# Delete one fact and, if its content's dedup key still points at it, that key too. KEYS[1] the fact's key;
# ARGV: its id, the dedup key prefix. allow-oom: deleting is how an operator gets out of a full Redis.
DELETE_SCRIPT = Template("""#!lua flags=allow-oom
local chash = redis.call('HGET', KEYS[1], '$hash')
local removed = redis.call('DEL', KEYS[1])
if chash and redis.call('GET', ARGV[2] .. chash) == ARGV[1] then redis.call('DEL', ARGV[2] .. chash) end
return removed
""").substitute(hash=F_HASH)
DELETE_SHA = hashlib.sha1(DELETE_SCRIPT.encode()).hexdigest()

# Set a field derived from a fact's content (its vector, its stems) only if the content is still the one it was made
# from (an update in between wrote its own; a deleted fact stays deleted). KEYS[1] the fact's key; ARGV: the content
# hash it was read with, the field, its value. No allow-oom: Redis checks maxmemory before running it.
DERIVED_SCRIPT = Template("""#!lua
if (redis.call('HGET', KEYS[1], '$hash') or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
""").substitute(hash=F_HASH)
DERIVED_SHA = hashlib.sha1(DERIVED_SCRIPT.encode()).hexdigest()
# Give a fact the filter fields its metadata makes (KB_FILTER_FIELDS), only if its metadata is still the JSON they
# were made from. KEYS[1] the fact's key; ARGV: that JSON, how many stale fields to remove, their names, then the
# field/value pairs to set.
FILTERS_SCRIPT = Template("""#!lua
if (redis.call('HGET', KEYS[1], '$meta') or '') ~= ARGV[1] then return 0 end
local stale = tonumber(ARGV[2])
for i = 3, 2 + stale do redis.call('HDEL', KEYS[1], ARGV[i]) end
if #ARGV > 2 + stale then redis.call('HSET', KEYS[1], unpack(ARGV, 3 + stale)) end
return 1
""").substitute(meta=F_META)
FILTERS_SHA = hashlib.sha1(FILTERS_SCRIPT.encode()).hexdigest()
SCRIPTS = (PUT_SCRIPT, DELETE_SCRIPT, DERIVED_SCRIPT, FILTERS_SCRIPT)
FilterUpdate = tuple[bytes, bytes, list[str], dict[str, str]]  # key, metadata JSON read, stale fields, new fields


@dataclass(frozen=True)
class PutResult:
    """What the put script answered: `status` 1 created, 0 existed (updated, or a dedup hit), -1 the id is taken by
    other content, -3 no such fact to update; `owner` is the id of an existing fact with the same content (a dedup
    hit on another id)."""

    status: int
    created_at: str
    owner: str | None = None


class Writer:
    """Pipelined, durable writes of whole fact hashes."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    async def write(self, op: str, add: Callable[[Pipeline], None]) -> list[Any]:
        """Queue writes with `add(pipe)` and send them as one pipeline (one connection, one round trip).

        With KB_DURABILITY=fsync, `WAITAOF 1 0` rides the same pipeline (with `replica`, `WAIT 1`): both only cover
        the writes of their own connection, so they must follow them on that connection (in a cluster, the namespace's
        node). Returns the replies of the queued writes.
        """
        durability = self._ctx.settings.durability
        redis_s = self._ctx.settings.timeouts.redis_s
        wait_ms = int(redis_s * 1000 * 0.8)  # leave the rest of the deadline for the writes themselves

        def queue(pipe: Pipeline) -> None:
            add(pipe)
            if durability == "fsync":
                pipe.execute_command("WAITAOF", 1, 0, wait_ms, **self._ctx.owner_kwargs())
            elif durability == "replica":
                pipe.execute_command("WAIT", 1, wait_ms, **self._ctx.owner_kwargs())

        try:
            try:
                replies = await self._ctx.pipeline(op, queue)
            except NoScriptError:  # Redis restarted (script cache is empty): load them once, replay (idempotent)
                for script in SCRIPTS:
                    await self._ctx.redis("SCRIPT LOAD", lambda r, s=script: r.script_load(s))  # type: ignore[misc]
                replies = await self._ctx.pipeline(op, queue)
        except ResponseError as exc:
            if durability == "fsync" and "appendonly" in str(exc).lower():
                raise StoreUnavailable(f"{op}: KB_DURABILITY=fsync needs AOF on the Redis server (appendonly yes); "
                                       "the write itself was applied") from exc
            raise
        if durability == "fsync" and int(replies.pop()[0]) < 1:
            raise StoreUnavailable(f"{op}: the write was applied but Redis did not confirm the AOF fsync within "
                                   f"{wait_ms / 1000:.1f} s (is appendonly on?)")
        if durability == "replica" and int(replies.pop()) < 1:
            raise StoreUnavailable(f"{op}: the write was applied on the master but no replica confirmed it within "
                                   f"{wait_ms / 1000:.1f} s (KB_DURABILITY=replica needs a connected replica)",
                                   retry_after_s=1.0)
        return replies

    def queue_put(self, pipe: Pipeline, fact_id: str, record: Record, mode: PutMode, now: str,
                  chash: str = "") -> None:
        """Queue the put script for one fact."""
        keyspace = self._ctx.keyspace
        record = with_filter_fields(record, self._ctx.settings.filter_field_types)
        chash = chash or as_text(record.get(F_HASH))
        args: list[str | bytes] = [mode, now, chash, keyspace.key_prefix, str(ttl_ms(record, time.time())),
                                   self._ctx.embedding.model_name]
        for name, value in record.items():
            args += [name, value]
        # EVALSHA straight into the pipeline: redis-py's Script objects add a SCRIPT EXISTS round trip per
        # execute (and 5.3 leaks the pipeline's connection when that pre-check fails).
        # execute_command, not pipe.evalsha(): redis-py's cluster pipeline refuses the latter (but routes this one).
        pipe.execute_command("EVALSHA", PUT_SHA, 3, keyspace.key(fact_id), keyspace.dedup_key(chash),
                             keyspace.embedding_key, *args)

    async def put(self, fact_id: str, record: Record, mode: PutMode, now: str, chash: str) -> PutResult:
        """Put one fact (see PUT_SCRIPT for what each mode answers)."""
        return (await self.put_many([(fact_id, record, mode, now, chash)]))[0]

    async def put_many(self, puts: list[tuple[str, Record, PutMode, str, str]]) -> list[PutResult]:
        """Put several facts in one pipeline (fact_id, record, mode, now, content hash each); replies in order."""
        if not puts:
            return []

        def add(pipe: Pipeline) -> None:
            for fact_id, record, mode, now, chash in puts:
                self.queue_put(pipe, fact_id, record, mode, now, chash)

        replies = self._check_model(await self.write("store fact" if len(puts) == 1 else "store facts", add))
        return [PutResult(int(r[0]), as_text(r[1]), as_text(r[2]) if len(r) > 2 else None) for r in replies]

    def _check_model(self, replies: list[Any]) -> list[Any]:
        """Put replies as they are, unless the namespace now records another model than this server's (the write
        script refused): a namespace moved by `kb-mcp reindex --re-embed` must not get this model's vectors."""
        refused = next((r for r in replies if int(r[0]) == -2), None)
        if refused is not None:
            raise ModelMismatch(self._ctx.keyspace.namespace, as_text(refused[1]), self._ctx.embedding.model_name)
        return replies

    async def replace_all(self, records: list[tuple[str, Record]], op: str) -> None:
        """Pipelined batches; each fact is replaced whole by the write script (never half-written)."""
        for start in range(0, len(records), WRITE_BATCH):
            batch = records[start:start + WRITE_BATCH]

            def add(pipe: Pipeline, batch: list[tuple[str, Record]] = batch) -> None:
                for fact_id, record in batch:
                    self.queue_put(pipe, fact_id, record, "replace", as_text(record.get(F_CREATED, "")))

            self._check_model(await self.write(op, add))

    async def set_derived(self, field: str, values: Sequence[tuple[bytes, str, bytes | str]], op: str) -> int:
        """Give facts a new value of a field made from their content (key, the content hash it was made from,
        value), each only if the fact still holds that content; returns how many had changed or gone (left as
        they are)."""

        def add(pipe: Pipeline) -> None:
            for key, chash, value in values:
                pipe.execute_command("EVALSHA", DERIVED_SHA, 1, key, chash, field, value)

        replies = await self.write(op, add)
        return len(values) - sum(int(r) for r in replies)

    async def set_filter_fields(self, updates: Sequence[FilterUpdate], op: str) -> int:
        """Give facts the filter fields of their metadata (each only if the metadata is unchanged since it was
        read); returns how many had changed or gone (left as they are)."""

        def add(pipe: Pipeline) -> None:
            for key, meta, stale, fields in updates:
                pairs = [x for name, value in fields.items() for x in (name, value)]
                pipe.execute_command("EVALSHA", FILTERS_SHA, 1, key, meta, len(stale), *stale, *pairs)

        replies = await self.write(op, add)
        return len(updates) - sum(int(r) for r in replies)

    async def delete_fact(self, fact_id: str) -> bool:
        """Delete one fact (and its dedup pointer); True if it existed."""
        key = self._ctx.keyspace.key(fact_id)
        return bool(await self.delete_many([key], "delete fact"))

    async def delete_many(self, keys: Sequence[bytes | str], op: str = "delete facts") -> int:
        """Delete facts by key, each with its dedup pointer (one pipeline); returns how many existed."""
        keyspace = self._ctx.keyspace

        def add(pipe: Pipeline) -> None:
            for key in keys:
                pipe.execute_command("EVALSHA", DELETE_SHA, 1, key, keyspace.fact_id(key), keyspace.dedup_prefix)

        return sum(int(removed) for removed in await self.write(op, add))

    async def delete_keys(self, keys: list[bytes] | list[str], op: str) -> int:
        """Delete whole keys (facts or chunks); returns how many existed."""
        if not keys:
            return 0

        def add(pipe: Pipeline) -> None:
            pipe.delete(*keys)

        (removed,) = await self.write(op, add)
        return int(removed)
