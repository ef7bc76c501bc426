"""The namespace's RediSearch index: created idempotently (never with `overwrite=True`, never dropping data),
checked against the model's dimension and the model recorded with the namespace, and read back through FT.INFO."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from kb_mcp.errors import IndexMissing, KbError, ModelMismatch, StartupError
from kb_mcp.facts import rules
from kb_mcp.store.context import StoreContext
from kb_mcp.store.filters import where_clauses
from kb_mcp.store.legacy import LegacyLayout
from kb_mcp.store.model_record import ModelRecord
from kb_mcp.store.replies import field_names, index_dim, pairs, vector_attributes
from kb_mcp.store.schema import create_index_args, filter_field, index_schema
from kb_mcp.store.search.querytext import tag_clauses, time_clauses

log = logging.getLogger(__name__)
T = TypeVar("T")
MODEL_RECHECK_S = 60.0  # how often a running server asks whether its namespace still records its model


class SearchIndex:
    """Create/check the index once per process (under a lock), recreate it when it vanishes, and tell the rest of
    the store its name."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx
        self.name = ctx.keyspace.index_name
        self.schema = index_schema(ctx.keyspace, ctx.settings, ctx.embedding.dim)
        self._ready = False
        self.filter_keys: frozenset[str] = frozenset()  # the declared filter keys the existing index really has
        self.hnsw = False  # whether the existing index's vectors are in an HNSW graph (a query may then set EF_RUNTIME)
        self._model_checked_until = time.monotonic() + MODEL_RECHECK_S
        self.lock = asyncio.Lock()

    async def ready(self) -> None:
        """Make sure the index exists (cheap once it is known to), and once a minute that the namespace still
        records this server's model: `kb-mcp reindex --re-embed` may have moved it to another one, and this
        server's searches would then rank by noise (one HGET a minute; from then on every call is refused)."""
        if not self._ready:
            await self.ensure()
        elif time.monotonic() >= self._model_checked_until:
            self._model_checked_until = time.monotonic() + MODEL_RECHECK_S
            try:
                await ModelRecord(self._ctx).claim()
            except ModelMismatch:
                self._ready = False  # every call checks again, and is refused, until the configuration changes
                raise

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call` (an FT.* command or a vector query) once the index exists. If the index has vanished
        (FLUSHALL, FT.DROPINDEX, a restart without data), recreate it and retry once: facts still stored as hashes
        are re-indexed by RediSearch itself, and no restart of kb-mcp is needed."""
        await self.ready()
        try:
            return await call()
        except IndexMissing:
            log.warning("index %s is missing: recreating it", self.name)
            self.forget()
            await self.ensure()
            return await call()

    def forget(self) -> None:
        """The index was dropped: the next `ready()` checks (and creates) it again."""
        self._ready = False

    async def ensure(self, *, check_legacy: bool = True) -> None:
        """Create the index if missing (idempotent, never dropping data); refuse a dimension mismatch, another
        model than the one recorded with the namespace, and a namespace still in the layout before hash tags
        (`kb-mcp migrate` moves it; `check_legacy=False` is for it)."""
        if self._ready:
            return
        async with self.lock:
            if self._ready:
                return
            legacy = LegacyLayout(self._ctx)
            if check_legacy and await legacy.present():
                raise legacy.refusal()
            info = await self.info()
            if info is None:
                try:
                    await self._ctx.command(*create_index_args(self.schema, self._ctx.keyspace.key_prefix))
                    log.info("created index %s over %s*", self.name, self._ctx.keyspace.key_prefix)
                except ResponseError as exc:
                    if "already exists" not in str(exc).lower():
                        raise
                info = await self.info()
            dim = index_dim(info or {})
            want = self._ctx.embedding.dim
            if dim is not None and dim != want:
                raise StartupError(
                    f"index {self.name} holds {dim}-d vectors but the embedding model gives {want}-d; use another "
                    "KB_NAMESPACE, or embed every fact again with this model: kb-mcp reindex --re-embed")
            await ModelRecord(self._ctx).claim()
            held = field_names(info or {})
            self.hnsw = vector_attributes(info or {}).get("algorithm") == "HNSW"
            self.filter_keys = frozenset(k for k in self._ctx.settings.filter_field_types if filter_field(k) in held)
            if len(self.filter_keys) < len(self._ctx.settings.filter_field_types):
                log.warning("index %s lacks filter fields of KB_FILTER_FIELDS: run kb-mcp reindex", self.name)
            self._model_checked_until = time.monotonic() + MODEL_RECHECK_S
            self._ready = True

    async def scope(self, tags: Any = None, created_after: Any = None, created_before: Any = None,
                    where: Any = None) -> list[str]:
        """The query clauses of a call's common filters (tags, creation-time range, metadata `where`), all
        checked; the index is made ready first, so a filter key it lacks is refused, not silently matching none."""
        after, before = rules.time_range(created_after, created_before)
        clauses = [*tag_clauses(rules.tags(tags)), *time_clauses(after, before)]
        if where is not None:
            await self.ready()
            clauses += where_clauses(where, self._ctx.settings.filter_field_types, self.filter_keys)
        return clauses

    async def try_ensure(self) -> None:
        """At start: create/check the index, but serve on if Redis is down (each call reports it, recovery is
        automatic). A wrong configuration (dimension mismatch, no search module) still stops the start."""
        try:
            await self.ensure()
        except StartupError:
            raise
        except KbError as exc:
            log.warning("Redis not ready at start (%s); will retry on each call", exc)

    async def info(self) -> dict[str, Any] | None:
        """FT.INFO as a dict, or None when the index does not exist."""
        try:
            raw = await self._ctx.command("FT.INFO", self.name)
        except IndexMissing:
            return None
        except ResponseError as exc:
            if "unknown command" in str(exc).lower():
                raise StartupError("the Redis server has no search module: kb-mcp needs Redis Stack "
                                   "(RediSearch >= 2.6); scripts/redis-stack.sh starts one") from exc
            raise
        return pairs(raw)
