"""Which stdio descriptors the loop serves itself (pipes and sockets) and which it leaves to the SDK."""

from __future__ import annotations

import os
import socket
import tempfile

from kb_mcp.server.pipes import native_stdio_possible


def test_pipes_and_sockets_are_served_by_the_loop() -> None:
    read, write = os.pipe()
    left, right = socket.socketpair()
    try:
        assert native_stdio_possible((read, write))
        assert native_stdio_possible((left.fileno(), right.fileno()))
    finally:
        os.close(read)
        os.close(write)
        left.close()
        right.close()


def test_a_file_or_a_closed_descriptor_is_left_to_the_sdk() -> None:
    read, write = os.pipe()
    with tempfile.TemporaryFile() as file:
        assert not native_stdio_possible((read, file.fileno()))
    os.close(read)
    os.close(write)
    assert not native_stdio_possible((read, write))  # closed: fstat fails
