"""`tooldeck gateway --stdio` while a daemon runs: the client's stdio joined to the daemon's
gateway socket (`<data dir>/gateway.sock`), where the daemon's router serves it as one session.

Both sides speak newline-delimited JSON-RPC, so lines pass as they are, in one read and one
write each way. The bridge holds its connection for its whole life. It reads each line only to
remember what a new connection would need: the client's `initialize`, its log level, its
resource subscriptions, and the requests still waiting for an answer.

When the daemon goes away (a restart, an upgrade), the bridge does not exit: it answers the
requests in flight with an error that says so, waits for the daemon to come back (up to
`RECONNECT_S`), replays the client's `initialize`, log level and subscriptions on the new
connection, and tells the client that every list may have changed. While it waits, requests
are answered at once with that error. If no daemon comes back in time, it writes one line to
stderr and exits 1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import orjson

from app.core import jsonrpc
from app.core.jsonrpc import Message
from app.faces.gateway.stdio_face import HELLO_KEY, hello

logger = logging.getLogger(__name__)

RECONNECT_S = 30.0
RETRY_EVERY_S = 0.2
# Ids of the bridge's own replayed requests: strings no client of ours sends.
REPLAY_PREFIX = "tooldeck-bridge-replay-"
LISTS_CHANGED = (
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
)


class BridgeRefused(Exception):
    """The daemon refused the hello (no such server or profile); the message says why."""


class _Side(asyncio.Protocol):
    def __init__(self, on_data: Callable[[bytes], None], on_end: Callable[[], None]) -> None:
        self.on_data = on_data
        self.on_end = on_end
        self.ended = False

    def data_received(self, data: bytes) -> None:
        self.on_data(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended:
            self.ended = True
            self.on_end()


class Bridge:
    def __init__(
        self,
        socket_path: Path,
        view: str,
        name: str | None,
        *,
        reconnect_s: float = RECONNECT_S,
        max_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.socket_path = socket_path
        self.view, self.name = view, name
        self.reconnect_s = reconnect_s
        self.max_bytes = max_bytes
        self.initialize: Message | None = None
        self.initialized = False
        self.log_level: Message | None = None
        self.subscriptions: dict[str, Message] = {}
        self.waiting: dict[Any, str] = {}  # the client's requests in flight: id -> method
        self.daemon: asyncio.Transport | None = None
        self.client_out: asyncio.WriteTransport | None = None
        self.replays: set[str] = set()
        self.client_done = False
        self.finished: asyncio.Future[int] | None = None
        self.reconnecting: asyncio.Task[None] | None = None
        self.from_client = jsonrpc.LineSplitter(self._client_line, max_bytes, self._too_large)
        self.from_daemon = jsonrpc.LineSplitter(self._daemon_line, max_bytes, self._too_large)
        self._client_lines: list[bytes] = []
        self._daemon_lines: list[bytes] = []

    # ---- life -----------------------------------------------------------------------------

    async def run(self, protocol_in: int, protocol_out: int) -> int:
        loop = asyncio.get_running_loop()
        self.finished = loop.create_future()
        await self._connect()
        self.client_out, _ = await loop.connect_write_pipe(
            lambda: _Side(_ignore, self._client_went_away),
            os.fdopen(protocol_out, "wb", buffering=0),
        )
        client_in, _ = await loop.connect_read_pipe(
            lambda: _Side(self._client_data, self._client_closed_stdin),
            os.fdopen(protocol_in, "rb", buffering=0),
        )
        try:
            return await self.finished
        finally:
            client_in.close()
            if self.reconnecting is not None:
                self.reconnecting.cancel()
            if self.daemon is not None:
                self.daemon.close()
            for _ in range(100):
                if self.client_out.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.01)
            self.client_out.close()

    async def _connect(self) -> None:
        """Connect and greet; raises OSError when nobody listens, BridgeRefused on a no."""
        loop = asyncio.get_running_loop()
        greeting: asyncio.Future[Message] = loop.create_future()
        buffered = bytearray()

        def first_data(data: bytes) -> None:
            if greeting.done():
                self._daemon_data(data)
                return
            buffered.extend(data)
            line, sep, rest = bytes(buffered).partition(b"\n")
            if not sep:
                return
            buffered.clear()
            greeting.set_result(orjson.loads(line))
            if rest:
                self._daemon_data(rest)

        def ended() -> None:
            if not greeting.done():
                greeting.set_exception(ConnectionResetError("the daemon closed the socket"))
            else:
                self._daemon_gone(transport)

        transport, _ = await loop.create_unix_connection(
            lambda: _Side(first_data, ended), str(self.socket_path)
        )
        transport.write(hello(self.view, self.name))
        try:
            async with asyncio.timeout(10):
                answer = await greeting
        except BaseException:
            transport.close()
            raise
        if answer.get(HELLO_KEY) != 1 or not answer.get("ok"):
            transport.close()
            raise BridgeRefused(str(answer.get("error") or "the daemon refused the bridge"))
        self.daemon = transport

    def _finish(self, code: int) -> None:
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(code)

    def _client_closed_stdin(self) -> None:
        # Pass the end on, and leave once the daemon has answered what is still in flight.
        self.client_done = True
        if self.daemon is not None and self.daemon.can_write_eof():
            self.daemon.write_eof()
        if not self.waiting or self.daemon is None:
            self._finish(0)

    def _client_went_away(self) -> None:
        self._finish(0)

    # ---- client -> daemon -----------------------------------------------------------------

    def _client_data(self, data: bytes) -> None:
        self.from_client.feed(data)
        lines, self._client_lines = self._client_lines, []
        if not lines:
            return
        if self.daemon is None:
            return
        self.daemon.write(b"\n".join(lines) + b"\n")

    def _client_line(self, line: bytes) -> None:
        message = jsonrpc.parse(line)
        if message is None:
            return
        method = message.get("method")
        if method is not None:
            if "id" in message:
                if self.daemon is None:
                    self._to_client(
                        jsonrpc.error_response(
                            message["id"],
                            jsonrpc.CONNECTION_CLOSED,
                            "the Tooldeck daemon is restarting; try again in a moment",
                        )
                    )
                    return
                self.waiting[message["id"]] = method
                self._remember(method, message)
            elif method == "notifications/initialized":
                self.initialized = True
            elif method == "notifications/cancelled":
                # No answer follows a cancellation: stop waiting for one.
                self.waiting.pop((message.get("params") or {}).get("requestId"), None)
        self._client_lines.append(line)

    def _remember(self, method: str, message: Message) -> None:
        params = message.get("params") or {}
        if method == "initialize":
            self.initialize = message
        elif method == "logging/setLevel":
            self.log_level = message
        elif method == "resources/subscribe" and isinstance(params.get("uri"), str):
            self.subscriptions[params["uri"]] = message
        elif method == "resources/unsubscribe":
            self.subscriptions.pop(params.get("uri"), None)

    # ---- daemon -> client -----------------------------------------------------------------

    def _daemon_data(self, data: bytes) -> None:
        self.from_daemon.feed(data)
        lines, self._daemon_lines = self._daemon_lines, []
        if lines and self.client_out is not None:
            self.client_out.write(b"\n".join(lines) + b"\n")

    def _daemon_line(self, line: bytes) -> None:
        message = jsonrpc.parse(line)
        if message is not None and "method" not in message:
            request_id = message.get("id")
            if isinstance(request_id, str) and request_id in self.replays:
                self.replays.discard(request_id)
                return  # the answer to a replayed request: the client did not ask this time
            self.waiting.pop(request_id, None)
            if self.client_done and not self.waiting:
                self._finish(0)
        self._daemon_lines.append(line)

    def _to_client(self, message: Message) -> None:
        if self.client_out is not None:
            self.client_out.write(jsonrpc.encode_line(message))

    def _too_large(self, head: bytes, tail: bytes, size: int) -> None:
        logger.warning("dropped a message of %s: over the limit", jsonrpc.human_bytes(size))

    # ---- the daemon going away and coming back --------------------------------------------

    def _daemon_gone(self, transport: asyncio.BaseTransport) -> None:
        if transport is not self.daemon:
            return
        self.daemon = None
        for request_id, method in list(self.waiting.items()):
            self._to_client(
                jsonrpc.error_response(
                    request_id,
                    jsonrpc.CONNECTION_CLOSED,
                    f"the Tooldeck daemon restarted during {method}; try again",
                )
            )
        self.waiting.clear()
        if self.client_done:
            self._finish(0)
        elif self.finished is not None and not self.finished.done():
            self.reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_s
        while loop.time() < deadline:
            try:
                await self._connect()
            except (OSError, TimeoutError):
                await asyncio.sleep(RETRY_EVERY_S)
                continue
            except BridgeRefused as exc:
                self._give_up(f"the restarted daemon refused the gateway: {exc}")
                return
            self._replay()
            return
        self._give_up(
            f"the Tooldeck daemon went away and did not come back within {self.reconnect_s:g} s"
        )

    def _replay(self) -> None:
        assert self.daemon is not None
        replays: list[Message] = []
        if self.initialize is not None:
            replays.append(dict(self.initialize))
        if self.log_level is not None:
            replays.append(dict(self.log_level))
        replays.extend(dict(message) for message in self.subscriptions.values())
        lines = []
        for number, message in enumerate(replays):
            message["id"] = f"{REPLAY_PREFIX}{number}"
            self.replays.add(message["id"])
            lines.append(jsonrpc.encode_line(message))
            if message.get("method") == "initialize" and self.initialized:
                lines.append(jsonrpc.encode_line(jsonrpc.notification("notifications/initialized")))
        self.daemon.write(b"".join(lines))
        for method in LISTS_CHANGED:
            self._to_client(jsonrpc.notification(method))

    def _give_up(self, why: str) -> None:
        sys.stderr.write(f"tooldeck: {why}; the gateway bridge exits\n")
        sys.stderr.flush()
        self._finish(1)


def _ignore(data: bytes) -> None:
    pass


async def bridge_to_daemon(
    socket_path: Path,
    view: str,
    name: str | None,
    protocol_in: int,
    protocol_out: int,
    *,
    reconnect_s: float = RECONNECT_S,
    max_bytes: int = 8 * 1024 * 1024,
) -> int:
    """Run the bridge until the client leaves (0) or the daemon is gone for good (1)."""
    bridge = Bridge(socket_path, view, name, reconnect_s=reconnect_s, max_bytes=max_bytes)
    try:
        return await bridge.run(protocol_in, protocol_out)
    except BridgeRefused as exc:
        sys.stderr.write(f"tooldeck: {exc}\n")
        return 1
    except PermissionError:
        sys.stderr.write(f"tooldeck: cannot open {socket_path}: run this as the daemon's user\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"tooldeck: cannot reach the daemon at {socket_path}: {exc}\n")
        return 1
    finally:
        with suppress(Exception):
            sys.stderr.flush()
