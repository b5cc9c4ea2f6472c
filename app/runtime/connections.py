"""One MCP connection per server, shared by the supervisor and the gateway's router.

Tooldeck is the MCP client of each server through one connection that speaks JSON-RPC at the
message level: requests go out under our own integer ids, answers are matched by id and handed
to a per-request callback, and nothing is validated into models on the way (the gateway
forwards results as they came; the supervisor and the facade validate what they use themselves,
off the gateway's path). A stdio child is driven through asyncio pipes, with no thread per
message; streamable-HTTP and SSE servers go through the SDK's transports, converting only the
JSON-RPC envelope.

A stdio child's stderr is kept both in memory (the last lines) and in a size-capped, rotated
log file. Start-up failures become `StartError`s whose message says what a person can do. A
message bigger than the result cap is never buffered whole: it becomes an error answer to its
request.

The connection declares the client capabilities the gateway can honour (sampling, elicitation,
roots), so servers show the tools that need them; a server's request for one of them goes to
the attached listener (the router), which finds the client session whose call caused it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
import mcp_types as types
from mcp.shared.exceptions import MCPError

from app import __version__
from app.core import jsonrpc
from app.core.jsonrpc import Message
from app.core.scrub import mask_args, mask_url
from app.runtime.process_registry import INSTANCE_ENV, ProcessRegistry
from app.runtime.serverlog import LogWriter, ServerLog, read_log_tail
from app.runtime.spawn_guard import check_command, guarded

__all__ = [
    "Connection",
    "ConnectionRegistry",
    "ConnectionSpec",
    "LogWriter",
    "NeedsLogin",
    "ServerLog",
    "StartError",
    "UpstreamListener",
    "end_process_group",
    "open_connection",
    "read_log_tail",
    "seconds",
]

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = "2025-11-25"
CLIENT_INFO: Message = {"name": "tooldeck", "version": __version__}
# Declared to every server so that it shows the tools that need them; the router routes each
# such request to the client session whose call caused it, or refuses it with the reason.
CLIENT_CAPABILITIES: Message = {
    "roots": {"listChanged": True},
    "sampling": {},
    "elicitation": {"form": {}, "url": {}},
}
MAX_TOOL_PAGES = 100
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# How long an exited child's last output may take to arrive after it exited.
DRAIN_S = 1.0
# The SDK's shutdown of a stdio child: stdin closed, then SIGTERM, then SIGKILL, this far apart.
STOP_GRACE_S = 2.0
HTTP_READ_TIMEOUT_S = 300.0

ResponseHandler = Callable[[Message], None]


class StartError(Exception):
    """A server could not be started or connected; the message is for a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NeedsLogin(StartError):
    """An OAuth-protected server wants an authorization that only a person can give."""

    def __init__(self, name: str) -> None:
        super().__init__(f"needs login: run `tooldeck server login {name}`")


def seconds(value: float) -> str:
    """30.0 -> "30", 0.25 -> "0.25": timeouts read as a person typed them."""
    return f"{value:g}"


# ---- what to connect to -----------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionSpec:
    name: str
    transport: str = "stdio"
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, source: Any) -> ConnectionSpec:
        """From anything with the server fields: a `ToolServer` row or a `ToolServerCreate`."""
        return cls(
            name=source.name,
            transport=source.transport or "stdio",
            command=source.command,
            args=tuple(str(arg) for arg in source.args or ()),
            env=tuple(sorted((str(k), str(v)) for k, v in (source.env or {}).items())),
            cwd=source.cwd or None,
            url=source.url,
            headers=tuple(sorted((str(k), str(v)) for k, v in (source.headers or {}).items())),
        )


class UpstreamListener(Protocol):
    """Who gets a server's messages that are not answers to our own requests: the router."""

    def upstream_notification(self, conn: Connection, message: Message) -> None: ...
    def upstream_request(self, conn: Connection, message: Message) -> None: ...
    def upstream_closed(self, conn: Connection) -> None: ...


# ---- the connection -------------------------------------------------------------------------


