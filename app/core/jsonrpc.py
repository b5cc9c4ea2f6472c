"""JSON-RPC on the wire, as the gateway and the upstream connections speak it: parse once, write
once.

Messages are plain dicts from orjson; nothing on the forwarding path builds a model, so fields
newer than our code travel untouched. Used by the runtime's connections (Tooldeck as an MCP
client) and by the gateway's faces (Tooldeck as an MCP server).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import orjson

logger = logging.getLogger(__name__)

Message = dict[str, Any]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# The implementation-defined band, with the SDK's meanings.
CONNECTION_CLOSED = -32000
REQUEST_TIMEOUT = -32001
# Tooldeck's own routing refusals: a server not running, a request it cannot attribute.
ROUTING_ERROR = -32002
# `error.data.tooldeck` of an upstream message refused for its size (see LineSplitter).
TOO_LARGE = "result_too_large"

_dumps = orjson.dumps
_NEWLINE = orjson.OPT_APPEND_NEWLINE


def encode_line(message: Message) -> bytes:
    """One message as one newline-terminated line (the stdio framing)."""
    try:
        return _dumps(message, option=_NEWLINE)
    except TypeError:
        return _stdlib_dumps(message) + b"\n"


def encode(message: Message) -> bytes:
    try:
        return _dumps(message)
    except TypeError:
        return _stdlib_dumps(message)


def _stdlib_dumps(message: Message) -> bytes:
    # orjson refuses integers beyond 64 bits; the stdlib writes them exactly.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


# orjson turns integers beyond 64 bits into floats; a line that may hold one (20 digits in a
# row) goes to the stdlib parser, which keeps them exact.
_BIG_INT = re.compile(rb"\d{20}")


def parse(line: bytes, *, quiet: bool = False) -> Message | None:
    """One message, or None for a line that is not a JSON object (logged unless `quiet`)."""
    try:
        message = orjson.loads(line) if _BIG_INT.search(line) is None else json.loads(line)
    except (orjson.JSONDecodeError, ValueError):
        message = None
    if not isinstance(message, dict):
        # Batches left MCP in 2025-06-18, so a list is no message either.
        if not quiet:
            logger.warning("dropping a line that is not a JSON-RPC message: %.200r", line)
        return None
    return message


def error_response(request_id: Any, code: int, text: str, data: Any = None) -> Message:
    error: Message = {"code": code, "message": text}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def result_response(request_id: Any, result: Message) -> Message:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def notification(method: str, params: Message | None = None) -> Message:
    message: Message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def human_bytes(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


# ---- framing --------------------------------------------------------------------------------

# What is kept of an oversized line: enough of both ends to find its id.
_EDGE = 512
_ID_AT_START = re.compile(rb'^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d+)')
_ID_AT_END = re.compile(rb'"id"\s*:\s*(-?\d+)\s*(?:,\s*"jsonrpc"\s*:\s*"2\.0"\s*)?\}\s*$')
_METHOD_AT_START = re.compile(rb'^\s*\{[^{]{0,80}"method"\s*:')


def oversized_id(head: bytes, tail: bytes) -> int | None:
    """The integer id of an oversized response from its two ends, or None if it has none there.

    Python servers write `{"jsonrpc":..,"id":..,"result":..}` and Node servers
    `{"result":..,"jsonrpc":..,"id":..}`: the id is at one end or the other.
    """
    if _METHOD_AT_START.match(head):
        return None
    found = _ID_AT_START.match(head) or _ID_AT_END.search(tail)
    return int(found.group(1)) if found else None


class LineSplitter:
    """Newline framing for a byte stream, with a cap on the size of one message.

    `on_line` gets each complete line. A line longer than `max_bytes` is never held whole: once
    the cap is passed only its first and last bytes are kept, and `on_oversize(head, tail,
    size)` is called when it ends, so a server answering gigabytes cannot grow us.
    """

    __slots__ = ("_edge", "_max", "_on_line", "_on_oversize", "_skipped", "_tail")

    def __init__(
        self,
        on_line: Callable[[bytes], None],
        max_bytes: int | None = None,
        on_oversize: Callable[[bytes, bytes, int], None] | None = None,
    ) -> None:
        self._tail = bytearray()
        self._on_line = on_line
        self._max = max_bytes
        self._on_oversize = on_oversize
        # While skipping an oversized line: its size so far, and (head, last bytes).
        self._skipped = -1
        self._edge: tuple[bytes, bytearray] = (b"", bytearray())

    def feed(self, data: bytes) -> None:
        start = 0
        if self._skipped >= 0:
            newline = data.find(b"\n")
            if newline < 0:
                self._skip(data)
                return
            self._skip(data[:newline])
            self._end_oversize()
            start = newline + 1
        end = data.rfind(b"\n")
        if end < start:
            self._hold(data[start:] if start else data)
            return
        if self._tail:
            self._tail += data[start : end + 1]
            chunk = bytes(self._tail)
            self._tail.clear()
        else:
            chunk = data[start : end + 1] if start or end + 1 < len(data) else data
        on_line, cap = self._on_line, self._max
        for line in chunk.split(b"\n"):
            if not line or line.isspace():
                continue
            if cap is not None and len(line) > cap:
                self._report(line[:_EDGE], line[-_EDGE:], len(line))
            else:
                on_line(line)
        if end + 1 < len(data):
            self._hold(data[end + 1 :])

    def _hold(self, data: bytes) -> None:
        self._tail += data
        if self._max is not None and len(self._tail) > self._max:
            self._skipped = len(self._tail)
            self._edge = (bytes(self._tail[:_EDGE]), bytearray(self._tail[-_EDGE:]))
            self._tail.clear()

    def _skip(self, data: bytes) -> None:
        self._skipped += len(data)
        last = self._edge[1]
        last += data[-_EDGE:]
        del last[:-_EDGE]

    def _end_oversize(self) -> None:
        head, last = self._edge
        size = self._skipped
        self._skipped, self._edge = -1, (b"", bytearray())
        self._report(head, bytes(last), size)

    def _report(self, head: bytes, tail: bytes, size: int) -> None:
        if self._on_oversize is not None:
            self._on_oversize(head, tail, size)
        else:
            logger.warning("dropping a message of %s", human_bytes(size))


class Corked:
    """Joins the writes to one transport until the current read callback ends.

    At 8 requests in flight one read carries several messages; without corking each would cost
    its own write (a syscall, and a wake-up of the peer). `feed_and_flush` flushes when a read
    callback ends; writes made by tasks are flushed by a `call_soon`.
    """

    __slots__ = ("chunks", "write_now")

    def __init__(self, write_now: Callable[[bytes], None]) -> None:
        self.write_now = write_now
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self.chunks:
            if not _dirty and not _reading[0]:
                asyncio.get_running_loop().call_soon(flush_corked)
            _dirty.append(self)
        self.chunks.append(data)


_dirty: list[Corked] = []
_reading = [False]  # inside a read callback, which flushes when it ends


def feed_and_flush(splitter: LineSplitter, data: bytes) -> None:
    _reading[0] = True
    try:
        splitter.feed(data)
    finally:
        _reading[0] = False
        if _dirty:
            flush_corked()


def flush_corked() -> None:
    for corked in _dirty:
        chunks = corked.chunks
        try:
            corked.write_now(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except Exception:
            logger.debug("a corked write failed: its transport closed", exc_info=True)
        chunks.clear()
    _dirty.clear()
