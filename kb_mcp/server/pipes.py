"""stdin and stdout served by the event loop itself when they are pipes or sockets, as MCP clients launch us.

The SDK's stdio transport reads each line and writes and flushes each reply on a worker thread: three thread hops
per call, which at 8 calls in flight cost the model CPU it needed (docs/benchmarks.md). Here the loop reads and
writes the descriptors directly. As the SDK does, fd 0 and 1 are diverted while serving (to the null device and to
stderr) so stray output from a library cannot corrupt the wire, and restored afterwards.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

MAX_LINE = 1 << 30  # one JSON-RPC message per line; the SDK's own reader has no limit either


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def native_stdio_possible(fds: tuple[int, int] = (0, 1)) -> bool:
    """Whether stdin and stdout can be served by the loop: POSIX pipes or sockets (a terminal or a file is left
    to the SDK's transport: making it non-blocking would change it for the shell too)."""
    return sys.platform != "win32" and all(_is_pipe(fd) for fd in fds)


class LineReader:
    """The lines of a pipe, as the SDK's transport iterates them (text, newline kept)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def __aiter__(self) -> AsyncIterator[str]:
        while line := await self._reader.readline():
            yield line.decode("utf-8", errors="replace")


class _Drained(asyncio.Protocol):
    """Write-side flow control: `drain` waits while the pipe's buffer is over its high-water mark."""

    def __init__(self) -> None:
        self._resumed = asyncio.Event()
        self._resumed.set()

    def pause_writing(self) -> None:
        self._resumed.clear()

    def resume_writing(self) -> None:
        self._resumed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._resumed.set()  # a writer waiting to drain goes on, and its next write finds the pipe closed

    async def drain(self) -> None:
        await self._resumed.wait()


class PipeWriter:
    """A pipe written by the loop: `write` queues the text, `flush` waits until the pipe has taken it."""

    def __init__(self, transport: asyncio.WriteTransport, protocol: _Drained) -> None:
        self._transport = transport
        self._protocol = protocol

    async def write(self, text: str) -> None:
        if self._transport.is_closing():
            raise BrokenPipeError("the client closed stdout")
        self._transport.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._protocol.drain()

    def close(self) -> None:
        self._transport.close()


@asynccontextmanager
async def native_stdio() -> AsyncIterator[tuple[LineReader, PipeWriter]]:
    """stdin as lines and stdout as a writer, both on the running loop; fd 0 and 1 diverted meanwhile."""
    loop = asyncio.get_running_loop()
    wire_in, wire_out = os.dup(0), os.dup(1)
    saved_in, saved_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    try:
        reader = asyncio.StreamReader(limit=MAX_LINE)
        in_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                       os.fdopen(wire_in, "rb", buffering=0))
        out_transport, protocol = await loop.connect_write_pipe(_Drained, os.fdopen(wire_out, "wb", buffering=0))
        out_transport.set_write_buffer_limits(high=0)  # flush waits until the pipe has taken every byte, as the SDK's
        writer = PipeWriter(out_transport, protocol)
        try:
            yield LineReader(reader), writer
            await writer.flush()
        finally:
            in_transport.close()
            writer.close()
    finally:
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.set_blocking(0, True)  # the loop's transports made the shared descriptions non-blocking
        os.set_blocking(1, True)
        os.close(saved_in)
        os.close(saved_out)