class Connection:
    """An initialized MCP session with one server, at the message level."""

    transport = "stdio"

    def __init__(
        self,
        spec: ConnectionSpec,
        log: ServerLog,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        on_tools_changed: Callable[[], None] | None = None,
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self.log = log
        self.max_message_bytes = max_message_bytes
        self.pending: dict[int, ResponseHandler] = {}
        self._next_id = 0
        self.init_result: Message = {}
        self.pid: int | None = None
        self.exit_code: int | None = None
        self.started = time.monotonic()
        self.connect_ms = 0.0
        self.closed = asyncio.Event()
        # The server's database id, set by the supervisor; the router keys its state by it.
        self.server_id: str | None = None
        # The node that runs the server, when this is a link to its gateway (app.runtime.peers):
        # the calls it carries are metered there, not here.
        self.peer_node: str | None = None
        self.listener: UpstreamListener | None = None
        self._on_tools_changed = on_tools_changed
        self._on_closed = on_closed
        # The last lines a server wrote to stdout that were not MCP: usually why it failed.
        self.noise: list[str] = []

    # ---- what the handshake told us -------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def where(self) -> str:
        """The server, and for a link to another node's server, that node."""
        return self.name if self.peer_node is None else f"{self.name} on node {self.peer_node}"

    @property
    def protocol_version(self) -> str:
        return str(self.init_result.get("protocolVersion") or "")

    @property
    def server_info(self) -> Message:
        info = self.init_result.get("serverInfo")
        return info if isinstance(info, dict) else {}

    @property
    def server_name(self) -> str:
        return str(self.server_info.get("name") or "")

    @property
    def server_version(self) -> str:
        return str(self.server_info.get("version") or "")

    @property
    def instructions(self) -> str | None:
        value = self.init_result.get("instructions")
        return value if isinstance(value, str) else None

    @property
    def capabilities(self) -> Message:
        caps = self.init_result.get("capabilities")
        return caps if isinstance(caps, dict) else {}

    @property
    def server_capabilities(self) -> types.ServerCapabilities:
        return types.ServerCapabilities.model_validate(self.capabilities)

    @property
    def is_closed(self) -> bool:
        return self.closed.is_set()

    # ---- the transport's half -------------------------------------------------------------

    def write(self, message: Message) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    # ---- sending --------------------------------------------------------------------------

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def forward(self, message: Message, on_response: ResponseHandler) -> int:
        """Send a request under a fresh id of ours; `on_response` gets the raw answer."""
        if self.closed.is_set():
            on_response(
                jsonrpc.error_response(
                    message.get("id"),
                    jsonrpc.CONNECTION_CLOSED,
                    f"the connection to {self.where} is closed",
                )
            )
            return -1
        upstream_id = self._next_id = self._next_id + 1
        message["id"] = upstream_id
        self.pending[upstream_id] = on_response
        self.write(message)
        return upstream_id

    async def request(
        self, method: str, params: Message | None = None, timeout_s: float | None = None
    ) -> Message:
        """A request of Tooldeck's own; the result, or MCPError with the server's error."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        def answered(reply: Message) -> None:
            if not future.done():
                future.set_result(reply)

        message: Message = {"jsonrpc": "2.0", "id": 0, "method": method}
        if params is not None:
            message["params"] = params
        upstream_id = self.forward(message, answered)
        try:
            async with asyncio.timeout(timeout_s):
                reply = await future
        except (TimeoutError, asyncio.CancelledError):
            if self.pending.pop(upstream_id, None) is not None:
                self.notify(
                    "notifications/cancelled", {"requestId": upstream_id, "reason": "timed out"}
                )
            raise
        error = reply.get("error")
        if error is not None:
            if not isinstance(error, dict):
                error = {"code": jsonrpc.INTERNAL_ERROR, "message": str(error)}
            raise MCPError(
                int(error.get("code", jsonrpc.INTERNAL_ERROR)),
                str(error.get("message", "")),
                error.get("data"),
            )
        result = reply.get("result")
        return result if isinstance(result, dict) else {}

    def notify(self, method: str, params: Message | None = None) -> None:
        if not self.closed.is_set():
            self.write(jsonrpc.notification(method, params))

    def send(self, message: Message) -> None:
        """A prepared message: an answer to a server's request, or a notification."""
        if not self.closed.is_set():
            self.write(message)

    # ---- receiving ------------------------------------------------------------------------

    def _line(self, line: bytes) -> None:
        message = jsonrpc.parse(line, quiet=True)
        if message is None:
            # A server printing to stdout corrupts the protocol stream; say so in its log.
            text = line.decode("utf-8", "replace").strip()[:200]
            self.noise.append(text)
            del self.noise[:-3]
            self.log.note(f"not MCP on stdout: {text}")
            return
        self.dispatch(message)

    def dispatch(self, message: Message) -> None:
        method = message.get("method")
        if method is None:
            handler = self.pending.pop(message.get("id"), None)  # type: ignore[arg-type]
            if handler is not None:
                handler(message)
            return
        if "id" in message:
            if method == "ping":
                self.send(jsonrpc.result_response(message["id"], {}))
            elif self.listener is not None:
                self.listener.upstream_request(self, message)
            else:
                self.send(
                    jsonrpc.error_response(
                        message["id"],
                        jsonrpc.METHOD_NOT_FOUND,
                        f"no MCP client is connected to Tooldeck to answer {method}",
                    )
                )
            return
        if method == "notifications/tools/list_changed" and self._on_tools_changed is not None:
            self._on_tools_changed()
        if self.listener is not None:
            self.listener.upstream_notification(self, message)

    def _oversize(self, head: bytes, tail: bytes, size: int) -> None:
        limit = jsonrpc.human_bytes(self.max_message_bytes)
        text = (
            f"{self.name} answered with a message of {jsonrpc.human_bytes(size)}, over the "
            f"limit of {limit} (TOOLDECK_MAX_RESULT_BYTES); it was dropped"
        )
        self.log.note(text)
        upstream_id = jsonrpc.oversized_id(head, tail)
        handler = self.pending.pop(upstream_id, None) if upstream_id is not None else None
        if handler is None:
            logger.warning("%s", text)
            return
        data = {"tooldeck": jsonrpc.TOO_LARGE, "bytes": size, "limit": self.max_message_bytes}
        handler(jsonrpc.error_response(upstream_id, jsonrpc.INTERNAL_ERROR, text, data))

    def _lost(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        pending, self.pending = self.pending, {}
        for upstream_id, handler in pending.items():
            handler(
                jsonrpc.error_response(
                    upstream_id, jsonrpc.CONNECTION_CLOSED, f"the connection to {self.where} closed"
                )
            )
        if self.listener is not None:
            self.listener.upstream_closed(self)
        if self._on_closed is not None:
            self._on_closed()

    # ---- the handshake and Tooldeck's own typed requests -----------------------------------

    async def initialize(self) -> Message:
        result = await self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": CLIENT_CAPABILITIES,
                "clientInfo": CLIENT_INFO,
            },
        )
        self.init_result = result
        self.notify("notifications/initialized")
        return result

    async def ping(self, within_s: float) -> None:
        """A liveness probe; servers without `ping` are asked for their first page of tools."""
        async with asyncio.timeout(within_s):
            try:
                await self.request("ping")
            except MCPError as exc:
                if exc.code != types.METHOD_NOT_FOUND:
                    raise
                await self.request("tools/list")

    async def list_tools(self, within_s: float) -> list[types.Tool]:
        """Every page of the listing, within `within_s` seconds in all."""
        tools: list[types.Tool] = []
        cursor: str | None = None
        seen: set[str] = set()
        async with asyncio.timeout(within_s):
            for _page in range(MAX_TOOL_PAGES):
                page = await self.request("tools/list", {"cursor": cursor} if cursor else None)
                result = types.ListToolsResult.model_validate(page)
                tools.extend(result.tools)
                cursor = result.next_cursor
                # A server repeating a cursor would page forever.
                if not cursor or cursor in seen:
                    break
                seen.add(cursor)
        return tools

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        result = await self.request("tools/call", {"name": name, "arguments": arguments})
        return types.CallToolResult.model_validate(result)

    async def list_resources(
        self, params: types.PaginatedRequestParams | None = None
    ) -> types.ListResourcesResult:
        page = await self.request("resources/list", _cursor(params))
        return types.ListResourcesResult.model_validate(page)

    async def read_resource(self, uri: str) -> types.ReadResourceResult:
        result = await self.request("resources/read", {"uri": str(uri)})
        return types.ReadResourceResult.model_validate(result)

    async def list_prompts(
        self, params: types.PaginatedRequestParams | None = None
    ) -> types.ListPromptsResult:
        page = await self.request("prompts/list", _cursor(params))
        return types.ListPromptsResult.model_validate(page)

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None = None
    ) -> types.GetPromptResult:
        params: Message = {"name": name}
        if arguments:
            params["arguments"] = arguments
        return types.GetPromptResult.model_validate(await self.request("prompts/get", params))


