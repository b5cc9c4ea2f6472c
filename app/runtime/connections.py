"""One MCP connection per server: stdio, streamable HTTP or SSE, yielding an initialized session.

A stdio child's stderr goes through a pipe we read ourselves, so it can be both kept in memory
(the last lines, for the dashboard) and appended to a size-capped, rotated log file. Start-up
failures become `StartError`s whose message says what a person can do about them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TextIO

import anyio
import httpx2
import mcp_types as types
import psutil
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from app.runtime.process_registry import INSTANCE_ENV, ProcessRegistry
from app.runtime.serverlog import LogWriter, ServerLog, read_log_tail
from app.runtime.spawn_guard import check_command

__all__ = [
    "Connection",
    "ConnectionSpec",
    "LogWriter",
    "ServerLog",
    "StartError",
    "end_process_group",
    "open_connection",
    "read_log_tail",
    "seconds",
]

logger = logging.getLogger(__name__)

CLIENT_INFO = types.Implementation(name="tooldeck", version="0.1.0")
MAX_TOOL_PAGES = 100
# How long an exited child's last stderr may take to arrive after its stdout closed.
STDERR_DRAIN_S = 1.0
HTTP_READ_TIMEOUT_S = 300.0
FIND_CHILD_ATTEMPTS = 50
FIND_CHILD_PAUSE_S = 0.01


class StartError(Exception):
    """A server could not be started or connected; the message is for a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def seconds(value: float) -> str:
    """30.0 -> "30", 0.25 -> "0.25": timeouts read as a person typed them."""
    return f"{value:g}"


class _StderrProtocol(asyncio.Protocol):
    def __init__(self, log: ServerLog, done: asyncio.Event) -> None:
        self._log = log
        self._done = done

    def data_received(self, data: bytes) -> None:
        self._log.feed(data)

    def eof_received(self) -> bool | None:
        self._log.finish()
        self._done.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._log.finish()
        self._done.set()


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


# ---- the connection -------------------------------------------------------------------------


@dataclass(eq=False)
class Connection:
    """An initialized session and what is known about the other end."""

    spec: ConnectionSpec
    session: ClientSession
    init: types.InitializeResult
    pid: int | None
    started: float
    connect_ms: float
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def protocol_version(self) -> str:
        return self.init.protocol_version

    @property
    def server_name(self) -> str:
        return self.init.server_info.name

    @property
    def server_version(self) -> str:
        return self.init.server_info.version

    async def ping(self, within_s: float) -> None:
        """A liveness probe; servers without `ping` are asked for their first page of tools."""
        async with asyncio.timeout(within_s):
            try:
                await self.session.send_ping()
            except MCPError as exc:
                if exc.code != types.METHOD_NOT_FOUND:
                    raise
                await self.session.list_tools()

    async def list_tools(self, within_s: float) -> list[types.Tool]:
        """Every page of the listing, within `within_s` seconds in all."""
        tools: list[types.Tool] = []
        cursor: str | None = None
        seen: set[str] = set()
        async with asyncio.timeout(within_s):
            for _page in range(MAX_TOOL_PAGES):
                params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
                result = await self.session.list_tools(params=params)
                tools.extend(result.tools)
                cursor = result.next_cursor
                # A server repeating a cursor would page forever.
                if not cursor or cursor in seen:
                    break
                seen.add(cursor)
        return tools


