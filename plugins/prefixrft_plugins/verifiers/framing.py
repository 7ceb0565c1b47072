"""Length-prefixed JSON messages over pipes: how verifiers talk to their helper processes.

Each message is a 4-byte big-endian length then that many bytes of UTF-8 JSON. JSON, not
pickle: a helper process that was compromised still cannot run code in the verifier.
"""

from __future__ import annotations

import json
import os


def write_message(fd: int, payload: object) -> None:
    """Send one message (blocking until written)."""
    data = json.dumps(payload, separators=(",", ":")).encode()
    write_all(fd, len(data).to_bytes(4, "big") + data)


def read_message(fd: int) -> object | None:
    """The next message, or None at end of stream."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, int.from_bytes(head, "big"))
    return None if body is None else json.loads(body)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, need = [], size
    while need:
        chunk = os.read(fd, min(need, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        need -= len(chunk)
    return b"".join(chunks)