def _cursor(params: types.PaginatedRequestParams | None) -> Message | None:
    cursor = params.cursor if params is not None else None
    return {"cursor": cursor} if cursor else None


# ---- stdio ----------------------------------------------------------------------------------


class _ChildProtocol(asyncio.SubprocessProtocol):
    def __init__(self, conn: StdioConnection) -> None:
        self.conn = conn
        self.splitter = jsonrpc.LineSplitter(conn._line, conn.max_message_bytes, conn._oversize)
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.stdout_closed = asyncio.Event()
        self.stderr_closed = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            jsonrpc.feed_and_flush(self.splitter, data)
        elif fd == 2:
            self.conn.log.feed(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self.stdout_closed.set()
            self.conn._lost()
        elif fd == 2:
            self.conn.log.finish()
            self.stderr_closed.set()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)
        # A grandchild may hold stdout open after the server itself exited.
        asyncio.get_running_loop().create_task(self._lost_after_drain())

    async def _lost_after_drain(self) -> None:
        with suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_S):
                await self.stdout_closed.wait()
        self.conn._lost()


class StdioConnection(Connection):
    def __init__(
        self,
        spec: ConnectionSpec,
        log: ServerLog,
        *,
        processes: ProcessRegistry | None = None,
        **options: Any,
    ) -> None:
        super().__init__(spec, log, **options)
        self._processes = processes
        self._transport: asyncio.SubprocessTransport | None = None
        self._protocol: _ChildProtocol | None = None
        self._write: Callable[[bytes], None] = _nowhere

    async def start(self, launcher: list[str] | None) -> None:
        if not self.spec.command:
            raise StartError("a stdio server needs a command")
        from mcp.client.stdio import get_default_environment

        if launcher:
            # The guard would start and then only say so as its own exit.
            unable = check_command(self.spec.command, dict(self.spec.env), self.spec.cwd)
            if unable is not None:
                raise StartError(unable)
        # The child learns nothing from the marker; it tells its processes from strangers that
        # later reuse their ids (app.runtime.process_registry).
        marker = uuid.uuid4().hex
        env = {**get_default_environment(), **dict(self.spec.env), INSTANCE_ENV: marker}
        if launcher:
            launcher, env = guarded(launcher, env)
        argv = [*(launcher or []), self.spec.command, *self.spec.args]
        loop = asyncio.get_running_loop()
        # Its own session and process group (its pid names the group): a stop reaches every
        # process it started, and a Ctrl-C in our terminal does not reach it.
        transport, protocol = await loop.subprocess_exec(
            lambda: _ChildProtocol(self),
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=self.spec.cwd,
            start_new_session=True,
        )
        self._transport, self._protocol = transport, protocol
        self.pid = transport.get_pid()
        if self._processes is not None:
            # Recorded while it runs, for the next start to end what a killed Tooldeck left.
            await asyncio.to_thread(self._processes.record, self.pid, self.spec.name, marker)
        stdin = transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        self._write = jsonrpc.Corked(stdin.write).write

    def write(self, message: Message) -> None:
        self._write(jsonrpc.encode_line(message))

    async def aclose(self) -> None:
        """Stdin closed, then SIGTERM to the group, then SIGKILL; whatever is left of the
        group ends too, and the last stderr lines are read."""
        transport, protocol = self._transport, self._protocol
        if transport is None or protocol is None:
            return
        self._write = _nowhere
        stdin = transport.get_pipe_transport(0)
        if stdin is not None:
            with suppress(Exception):
                stdin.close()
        pid = transport.get_pid()
        for signum in (None, signal.SIGTERM, signal.SIGKILL):
            if signum is not None and transport.get_returncode() is None:
                signal_group(pid, signum)
            with suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE_S):
                    await asyncio.shield(protocol.exited)
                break
        self.exit_code = transport.get_returncode()
        # A grandchild of a server that exited on its own would otherwise be orphaned.
        await end_process_group(pid)
        if self._processes is not None:
            self._processes.forget(pid)  # ended: SIGKILL, if it came to that, cannot be ignored
        with suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_S):
                await protocol.stderr_closed.wait()
        transport.close()
        self._lost()


