"""Which embedding model made a namespace's vectors, recorded beside them (`reembed` moves a namespace to another
model).

Vectors of two models cannot be compared, even at the same dimension (all-MiniLM-L6-v2 and multilingual-e5-small
are both 384-d): a server configured with another model than the one that embedded a namespace would rank its facts
by noise, with no error anywhere. So the model's name is recorded in `{ns}:embedding` the first time a server checks
the index, and a server configured with another model is refused, with what to do. A namespace from before the
record existed is taken to hold the configured model's vectors: nothing says otherwise.
"""

from __future__ import annotations

from redis.asyncio.client import Pipeline

from kb_mcp.errors import ModelMismatch
from kb_mcp.store.context import StoreContext
from kb_mcp.store.replies import as_text
from kb_mcp.store.schema import F_DIM, F_MODEL


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
