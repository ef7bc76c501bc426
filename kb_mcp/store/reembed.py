"""Embedding every fact of a namespace again with the configured model (`kb-mcp reindex --re-embed`); the model
is then recorded with the namespace (`model_record`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from redis.asyncio.client import Pipeline

from kb_mcp.store.context import StoreContext
from kb_mcp.store.records import vector_bytes
from kb_mcp.store.replies import as_text
from kb_mcp.store.scan import iter_keys
from kb_mcp.store.schema import F_HASH, F_TEXT, F_VECTOR
from kb_mcp.store.writes import Writer

EMBED_BATCH = 64  # facts read, embedded and written together while re-embedding


@dataclass(frozen=True)
class ReEmbedReport:
    """What `kb-mcp reindex --re-embed` did: facts given a new vector, facts skipped because they changed or went
    away while it ran (their own write carries a vector), the model now recorded, and how long it took."""

    facts: int
    skipped: int
    model: str
    dim: int
    seconds: float


async def embed_again(ctx: StoreContext, writer: Writer, progress: Callable[[int], None]) -> tuple[int, int]:
    """Give every fact of the namespace a vector from the configured model; returns (facts given one, facts that
    changed or went away meanwhile). Keys are gathered from SCAN into full batches (a SCAN step over a shared
    keyspace finds only a few of the namespace's keys; throughput per batching in docs/benchmarks.md). Each batch's
    content is read just before it is embedded, and each vector written only if its fact still holds that content
    (`Writer.set_derived`): an update in between wrote its own."""
    written = skipped = 0

    async def embed_batch(keys: list[bytes]) -> int:
        """Embed and write one batch; returns how many of its facts had changed or gone."""

        def read(pipe: Pipeline) -> None:
            for key in keys:
                pipe.hmget(key, [F_TEXT, F_HASH])  # type: ignore[arg-type]

        rows = [(key, as_text(text), as_text(chash)) for key, (text, chash)
                in zip(keys, await ctx.pipeline("read facts", read), strict=True) if text is not None]
        changed = len(keys) - len(rows)
        if rows:
            vectors = await ctx.embed([text for _, text, _ in rows], "re-embed facts")
            made = [(key, chash, vector_bytes(vector)) for (key, _, chash), vector in zip(rows, vectors, strict=True)]
            changed += await writer.set_derived(F_VECTOR, made, "write vectors")
        return changed

    async def batches() -> AsyncIterator[list[bytes]]:
        seen: set[bytes] = set()
        pending: list[bytes] = []
        async for found in iter_keys(ctx):
            fresh = [k for k in found if k not in seen]  # SCAN may return a key twice
            seen.update(fresh)
            pending += fresh
            while len(pending) >= EMBED_BATCH:
                yield pending[:EMBED_BATCH]
                del pending[:EMBED_BATCH]
        if pending:
            yield pending

    async for batch in batches():
        changed = await embed_batch(batch)
        written, skipped = written + len(batch) - changed, skipped + changed
        progress(written + skipped)
    return written, skipped