def _nowhere(data: bytes) -> None:
    pass


# ---- streamable HTTP and SSE, through the SDK's transports ----------------------------------


class StreamsConnection(Connection):
    """The SDK's client transports yield `SessionMessage` streams; only the JSON-RPC envelope
    is converted, `params` and `result` stay the dicts the transport parsed."""

    def __init__(self, spec: ConnectionSpec, log: ServerLog, **options: Any) -> None:
        super().__init__(spec, log, **options)
        self.transport = spec.transport
        self._outbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def write(self, message: Message) -> None:
        self._outbox.put_nowait(message)

    def pump(self, read: Any, write: Any) -> None:
        self._tasks = [
            asyncio.create_task(self._pump_out(write), name=f"{self.name}:out"),
            asyncio.create_task(self._pump_in(read), name=f"{self.name}:in"),
        ]

    async def _pump_out(self, stream: Any) -> None:
        from mcp.shared.message import ClientMessageMetadata, SessionMessage

        try:
            while (message := await self._outbox.get()) is not None:
                version = self.protocol_version
                metadata = (
                    ClientMessageMetadata(headers={"mcp-protocol-version": version})
                    if version
                    else None
                )
                await stream.send(SessionMessage(_to_envelope(message), metadata=metadata))
        except Exception as exc:
            logger.info("%s: sending failed: %s", self.name, exc)
            self._lost()

    async def _pump_in(self, stream: Any) -> None:
        try:
            async for item in stream:
                if isinstance(item, Exception):
                    self.log.note(f"transport error: {item}")
                    continue
                self.dispatch(_from_envelope(item.message))
        except Exception as exc:
            logger.info("%s: receiving failed: %s", self.name, exc)
        finally:
            self._lost()

    async def aclose(self) -> None:
        self._outbox.put_nowait(None)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._lost()


