"""What every part of one namespace's store shares: settings, the Redis manager, the embedding, the key layout and
the bounded primitives they all go through (so no part applies a deadline of its own)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from redis.asyncio.client import Pipeline

from kb_mcp.config import Settings, TimeoutKind
from kb_mcp.connection.manager import AsyncRedisManager
from kb_mcp.connection.topology import RedisClient
from kb_mcp.deadlines import Observer, bounded
from kb_mcp.embeddings.base import KbEmbedding, QueryVector
from kb_mcp.embeddings.cache import QueryCache
from kb_mcp.store.schema import Keyspace

T = TypeVar("T")

# One embedding call holds at most EMBED_CALL_TEXTS texts and the tokens a third of KB_TIMEOUT_INDEX embeds at
# about the slowest rate a 2-core machine was seen to run the model while the last call's facts were written beside
# it (~2,400 tokens/s: a fixed 24,576 tokens, ~3 s on a quiet day, overran 10 s there; ~1,700 with two busy loops
# beside it, where calls of 6,666 tokens took at most 4 s). Longer lists go as several calls, each under its own
# deadline (docs/retrieval.md, Memory; docs/benchmarks.md).
EMBED_CALL_TEXTS = 1024
SLOWEST_TOKENS_PER_S = 2_000
MIN_CALL_TOKENS = 512


def call_tokens(index_timeout_s: float) -> int:
    """Tokens per embedding call for an index deadline (6,666 at the default 10 s)."""
    return max(MIN_CALL_TOKENS, int(SLOWEST_TOKENS_PER_S * index_timeout_s / 3))


def embedding_calls(items: list[T], cost: Callable[[T], int], index_timeout_s: float) -> list[list[T]]:
    """`items` in order, cut into embedding calls of at most EMBED_CALL_TEXTS items and call_tokens() tokens by
    `cost` (an item heavier than that is a call of its own)."""
    budget = call_tokens(index_timeout_s)
    calls: list[list[T]] = []
    current: list[T] = []
    weight = 0
    for item in items:
        tokens = cost(item)
        if current and (len(current) == EMBED_CALL_TEXTS or weight + tokens > budget):
            calls.append(current)
            current, weight = [], 0
        current.append(item)
        weight += tokens
    if current:
        calls.append(current)
    return calls


@dataclass(frozen=True)
class StoreContext:
    """One namespace's view of the shared backend."""

    settings: Settings
    manager: AsyncRedisManager
    embedding: KbEmbedding
    keyspace: Keyspace
    observe: Observer
    query_cache: QueryCache

    async def redis(self, op: str, call: Callable[[RedisClient], Awaitable[T]], kind: TimeoutKind = "redis") -> T:
        """One command or pipeline under the breaker and the deadline of `kind` (the Redis deadline by default)."""
        return await self.manager.run(op, call, kind)

    async def pipeline(self, op: str, add: Callable[[Pipeline], None], kind: TimeoutKind = "redis") -> list[Any]:
        """Queue commands with `add(pipe)` and send them as one pipeline (cluster: the namespace's keys share a slot,
        so one node, one connection; `add` may route a keyless command there with `owner_kwargs`). The connection
        goes back to the pool on every path: redis-py 5.3 keeps it checked out when a deadline cancels `execute()`
        (found by the fault soak). Only then is it reset here: `execute()` has already reset the pipeline otherwise,
        and the shielded reset's task cost ~0.1 ms per call."""

        async def run(r: RedisClient) -> list[Any]:
            pipe: Any = r.pipeline(transaction=False)
            try:
                add(pipe)
                return list(await pipe.execute())
            finally:
                # A cluster pipeline holds no connection between calls.
                if isinstance(pipe, Pipeline) and pipe.connection is not None:
                    await asyncio.shield(pipe.reset())  # type: ignore[no-untyped-call]

        return await self.redis(op, run, kind)

    def owner_kwargs(self) -> dict[str, Any]:
        """Send a keyless command (INFO; WAIT or WAITAOF in a pipeline) to the node that holds this namespace; only
        inside a call passed to `redis`/`pipeline` (the cluster's slot map is known there)."""
        return self.manager.topology.owner_kwargs(self.manager.client, self.keyspace.index_name)

    async def command(self, *args: Any, op: str | None = None) -> Any:
        """One raw command (FT.*, HMGET...) under the breaker and the Redis deadline; `op` names it in errors."""
        return await self.manager.execute(*args, op=op)

    async def bounded(self, kind: TimeoutKind, awaitable: Awaitable[T], op: str) -> T:
        return await bounded(kind, awaitable, op, policy=self.settings.timeouts, observe=self.observe)

    async def embed(self, texts: list[str], op: str) -> np.ndarray[Any, Any]:
        """Vectors for `texts`, each embedding call (embedding_calls) within the index deadline, KB_TIMEOUT_INDEX: a
        store_facts of 100 abstracts is several calls (a text's vector does not depend on its batch: tested)."""
        if len(texts) <= 1:
            return await self.embed_call(texts, op)
        parts = [await self.embed_call(call, op) for call in await self.cut_for_embedding(texts, lambda t: t)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def embed_call(self, texts: list[str], op: str) -> np.ndarray[Any, Any]:
        """Vectors for one embedding call (a list cut_for_embedding made) within the index deadline."""
        return await self.bounded("index", self.embedding.aembed(texts), op)

    async def cut_for_embedding(self, items: list[T], text: Callable[[T], str]) -> list[list[T]]:
        """`items` as embedding calls (embedding_calls), their texts weighed off the event loop (~0.7 ms per
        abstract: a load's worth would stall every other tool)."""
        costs = await asyncio.to_thread(lambda: {id(item): self.embedding.cost(text(item)) for item in items})
        return embedding_calls(items, lambda item: costs[id(item)], self.settings.timeouts.index_s)

    async def embed_query(self, text: str) -> QueryVector:
        """The vector (and token states) of a search query, from the process's query cache when it was asked
        before."""
        cached = self.query_cache.get(self.embedding, text)
        if cached is not None:
            return cached
        found = await self.bounded("index", self.embedding.aembed_query(text), "embed query")
        self.query_cache.put(self.embedding, text, found)
        return found
