"""The line faces: one client over stdin/stdout, and the daemon's Unix socket for bridges.

Both speak newline-delimited JSON-RPC. Reading is an `asyncio.Protocol` whose `data_received`
parses and routes at once; writing is a transport's `write()`, corked per read so that several
answers leave in one syscall. There is no thread and no task per message.

stdout is the protocol: `claim_stdio` moves it to a private descriptor and points fd 1 (and
`sys.stdout`) at stderr, so a stray `print()`, a library writing to stdout, or a child that
inherits fd 1 can never corrupt a frame.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import logging
import os
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from app.core import jsonrpc
from app.core.jsonrpc import Message
from app.faces.gateway.router import Router, Session, View

logger = logging.getLogger(__name__)

# How long a client that closed its stdin waits for the answers still in flight.
DRAIN_S = 5.0
HELLO_KEY = "tooldeck-gateway"


def claim_stdio() -> tuple[int, int]:
    """Private (in, out) descriptors for the protocol; fd 0 becomes /dev/null, fd 1 stderr."""
    protocol_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    protocol_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True)
    return protocol_in, protocol_out


class _LineReader(asyncio.Protocol):
    """Feeds each complete line to `on_line`; tells `done` when the stream ends."""

    def __init__(
        self, on_line: Callable[[bytes], None], done: asyncio.Future[None], max_bytes: int
    ) -> None:
        self.splitter = jsonrpc.LineSplitter(on_line, max_bytes, self._too_large)
        self.done = done

    def _too_large(self, head: bytes, tail: bytes, size: int) -> None:
        logger.warning("dropped a client message of %s: over the limit", jsonrpc.human_bytes(size))

    def data_received(self, data: bytes) -> None:
        jsonrpc.feed_and_flush(self.splitter, data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _Writer(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _ThreadReader:
    """stdin that is a regular file (`gateway --stdio < requests.jsonl`) has no pipe transport:
    it is read in a worker thread instead."""

    def __init__(self, loop: asyncio.AbstractEventLoop, file: Any, protocol: _LineReader) -> None:
        self._task = loop.create_task(self._run(file, protocol))

    async def _run(self, file: Any, protocol: _LineReader) -> None:
        while data := await asyncio.to_thread(file.read, 65536):
            protocol.data_received(data)
        protocol.connection_lost(None)

    def close(self) -> None:
        self._task.cancel()


async def serve_stdio(router: Router, view: View, protocol_in: int, protocol_out: int) -> None:
    """Serve one client until its stdin closes, then answer what is still in flight."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    out, _ = await loop.connect_write_pipe(
        lambda: _Writer(done), os.fdopen(protocol_out, "wb", buffering=0)
    )
    write = jsonrpc.Corked(out.write).write
    encode_line = jsonrpc.encode_line

    def deliver(message: Message, related: Any) -> None:
        write(encode_line(message))

    session = router.open_session(view, deliver, "stdio")

    def on_line(line: bytes) -> None:
        message = jsonrpc.parse(line)
        if message is not None:
            session.receive(message)

    reader = _LineReader(on_line, done, router.port.settings.max_result_bytes)
    in_file = os.fdopen(protocol_in, "rb", buffering=0)
    incoming: Any
    try:
        incoming, _ = await loop.connect_read_pipe(lambda: reader, in_file)
    except ValueError:
        incoming = _ThreadReader(loop, in_file, reader)
    try:
        await done
        # Polled: the session has no event for "nothing left in flight", and this runs once.
        for _ in range(int(DRAIN_S / 0.01)):
            if session.idle or out.is_closing():
                break
            await asyncio.sleep(0.01)
    finally:
        session.close()
        incoming.close()
        for _ in range(100):
            if out.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.01)
        out.close()


# ---- the daemon's socket, for `tooldeck gateway --stdio` bridges ----------------------------


def hello(view: str, name: str | None) -> bytes:
    """The bridge's first line: which view it wants."""
    return jsonrpc.encode_line({HELLO_KEY: 1, "view": view, "name": name})


class _SocketClient(asyncio.Protocol):
    """One bridge on the daemon's socket: a hello line, then newline JSON-RPC like stdio."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.splitter = jsonrpc.LineSplitter(
            self._line, router.port.settings.max_result_bytes, self._too_large
        )
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.write: Callable[[bytes], None] = _nowhere
        self.closing: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.write = jsonrpc.Corked(transport.write).write

    def _too_large(self, head: bytes, tail: bytes, size: int) -> None:
        logger.warning("dropped a bridge message of %s: over the limit", jsonrpc.human_bytes(size))

    def _line(self, line: bytes) -> None:
        message = jsonrpc.parse(line)
        if message is None:
            return
        if self.session is not None:
            self.session.receive(message)
            return
        self._greeted(message)

    def _greeted(self, message: Message) -> None:
        kind, name = message.get("view"), message.get("name")
        try:
            if message.get(HELLO_KEY) != 1:
                raise ValueError("the first line must be a gateway hello")
            view = View(self.router, str(kind), name if isinstance(name, str) else None)
        except ValueError as exc:
            self._refuse(str(exc))
            return
        missing = view.missing()
        if missing is not None:
            self._refuse(missing)
            return
        encode_line = jsonrpc.encode_line
        write = self.write

        def deliver(reply: Message, related: Any) -> None:
            write(encode_line(reply))

        write(encode_line({HELLO_KEY: 1, "ok": True}))
        self.session = self.router.open_session(view, deliver, "bridge")

    def _refuse(self, why: str) -> None:
        self.write(jsonrpc.encode_line({HELLO_KEY: 1, "ok": False, "error": why}))
        jsonrpc.flush_corked()
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        jsonrpc.feed_and_flush(self.splitter, data)

    def eof_received(self) -> bool:
        # The client is done sending: answer what is in flight, then close our side too.
        self.closing = asyncio.get_running_loop().create_task(self._close_when_idle())
        return True

    async def _close_when_idle(self) -> None:
        # Polled: the session has no event for "nothing left in flight", and this runs once.
        for _ in range(int(DRAIN_S / 0.01)):
            if self.session is None or self.session.idle:
                break
            await asyncio.sleep(0.01)
        jsonrpc.flush_corked()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.write = _nowhere
        if self.session is not None:
            self.session.close()


def _nowhere(data: bytes) -> None:
    pass


async def open_socket(router: Router, path: Path) -> asyncio.AbstractServer:
    """Listen on `path` (0600: the data dir's trust); a stale socket of a crash is replaced."""
    with suppress(FileNotFoundError):
        os.unlink(path)
    old = os.umask(0o177)
    try:
        server = await asyncio.get_running_loop().create_unix_server(
            lambda: _SocketClient(router), str(path)
        )
    finally:
        os.umask(old)
    return server


async def close_socket(server: asyncio.AbstractServer, path: Path) -> None:
    server.close()
    with suppress(Exception):
        async with asyncio.timeout(2):
            await server.wait_closed()
    with suppress(FileNotFoundError):
        os.unlink(path)