def _to_envelope(message: Message) -> Any:
    from mcp_types import (
        ErrorData,
        JSONRPCError,
        JSONRPCNotification,
        JSONRPCRequest,
        JSONRPCResponse,
    )

    if "method" in message:
        fields: Message = {"jsonrpc": "2.0", "method": message["method"]}
        if "params" in message:
            fields["params"] = message["params"]
        if "id" in message:
            return JSONRPCRequest.model_construct(id=message["id"], **fields)
        return JSONRPCNotification.model_construct(**fields)
    if "error" in message:
        return JSONRPCError.model_construct(
            jsonrpc="2.0", id=message["id"], error=ErrorData.model_construct(**message["error"])
        )
    return JSONRPCResponse.model_construct(
        jsonrpc="2.0", id=message["id"], result=message["result"]
    )


def _from_envelope(envelope: Any) -> Message:
    from mcp_types import JSONRPCError, JSONRPCRequest, JSONRPCResponse

    if isinstance(envelope, JSONRPCResponse):
        return {"jsonrpc": "2.0", "id": envelope.id, "result": envelope.result}
    if isinstance(envelope, JSONRPCError):
        error: Message = {"code": envelope.error.code, "message": envelope.error.message}
        if envelope.error.data is not None:
            error["data"] = envelope.error.data
        return {"jsonrpc": "2.0", "id": envelope.id, "error": error}
    message: Message = {"jsonrpc": "2.0", "method": envelope.method}
    if isinstance(envelope, JSONRPCRequest):
        message["id"] = envelope.id
    params = getattr(envelope, "params", None)
    if params is not None:
        message["params"] = params
    return message


@asynccontextmanager
async def _http_transport(
    spec: ConnectionSpec, auth: httpx2.Auth | None
) -> AsyncIterator[tuple[Any, Any]]:
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = dict(spec.headers) or None
    url = spec.url or ""
    if spec.transport == "sse":
        async with sse_client(
            url, headers=headers, sse_read_timeout=HTTP_READ_TIMEOUT_S, auth=auth
        ) as streams:
            yield streams[0], streams[1]
        return
    timeout = httpx2.Timeout(30.0, read=HTTP_READ_TIMEOUT_S)
    async with (
        create_mcp_http_client(headers=headers, timeout=timeout, auth=auth) as client,
        streamable_http_client(url, http_client=client) as streams,
    ):
        yield streams[0], streams[1]


