"""Walking a namespace's keys: SCAN with a MATCH on its prefix (never KEYS, which blocks Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from kb_mcp.store.context import StoreContext

SCAN_BATCH = 500


async def iter_keys(ctx: StoreContext, prefix: str | None = None, kind: str = "hash"
                    ) -> AsyncIterator[list[bytes]]:
    """Batches of the namespace's fact keys, or of other keys under `prefix` of Redis type `kind` (each batch one
    bounded SCAN step)."""
    cursor: int = 0
    match = (prefix or ctx.keyspace.key_prefix) + "*"
    while True:
        cursor, keys = await ctx.manager.scan(ctx.keyspace.index_name, cursor, match, SCAN_BATCH, kind)
        if keys:
            yield keys
        if cursor == 0:
            return
