"""Moving a namespace from the layout before hash tags (`kb:fact:<id>`, index `kb:idx`) to today's
(`{kb}:fact:<id>`, index `{kb}:idx`), in place: `kb-mcp migrate`.

RENAMENX moves each hash whole (vector, fields and TTL), so nothing is re-embedded. The old index is dropped last
(its hashes are kept): while it exists the start-up check refuses the namespace, so an interrupted migration can
never look finished. Running it again moves what is left; a key that already exists under the new name (stored
after a partial run) wins and its old copy is deleted.
"""

from __future__ import annotations

import logging
from contextlib import suppress

from pydantic import BaseModel
from redis.asyncio.client import Pipeline

from kb_mcp.errors import IndexMissing, KbError
from kb_mcp.store.context import StoreContext
from kb_mcp.store.index import SearchIndex
from kb_mcp.store.legacy import LegacyLayout
from kb_mcp.store.replies import as_text
from kb_mcp.store.scan import iter_keys

log = logging.getLogger(__name__)


class MigrationReport(BaseModel):
    """What `kb-mcp migrate` did to one namespace."""

    namespace: str
    facts_moved: int
    pointers_moved: int  # dedup keys
    already_new: int  # old copies dropped because the new key existed
    legacy_index_dropped: bool
    facts_now: int


class Migration:
    """Moves one namespace from the old layout to today's."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx
        self._old = LegacyLayout(ctx)

    async def run(self, index: SearchIndex) -> MigrationReport:
        """Make sure the new index exists, move every old key to its new name, then drop the old index."""
        if self._ctx.manager.topology.mode == "cluster":
            raise KbError("kb-mcp migrate runs on the standalone (or Sentinel) Redis that holds the old layout; to "
                          "move to a cluster, migrate there, `kb-mcp export`, then `kb-mcp import` into the cluster")
        await index.ensure(check_legacy=False)  # first: each renamed hash is then indexed as it arrives
        facts, kept_a = await self._move(self._old.fact_prefix, self._ctx.keyspace.key_prefix, "hash")
        pointers, kept_b = await self._move(self._old.dedup_prefix, self._ctx.keyspace.dedup_prefix, "string")
        dropped = False
        with suppress(IndexMissing):
            await self._ctx.command("FT.DROPINDEX", self._old.index_name, op="FT.DROPINDEX (old layout)")
            dropped = True
        info = await index.info() or {}
        now = int(as_text(info.get("num_docs", 0)) or 0)
        log.info("migrated namespace %s: %d facts, %d dedup pointers", self._ctx.keyspace.namespace, facts, pointers)
        return MigrationReport(namespace=self._ctx.keyspace.namespace, facts_moved=facts, pointers_moved=pointers,
                               already_new=kept_a + kept_b, legacy_index_dropped=dropped, facts_now=now)

    async def _move(self, old_prefix: str, new_prefix: str, kind: str) -> tuple[int, int]:
        """RENAMENX every key under `old_prefix` to `new_prefix`; delete the old copy where the new one exists."""
        moved = kept = 0
        async for keys in iter_keys(self._ctx, old_prefix, kind):
            names = [key.decode() for key in keys]

            def rename(pipe: Pipeline, names: list[str] = names) -> None:
                for name in names:
                    pipe.renamenx(name, new_prefix + name[len(old_prefix):])

            replies = await self._ctx.pipeline("migrate keys", rename)
            stale = [name for name, ok in zip(names, replies, strict=True) if not ok]
            if stale:
                await self._ctx.command("DEL", *stale, op="migrate keys")
            moved += len(names) - len(stale)
            kept += len(stale)
        return moved, kept
