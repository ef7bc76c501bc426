"""Concurrent embedding requests run as one batch."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from kb_mcp.embeddings.base import Vectors


class EmbeddingCoalescer:
    """Embeds concurrent requests together: whatever arrives while a batch runs forms the next batch.

    One search alone is embedded at once (no added wait); under load, a 50-client burst costs a few batched ONNX
    runs instead of 50 single ones, which is what lets throughput grow with clients. A caller that gives up (its
    deadline) is simply skipped; the others still get their vectors.
    """

    def __init__(self, encode: Callable[[list[str], bool], Vectors], executor: ThreadPoolExecutor,
                 max_batch: int = 64) -> None:
        self._encode = encode
        self._executor = executor
        self.max_batch = max_batch
        self._pending: deque[tuple[list[str], asyncio.Future[Vectors]]] = deque()
        self._worker: asyncio.Task[None] | None = None

    async def embed(self, texts: list[str]) -> Vectors:
        """The texts' vectors, in order."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Vectors] = loop.create_future()
        self._pending.append((texts, future))
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._worker = loop.create_task(self._drain(), name="kb-embed-coalescer")
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch: list[tuple[list[str], asyncio.Future[Vectors]]] = []
            size = 0
            while self._pending and (not batch or size + len(self._pending[0][0]) <= self.max_batch):
                texts, future = self._pending.popleft()
                if future.done() or future.get_loop() is not loop:
                    continue  # the caller gave up, or belongs to a closed loop
                batch.append((texts, future))
                size += len(texts)
            if not batch:
                continue
            flat = [text for texts, _ in batch for text in texts]
            alone = len(flat) == 1 and not self._pending  # one query and nobody waiting: the latency case
            try:
                vectors = await loop.run_in_executor(self._executor, self._encode, flat, alone)
            except Exception as exc:  # handed to every caller of this batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            offset = 0
            for texts, future in batch:
                if not future.done():
                    future.set_result(vectors[offset:offset + len(texts)])
                offset += len(texts)