class _WatchedReadStream:
    """The transport's read stream, telling us when the other end went away."""

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _describe_noise(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        with suppress(Exception):
            found = errors()
            if found and isinstance(found[0].get("input"), str):
                return found[0]["input"][:200]
    return str(exc).splitlines()[0][:200]


def _spawn_error(spec: ConnectionSpec, exc: OSError) -> str:
    command = spec.command or ""
    if isinstance(exc, FileNotFoundError):
        if spec.cwd and exc.filename == spec.cwd:
            return f"working directory not found: {spec.cwd}"
        return f"command not found: {command}"
    if isinstance(exc, PermissionError):
        return f"permission denied running {command}"
    return f"cannot run {command}: {exc.strerror or exc}"


def _find_child(marker: str) -> psutil.Process | None:
    """Our child whose environment carries `marker` (blocking: /proc reads; call off-loop).

    Looked for a few times: a child in the middle of an exec (the spawn guard becoming the
    server) briefly has no environment to read."""
    for _attempt in range(FIND_CHILD_ATTEMPTS):
        for child in psutil.Process().children(recursive=False):
            with suppress(psutil.Error):
                if child.environ().get(INSTANCE_ENV) == marker:
                    return child
        time.sleep(FIND_CHILD_PAUSE_S)
    return None


def _watch_exit(pid: int, on_exit: Callable[[], None]) -> Callable[[], None]:
    """Call `on_exit` when the process ends; returns what stops watching.

    Its stdout closing says so too, but not while a child it started still holds that pipe
    open: a crashed server with a helper process would go unnoticed until a health check.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or already gone: stdout will tell
        return lambda: None
    loop = asyncio.get_running_loop()

    def exited() -> None:
        loop.remove_reader(pidfd)
        on_exit()

    loop.add_reader(pidfd, exited)

    def stop() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)

    return stop


async def _drain(done: asyncio.Event | None) -> None:
    if done is not None:
        with suppress(TimeoutError):
            async with asyncio.timeout(STDERR_DRAIN_S):
                await done.wait()


@asynccontextmanager
async def _stderr_pipe(log: ServerLog) -> AsyncIterator[tuple[TextIO, asyncio.Event]]:
    """A pipe whose write end becomes the child's stderr; we read the other end as it comes."""
    read_fd, write_fd = os.pipe()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    writer = os.fdopen(write_fd, "w")
    transport: asyncio.BaseTransport | None = None
    try:
        transport, _protocol = await loop.connect_read_pipe(
            lambda: _StderrProtocol(log, done), reader
        )
        yield writer, done
    finally:
        with suppress(OSError):
            writer.close()
        if transport is not None:
            # Give a child that just died the moment its last lines need to arrive.
            await _drain(done)
            transport.close()
        else:
            reader.close()


@asynccontextmanager
async def open_connection(
    spec: ConnectionSpec,
    *,
    startup_timeout: float,
    log: ServerLog | None = None,
    on_tools_changed: Callable[[], None] | None = None,
    on_closed: Callable[[], None] | None = None,
    launcher: list[str] | None = None,
    processes: ProcessRegistry | None = None,
) -> AsyncIterator[Connection]:
    """Start or connect, `initialize` within `startup_timeout`, and yield the connection.

    `launcher` (app.runtime.spawn_guard) runs before a stdio command and execs it: same pid,
    same group. `processes` records the child's process group while it runs.

    Leaving the context closes the session and, for stdio, ends the child (stdin closed, then
    SIGTERM, then SIGKILL to its process group, as the SDK does) and reaps it.
    """
    log = log if log is not None else ServerLog()
    closed = asyncio.Event()
    noise: list[str] = []

    def ended() -> None:
        if not closed.is_set():
            closed.set()
            if on_closed is not None:
                on_closed()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            # A server printing to stdout corrupts the protocol stream; say so in its log.
            line = _describe_noise(message)
            noise.append(line)
            del noise[:-3]
            log.note(f"not MCP on stdout: {line}")
        elif isinstance(message, types.ToolListChangedNotification):
            if on_tools_changed is not None:
                on_tools_changed()

    started = time.monotonic()
    deadline = asyncio.get_running_loop().time() + startup_timeout
    stderr_done: asyncio.Event | None = None
    ready = False
    try:
        async with AsyncExitStack() as stack:
            pid: int | None = None
            if spec.transport == "stdio":
                if not spec.command:
                    raise StartError("a stdio server needs a command")
                # The child learns nothing from the marker but lets us find its pid (the SDK does
                # not expose it) and tell its processes from strangers (process_registry).
                marker = uuid.uuid4().hex
                if launcher:
                    # The guard would start and then only say so as its own exit.
                    unable = check_command(spec.command, dict(spec.env), spec.cwd)
                    if unable is not None:
                        raise StartError(unable)
                errlog, stderr_done = await stack.enter_async_context(_stderr_pipe(log))
                group: list[int] = []
                # Runs after the SDK has closed the child and before the stderr pipe drains:
                # whatever the child left in its group would otherwise hold the pipe open.
                stack.push_async_callback(_end_groups, group, processes)
                argv = [*(launcher or []), spec.command, *spec.args]
                params = StdioServerParameters(
                    command=argv[0],
                    args=argv[1:],
                    env={**dict(spec.env), INSTANCE_ENV: marker},
                    cwd=spec.cwd,
                )
                log.note(f"starting {spec.command} {' '.join(spec.args)}".rstrip())
                read, write = await stack.enter_async_context(stdio_client(params, errlog))
                # The child holds its own copy now; ours would keep the pipe open forever.
                errlog.close()
                child = await asyncio.to_thread(_find_child, marker)
                pid = child.pid if child is not None else None
                group.extend([pid] if pid is not None else [])
                if processes is not None and pid is not None:
                    await asyncio.to_thread(processes.record, pid, spec.name, marker)
                if pid is not None:
                    stack.callback(_watch_exit(pid, ended))
            elif spec.transport in ("streamable_http", "sse"):
                if not spec.url:
                    raise StartError(f"a {spec.transport} server needs a url")
                log.note(f"connecting to {spec.url}")
                async with asyncio.timeout_at(deadline):
                    read, write = await stack.enter_async_context(_http_transport(spec))
            else:
                raise StartError(f"unknown transport {spec.transport!r}")

            try:
                session = await stack.enter_async_context(
                    ClientSession(
                        _WatchedReadStream(read, ended),  # type: ignore[arg-type]
                        write,
                        message_handler=on_message,
                        client_info=CLIENT_INFO,
                    )
                )
                async with asyncio.timeout_at(deadline):
                    init = await session.initialize()
            except BaseException:
                # A server that never finished starting has nothing to close gracefully: spare
                # the SDK's grace period after closing its stdin.
                if pid is not None:
                    signal_group(pid, signal.SIGTERM)
                raise
            connection = Connection(
                spec=spec,
                session=session,
                init=init,
                pid=pid,
                started=time.monotonic(),
                connect_ms=(time.monotonic() - started) * 1000,
                closed=closed,
            )
            log.note(
                f"connected: {init.server_info.name} {init.server_info.version}, "
                f"protocol {init.protocol_version}" + (f", pid {pid}" if pid else "")
            )
            ready = True
            yield connection
    except Exception as exc:
        if ready:
            raise
        await _drain(stderr_done)
        raise _start_error(exc, spec, log, noise, startup_timeout) from None


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside the exception groups anyio task groups wrap errors in."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _start_error(
    exc: BaseException, spec: ConnectionSpec, log: ServerLog, noise: list[str], timeout: float
) -> StartError:
    exc = _leaf(exc)
    if isinstance(exc, StartError):
        return exc
    if isinstance(exc, TimeoutError):
        message = f"initialize timed out after {seconds(timeout)} s"
        return StartError(_with_context(message, log, noise))
    if isinstance(exc, MCPError):
        if exc.code == types.CONNECTION_CLOSED:
            what = "exited" if spec.transport == "stdio" else "closed the connection"
            message = f"the server {what} during start-up"
            return StartError(_with_context(message, log, noise, always=True))
        return StartError(f"initialize failed: {exc.message}")
    if isinstance(exc, httpx2.HTTPStatusError):
        return StartError(f"{spec.url} answered HTTP {exc.response.status_code}")
    if isinstance(exc, httpx2.HTTPError):
        return StartError(f"cannot connect to {spec.url}: {exc or type(exc).__name__}")
    if isinstance(exc, OSError) and spec.transport == "stdio":
        return StartError(_spawn_error(spec, exc))
    return StartError(f"start failed: {type(exc).__name__}: {exc}")


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