# ---- opening one --------------------------------------------------------------------------


@asynccontextmanager
async def open_connection(
    spec: ConnectionSpec,
    *,
    startup_timeout: float,
    log: ServerLog | None = None,
    on_tools_changed: Callable[[], None] | None = None,
    on_closed: Callable[[], None] | None = None,
    launcher: list[str] | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    processes: ProcessRegistry | None = None,
    auth: httpx2.Auth | None = None,
) -> AsyncIterator[Connection]:
    """Start or connect, `initialize` within `startup_timeout`, and yield the connection.

    `launcher` (app.runtime.spawn_guard) runs before a stdio command and execs it: same pid,
    same group. `processes` records the child's process group while it runs. `auth` is the
    httpx auth of an HTTP server (app.runtime.upstream_oauth).

    Leaving the context closes the connection and, for stdio, ends the child (stdin closed,
    then SIGTERM, then SIGKILL to its process group) and reaps it.
    """
    log = log if log is not None else ServerLog()
    options: dict[str, Any] = {
        "max_message_bytes": max_message_bytes,
        "on_tools_changed": on_tools_changed,
        "on_closed": on_closed,
    }
    began = time.monotonic()
    deadline = asyncio.get_running_loop().time() + startup_timeout
    conn: Connection | None = None
    ready = False
    try:
        async with AsyncExitStack() as stack:
            if spec.transport == "stdio":
                conn = StdioConnection(spec, log, processes=processes, **options)
                log.note(f"starting {spec.command} {' '.join(mask_args(spec.args))}".rstrip())
                stack.push_async_callback(conn.aclose)
                await conn.start(launcher)
            elif spec.transport in ("streamable_http", "sse"):
                if not spec.url:
                    raise StartError(f"a {spec.transport} server needs a url")
                conn = StreamsConnection(spec, log, **options)
                log.note(f"connecting to {mask_url(spec.url)}")
                async with asyncio.timeout_at(deadline):
                    read, write = await stack.enter_async_context(_http_transport(spec, auth))
                stack.push_async_callback(conn.aclose)
                conn.pump(read, write)
            else:
                raise StartError(f"unknown transport {spec.transport!r}")
            try:
                async with asyncio.timeout_at(deadline):
                    await _unless_login_needed(conn.initialize(), spec, auth)
            except BaseException:
                # A server that never finished starting has nothing to close gracefully.
                if conn.pid is not None:
                    signal_group(conn.pid, signal.SIGTERM)
                raise
            conn.started = time.monotonic()
            conn.connect_ms = (conn.started - began) * 1000
            log.note(
                f"connected: {conn.server_name} {conn.server_version}, "
                f"protocol {conn.protocol_version}" + (f", pid {conn.pid}" if conn.pid else "")
            )
            ready = True
            yield conn
    except Exception as exc:
        if ready:
            raise
        asked: asyncio.Event | None = getattr(auth, "login_needed", None)
        if asked is not None and asked.is_set():
            raise NeedsLogin(spec.name) from None
        raise _start_error(exc, spec, log, conn, startup_timeout) from None


