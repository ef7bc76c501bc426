"""Which embedding model made a namespace's vectors, recorded beside them; and embedding a namespace again with
another model (`kb-mcp reindex --re-embed`).

Vectors of two models cannot be compared, even at the same dimension (all-MiniLM-L6-v2 and multilingual-e5-small
are both 384-d): a server configured with another model than the one that embedded a namespace would rank its facts
by noise, with no error anywhere. So the model's name is recorded in `{ns}:embedding` the first time a server checks
the index, and a server configured with another model is refused, with what to do. A namespace from before the
record existed is taken to hold the configured model's vectors: nothing says otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from redis.asyncio.client import Pipeline

from kb_mcp.errors import ModelMismatch
from kb_mcp.store.context import StoreContext
from kb_mcp.store.records import vector_bytes
from kb_mcp.store.replies import as_text
from kb_mcp.store.scan import iter_keys
from kb_mcp.store.schema import F_DIM, F_HASH, F_MODEL, F_TEXT, F_VECTOR
from kb_mcp.store.writes import Writer

EMBED_BATCH = 64  # facts per embedding call while re-embedding (the model's batched throughput: ~450 texts/s)


@dataclass(frozen=True)
class ReEmbedReport:
    """What `kb-mcp reindex --re-embed` did: facts given a new vector, facts skipped because they changed or went
    away while it ran (their own write carries a vector), the model now recorded, and how long it took."""

    facts: int
    skipped: int
    model: str
    dim: int
    seconds: float


class ModelRecord:
    """The `{ns}:embedding` hash: the name and dimension of the model that embedded the namespace."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx
        self.key = ctx.keyspace.embedding_key

    async def claim(self) -> None:
        """Record the configured model if no model is recorded yet; refuse (ModelMismatch) if another one is."""
        ctx = self._ctx
        recorded = await ctx.command("HGET", self.key, F_MODEL, op="check embedding model")
        if recorded is None:  # a new namespace, or one from before the record: ours from now on (first one wins)

            def add(pipe: Pipeline) -> None:
                pipe.hsetnx(self.key, F_MODEL, ctx.embedding.model_name)
                pipe.hsetnx(self.key, F_DIM, str(ctx.embedding.dim))
                pipe.hget(self.key, F_MODEL)

            recorded = (await ctx.pipeline("record embedding model", add))[-1]
        if as_text(recorded) != ctx.embedding.model_name:
            raise ModelMismatch(ctx.keyspace.namespace, as_text(recorded), ctx.embedding.model_name)

    async def write(self) -> None:
        """Record the configured model (after every fact was embedded with it)."""
        name, dim = self._ctx.embedding.model_name, str(self._ctx.embedding.dim)

        def add(pipe: Pipeline) -> None:
            pipe.hset(self.key, mapping={F_MODEL: name, F_DIM: dim})

        await self._ctx.pipeline("record embedding model", add)


async def embed_again(ctx: StoreContext, writer: Writer, progress: Callable[[int], None]) -> tuple[int, int]:
    """Give every fact of the namespace a vector from the configured model; returns (facts given one, facts that
    changed or went away meanwhile). Keys are gathered from SCAN into full batches (a SCAN step over a large shared
    keyspace finds only a few of the namespace's keys: embedding what each step found ran at 200 facts/s, full
    batches at 260, the model alone at 335 on these 2 cores; embedding the next batch while writing the last gained
    nothing: RediSearch's HNSW updates need the same cores). Each batch's content is read just before it is embedded,
    and each vector written only if its fact still holds that content (`Writer.set_derived`): an update in between
    wrote its own."""
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