@asynccontextmanager
async def _http_transport(spec: ConnectionSpec) -> AsyncIterator[tuple[Any, Any]]:
    headers = dict(spec.headers) or None
    url = spec.url or ""
    if spec.transport == "sse":
        async with sse_client(
            url, headers=headers, sse_read_timeout=HTTP_READ_TIMEOUT_S
        ) as streams:
            yield streams
        return
    timeout = httpx2.Timeout(30.0, read=HTTP_READ_TIMEOUT_S)
    async with (
        create_mcp_http_client(headers=headers, timeout=timeout) as client,
        streamable_http_client(url, http_client=client) as streams,
    ):
        yield streams


# ---- process groups ----------------------------------------------------------------------
# A stdio child leads its own process group (the SDK starts it in a new session), so its pid
# names the group: every process it started, even after it exited itself.


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


async def _end_groups(pgids: list[int], processes: ProcessRegistry | None) -> None:
    for pgid in pgids:
        await end_process_group(pgid)
        if processes is not None:
            processes.forget(pgid)  # ended: SIGKILL, if it came to that, cannot be ignored


async def end_process_group(pgid: int, grace_s: float = 1.0) -> None:
    """End what is left of a process group: SIGTERM, then SIGKILL after `grace_s`.

    The SDK signals the group only when the leader outlives its closed stdin; a grandchild of a
    leader that exited on its own would otherwise be orphaned.
    """
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
