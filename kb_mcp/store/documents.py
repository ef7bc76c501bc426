"""Documents: a text or file split by LlamaIndex's SentenceSplitter into chunks stored as facts sharing a doc_id."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from kb_mcp.errors import InvalidInput
from kb_mcp.facts import rules
from kb_mcp.facts.models import Scalar
from kb_mcp.facts.rules import FACT_ID, valid
from kb_mcp.store.context import StoreContext
from kb_mcp.store.filters import check_metadata
from kb_mcp.store.listing import Reader
from kb_mcp.store.records import build_record, format_ts, vector_bytes
from kb_mcp.store.writes import Writer

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
GENERATION_CHARS = 8
MAX_DOC_ID_CHARS = 110  # chunk ids add '.<generation>.00000' and must stay valid fact ids (<= 128)


class Documents:
    """add_document / delete_document for one namespace."""

    def __init__(self, ctx: StoreContext, reader: Reader, writer: Writer) -> None:
        self._ctx = ctx
        self._reader = reader
        self._writer = writer

    async def add(self, *, text: str | None = None, path: str | Path | None = None,
                  metadata: dict[str, Scalar] | None = None, tags: list[str] | None = None,
                  doc_id: str | None = None, chunk_tokens: int = 200, overlap_tokens: int = 30) -> list[str]:
        """Split a text (or a file); store the chunks as facts sharing a doc_id. Re-adding the same doc_id replaces
        its chunks: the new ones are written first, then the old ones removed. Returns the chunk fact ids in order."""
        if (text is None) == (path is None):
            raise InvalidInput("document", "give exactly one of text or path")
        metadata = rules.metadata(metadata)
        check_metadata(metadata, self._ctx.settings.filter_field_types)
        tags = rules.tags(tags)
        if path is not None:
            file = Path(path)
            text = await self._ctx.bounded("file", asyncio.to_thread(read_text_file, file), f"read {file.name}")
            metadata = {"source": str(file), **metadata}
        if text is None or not text.strip():
            raise InvalidInput("document", "is empty")
        doc_id = valid(FACT_ID, doc_id, "doc_id") if doc_id else "doc-" + hashlib.sha256(
            (str(path) if path is not None else text).encode("utf-8", "surrogatepass")).hexdigest()[:16]
        if len(doc_id) > MAX_DOC_ID_CHARS:
            raise InvalidInput("doc_id", f"must be at most {MAX_DOC_ID_CHARS} characters (chunk ids add a suffix)")
        chunks = self.split(text, chunk_tokens, overlap_tokens)
        # Chunk ids carry a generation (a digest of the new text): the new chunks are written beside the old ones,
        # then the old ones are removed. A failure half-way (model, Redis) leaves the old document whole.
        generation = hashlib.sha256(f"{chunk_tokens}/{overlap_tokens}/{text}".encode("utf-8", "surrogatepass"))
        ids = [f"{doc_id}.{generation.hexdigest()[:GENERATION_CHARS]}.{i:05d}" for i in range(len(chunks))]
        vectors = await self._ctx.embed(chunks, f"embed document {doc_id}")  # every chunk before anything is written
        now = format_ts(time.time())
        records = [(ids[i], build_record(ids[i], chunk, {**metadata, "chunk": i}, tags, vector_bytes(vectors[i]),
                                         updated_at=now, doc_id=doc_id, created_at=now))
                   for i, chunk in enumerate(chunks)]
        await self._writer.replace_all(records, f"write document {doc_id}")
        fresh = {self._ctx.keyspace.key(i).encode() for i in ids}
        stale = [k for k in await self._reader.keys_of_document(doc_id) if k not in fresh]
        await self._writer.delete_keys(stale, f"remove old chunks of {doc_id}")
        return ids

    def split(self, text: str, chunk_tokens: int, overlap_tokens: int) -> list[str]:
        from llama_index.core.node_parser import SentenceSplitter

        # The model's own tokenizer: LlamaIndex's default (tiktoken) downloads its vocabulary at run time.
        splitter = SentenceSplitter(chunk_size=chunk_tokens, chunk_overlap=overlap_tokens,
                                    tokenizer=self._ctx.embedding.tokens)
        return [c for c in splitter.split_text(text) if c.strip()]

    async def delete(self, doc_id: str) -> int:
        """Delete every chunk of `doc_id`; returns how many."""
        valid(FACT_ID, doc_id, "doc_id")
        return await self._writer.delete_keys(await self._reader.keys_of_document(doc_id), "delete document")


def read_text_file(path: Path) -> str:
    """A UTF-8 text file of at most MAX_DOCUMENT_BYTES (run in a thread, under the file deadline)."""
    if not path.is_file():
        raise InvalidInput("path", f"{str(path)!r} is not a readable file")
    size = path.stat().st_size
    if size > MAX_DOCUMENT_BYTES:
        raise InvalidInput("path", f"{path.name} is {size} bytes; the limit is {MAX_DOCUMENT_BYTES}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("path", f"{path.name} is not UTF-8 text") from None