async def _unless_login_needed(work: Awaitable[Any], spec: ConnectionSpec, auth: Any) -> Any:
    """Await `work`, or raise `NeedsLogin` as soon as the server's auth asks for a person.

    The SDK's transports log and swallow an error raised inside a request's auth flow, so the
    auth says it by an event (`login_needed`) instead.
    """
    asked: asyncio.Event | None = getattr(auth, "login_needed", None)
    if asked is None:
        return await work
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(asked.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise NeedsLogin(spec.name)
    finally:
        for pending in (task, waiter):
            if not pending.done():
                pending.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await pending


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside the exception groups anyio task groups wrap errors in."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _start_error(
    exc: BaseException,
    spec: ConnectionSpec,
    log: ServerLog,
    conn: Connection | None,
    timeout: float,
) -> StartError:
    exc = _leaf(exc)
    noise = conn.noise if conn is not None else []
    if isinstance(exc, StartError):
        return exc
    if isinstance(exc, TimeoutError):
        message = f"initialize timed out after {seconds(timeout)} s"
        return StartError(_with_context(message, log, noise))
    if isinstance(exc, MCPError):
        if exc.code == types.CONNECTION_CLOSED:
            if spec.transport == "stdio":
                code = conn.exit_code if conn is not None else None
                how = f" (exit code {code})" if code is not None else ""
                message = f"the server exited during start-up{how}"
            else:
                message = "the server closed the connection during start-up"
            return StartError(_with_context(message, log, noise, always=True))
        return StartError(f"initialize failed: {exc.message}")
    if isinstance(exc, httpx2.HTTPStatusError):
        return StartError(f"{spec.url} answered HTTP {exc.response.status_code}")
    if isinstance(exc, httpx2.HTTPError):
        return StartError(f"cannot connect to {spec.url}: {exc or type(exc).__name__}")
    if isinstance(exc, OSError) and spec.transport == "stdio":
        return StartError(_spawn_error(spec, exc))
    return StartError(f"start failed: {type(exc).__name__}: {exc}")


def _spawn_error(spec: ConnectionSpec, exc: OSError) -> str:
    command = spec.command or ""
    if isinstance(exc, FileNotFoundError):
        if spec.cwd and exc.filename == spec.cwd:
            return f"working directory not found: {spec.cwd}"
        return f"command not found: {command}"
    if isinstance(exc, PermissionError):
        return f"permission denied running {command}"
    return f"cannot run {command}: {exc.strerror or exc}"


def _with_context(message: str, log: ServerLog, noise: list[str], *, always: bool = False) -> str:
    """The message plus what the server said on the way down: usually the real cause."""
    if noise:
        message += f"; it wrote non-MCP output to stdout: {noise[-1]!r}"
    stderr = log.recent()
    if stderr:
        message += f"; last stderr: {stderr}"
    elif always:
        message += " (no stderr output)"
    return message


# ---- who is connected ---------------------------------------------------------------------


class RegistryListener(UpstreamListener, Protocol):
    def connection_up(self, conn: Connection) -> None: ...


class ConnectionRegistry:
    """The live connection of each running server, for the router.

    The supervisor adds a connection once it is initialized and removes it when it ends; the
    router (one listener) is told both ways and receives every server message that is not an
    answer to a request of Tooldeck's own.
    """

    def __init__(self) -> None:
        self.by_id: dict[str, Connection] = {}
        self._listener: RegistryListener | None = None

    def attach(self, listener: RegistryListener) -> Callable[[], None]:
        self._listener = listener
        for conn in self.by_id.values():
            conn.listener = listener
            listener.connection_up(conn)

        def detach() -> None:
            if self._listener is listener:
                self._listener = None
                for conn in self.by_id.values():
                    conn.listener = None

        return detach

    def add(self, server_id: str, conn: Connection) -> None:
        conn.server_id = server_id
        self.by_id[server_id] = conn
        if self._listener is not None and not conn.is_closed:
            conn.listener = self._listener
            self._listener.connection_up(conn)

    def remove(self, server_id: str, conn: Connection) -> None:
        if self.by_id.get(server_id) is conn:
            del self.by_id[server_id]

    def get(self, server_id: str) -> Connection | None:
        conn = self.by_id.get(server_id)
        return conn if conn is not None and not conn.is_closed else None


# ---- process groups ----------------------------------------------------------------------
# A stdio child leads its own process group, so its pid names the group: every process it
# started, even after it exited itself.


def signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member we may not signal is still a member
    return True


async def end_process_group(pgid: int, grace_s: float = 1.0) -> None:
    """End what is left of a process group: SIGTERM, then SIGKILL after `grace_s`."""
    if not group_alive(pgid):
        return
    signal_group(pgid, signal.SIGTERM)
    # Polled: a process group has no handle to wait on.
    for _ in range(int(grace_s / 0.02)):
        if not group_alive(pgid):
            return
        await asyncio.sleep(0.02)
    if group_alive(pgid):
        signal_group(pgid, signal.SIGKILL)
