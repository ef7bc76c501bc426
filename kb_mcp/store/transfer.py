"""Export and import: JSONL with vectors (base64 float32) and the name of the model that made them, so moving facts
between namespaces or servers with the same model needs no re-embedding; hand-written lines without a vector, and
lines whose vector another model made, are embedded on import."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

from redis.asyncio.client import Pipeline

from kb_mcp.errors import InvalidInput
from kb_mcp.facts import rules
from kb_mcp.facts.identity import content_hash, derived_id
from kb_mcp.facts.rules import CONTENT, FACT_ID, valid
from kb_mcp.store.context import StoreContext
from kb_mcp.store.index import SearchIndex
from kb_mcp.store.records import Record, build_record, export_line, format_ts, vector_bytes
from kb_mcp.store.replies import as_text
from kb_mcp.store.scan import iter_keys
from kb_mcp.store.schema import F_ID, F_TEXT, F_VECTOR
from kb_mcp.store.writes import Writer

Progress = Callable[[int], None]
IMPORT_CHUNK = 1024  # lines per read and per write batch on import
MAX_EPOCH_S = 1e11


class Transfer:
    """export / import_ for one namespace; every file operation bounded by KB_TIMEOUT_FILE."""

    def __init__(self, ctx: StoreContext, index: SearchIndex, writer: Writer) -> None:
        self._ctx = ctx
        self._index = index
        self._writer = writer

    async def export(self, path: str | Path, progress: Progress = lambda done: None) -> int:
        """Write every fact as one JSON line (vectors included); returns how many (`progress` hears the running
        count after each batch).

        SCAN + pipelined HGETALL, never KEYS; the file is written to a temporary name and renamed when complete.
        """
        target = Path(path)
        tmp = target.with_name(target.name + ".part")
        file = self._ctx.bounded
        handle: IO[str] = await file("file", asyncio.to_thread(tmp.open, "w", encoding="utf-8"), f"open {tmp.name}")
        written = 0
        model = self._ctx.embedding.model_name
        try:
            async for keys in iter_keys(self._ctx):
                def add(pipe: Pipeline, keys: list[bytes] = keys) -> None:
                    for k in keys:
                        pipe.hgetall(k)  # type: ignore[arg-type]

                rows = await self._ctx.pipeline("export batch", add)
                lines = "".join(json.dumps(export_line(row, model), ensure_ascii=False) + "\n"
                                for row in rows if row and F_ID.encode() in row)
                await file("file", asyncio.to_thread(handle.write, lines), f"write {tmp.name}")
                written += lines.count("\n")
                progress(written)
            await file("file", asyncio.to_thread(handle.close), f"close {tmp.name}")
            await file("file", asyncio.to_thread(tmp.replace, target), f"rename to {target.name}")
        except BaseException:
            handle.close()
            tmp.unlink(missing_ok=True)
            raise
        return written

    async def import_(self, path: str | Path, progress: Progress = lambda done: None) -> int:
        """Load a JSONL export (or hand-written lines: records without a vector, or whose `embedding` names another
        model than the configured one, are embedded). `progress` hears lines validated plus lines written, after
        each chunk (twice the line count when done).

        Two passes over the file in chunks (each read bounded by the file timeout, memory bounded by the chunk):
        first every line is validated, and a bad line is named and changes nothing; then the records are written.
        The file must not change in between: its identity (size, mtime, inode) is checked before the second pass and
        each chunk is compared with the digest the first pass recorded, so a changed file is refused, never
        half-written with content that was not validated.
        """
        source = Path(path)
        count = 0
        digests: list[bytes] = []
        before = await self._ctx.bounded("file", asyncio.to_thread(_identity, source), f"stat {source.name}")
        async for lineno, chunk in self._line_chunks(source):
            digests.append(_digest(chunk))
            for offset, line in enumerate(chunk):
                if line.strip():
                    self.parse_line(lineno + offset, line)
                    count += 1
            progress(count)
        after = await self._ctx.bounded("file", asyncio.to_thread(_identity, source), f"stat {source.name}")
        if after != before:
            raise InvalidInput("path", f"{source.name} changed while it was being validated; nothing was written "
                                       "— import it again once it is complete")
        await self._index.ready()
        k = written = 0
        writing: asyncio.Task[int] | None = None  # the previous chunk's write, running while this one is parsed
        try:
            async for lineno, chunk in self._line_chunks(source):
                if k >= len(digests) or _digest(chunk) != digests[k]:
                    if writing is not None:  # the lines before this chunk are all written, as the error says
                        await writing
                    raise InvalidInput("path", f"{source.name} changed while it was being imported: the lines "
                                               f"before {lineno} were written, none from {lineno} on — import it "
                                               "again (importing is idempotent)")
                k += 1
                records = await asyncio.to_thread(self._parse_chunk, lineno, chunk)
                if writing is not None:
                    written += await writing
                    progress(count + written)
                writing = asyncio.create_task(self._write_chunk(records))
            if writing is not None:
                written += await writing
                progress(count + written)
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
        return count

    def _parse_chunk(self, lineno: int, chunk: list[str]) -> list[tuple[str, Record]]:
        """A validated chunk's records (in a worker thread: the previous chunk's write goes on meanwhile)."""
        return [self.parse_line(lineno + i, line) for i, line in enumerate(chunk) if line.strip()]

    async def _write_chunk(self, records: list[tuple[str, Record]]) -> int:
        """Embed the records that came without a usable vector, then write them all; returns how many."""
        missing = [i for i, (_, fields) in enumerate(records) if not fields[F_VECTOR]]
        if missing:
            vectors = await self._ctx.embed([as_text(records[i][1][F_TEXT]) for i in missing], "embed import")
            for j, i in enumerate(missing):
                records[i][1][F_VECTOR] = vector_bytes(vectors[j])
        await self._writer.replace_all(records, "import batch")
        return len(records)

    async def _line_chunks(self, path: Path) -> AsyncIterator[tuple[int, list[str]]]:
        """(first line number, lines) of IMPORT_CHUNK lines at a time; every file operation bounded."""
        handle: IO[str] = await self._ctx.bounded("file", asyncio.to_thread(_open_text, path), f"open {path.name}")
        try:
            lineno = 1
            while True:
                lines = await self._ctx.bounded("file", asyncio.to_thread(_read_chunk, handle, IMPORT_CHUNK),
                                                f"read {path.name}")
                if not lines:
                    return
                yield lineno, lines
                lineno += len(lines)
        finally:
            handle.close()

    def parse_line(self, lineno: int, line: str) -> tuple[str, Record]:
        """One import line as (fact_id, record); InvalidInput names the line and the field."""
        where = f"line {lineno}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(where, f"is not JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise InvalidInput(where, "must be a JSON object")
        content = valid(CONTENT, item.get("content"), f"{where}.content",
                        max_fact_chars=self._ctx.settings.max_fact_chars)
        fid = valid(FACT_ID, item.get("fact_id") or derived_id(content_hash(content)), f"{where}.fact_id")
        meta = rules.metadata(item.get("metadata"), f"{where}.metadata")
        tags = rules.tags(item.get("tags"), f"{where}.tags")
        doc_id = item.get("doc_id")
        if doc_id is not None:
            valid(FACT_ID, doc_id, f"{where}.doc_id")
        made_by = item.get("embedding")
        if made_by is not None and not isinstance(made_by, str):
            raise InvalidInput(f"{where}.embedding", "must be the name of the model that made the vector")
        # Another model's vector cannot be compared with this one's: the content is embedded again instead.
        vector = self._vector(item.get("vector"), where) if made_by in (None, self._ctx.embedding.model_name) else b""
        created = _timestamp(item.get("created_at", time.time()), f"{where}.created_at")
        updated = _timestamp(item.get("updated_at", created), f"{where}.updated_at")
        return fid, build_record(fid, content, meta, tags, vector, updated_at=format_ts(updated), doc_id=doc_id,
                                 created_at=format_ts(created))

    def _vector(self, raw: Any, where: str) -> bytes:
        if not raw:
            return b""
        try:
            vector = base64.b64decode(raw, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidInput(f"{where}.vector", "is not base64") from None
        dim = self._ctx.embedding.dim
        if len(vector) != 4 * dim:
            raise InvalidInput(f"{where}.vector", f"has {len(vector) // 4} dimensions; the model has {dim} "
                               "(drop 'vector' to re-embed)")
        return vector


def _identity(path: Path) -> tuple[int, int, int]:
    """What changes when a file is rewritten or appended to: (size, mtime in ns, inode)."""
    if not path.is_file():
        raise InvalidInput("path", f"{str(path)!r} is not a readable file")
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _digest(lines: list[str]) -> bytes:
    return hashlib.sha256("".join(lines).encode("utf-8", "surrogatepass")).digest()


def _timestamp(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < MAX_EPOCH_S:
        raise InvalidInput(field, "must be epoch seconds")
    return float(value)


def _open_text(path: Path) -> IO[str]:
    if not path.is_file():
        raise InvalidInput("path", f"{str(path)!r} is not a readable file")
    return path.open(encoding="utf-8")


def _read_chunk(handle: IO[str], lines: int) -> list[str]:
    chunk: list[str] = []
    try:
        for line in handle:
            chunk.append(line)
            if len(chunk) == lines:
                break
    except UnicodeDecodeError:
        raise InvalidInput("path", f"{handle.name} is not UTF-8 text") from None
    return chunk
