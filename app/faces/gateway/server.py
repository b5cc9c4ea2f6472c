"""The MCP gateway: one MCP server that exposes the tools, resources and prompts of every
enabled server, namespaced `<server>__<name>`, and routes each call through the facade's one call
path (so intent, bypass, on-demand start, timeouts and usage metering apply to agents too).

It is served over streamable HTTP at `/mcp` on the daemon and over stdio by
`tooldeck gateway --stdio`. When the set of tools changes (discovery, a server going up or down,
a person switching a tool or server) connected clients get `notifications/tools/list_changed`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import mcp_types as types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.shared.exceptions import MCPError

from app import __version__
from app.core.changes import Change
from app.core.errors import InvalidInput, NotFound, TooldeckError
from app.core.schemas import ServerToolResponse
from app.ops.protocol import Operations

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 128  # the protocol's limit on tool and prompt names
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
RESOURCE_SCHEME = "tooldeck"
DEFAULT_PAGE_SIZE = 100
# Changes come in bursts (a server start discovers tools, then reports running): notify once.
NOTIFY_DEBOUNCE_S = 0.1
INSTRUCTIONS = (
    "Tooldeck gateway: tools of several MCP servers, named <server>{sep}<tool>. "
    "Each call is routed to its server and metered."
)


@dataclass(frozen=True)
class Route:
    server_id: str
    server_name: str
    name: str  # the name on the upstream server


def public_name(server: str, name: str, separator: str, taken: set[str]) -> str:
    """`<server><sep><name>` within the protocol's characters and length, unique in `taken`."""
    readable = NAME_UNSAFE.sub("_", f"{server}{separator}{name}")
    candidate = readable
    attempt = 0
    while len(candidate) > MAX_NAME_LENGTH or candidate in taken:
        # Too long, or two names sanitised alike: a short hash of the original keeps it unique.
        digest = hashlib.sha1(f"{server}\0{name}\0{attempt}".encode()).hexdigest()[:8]
        candidate = f"{readable[: MAX_NAME_LENGTH - 9]}-{digest}"
        attempt += 1
    return candidate


def resource_uri(server: str, uri: str) -> str:
    """A resource URI that names its server, so two servers' `file:///a` do not collide."""
    return f"{RESOURCE_SCHEME}://{server}/{quote(uri, safe='')}"


def split_resource_uri(uri: str) -> tuple[str, str] | None:
    prefix = f"{RESOURCE_SCHEME}://"
    if not uri.startswith(prefix):
        return None
    server, _, encoded = uri.removeprefix(prefix).partition("/")
    return (server, unquote(encoded)) if server and encoded else None


def _as_mcp_error(exc: TooldeckError) -> MCPError:
    code = (
        types.INVALID_PARAMS if isinstance(exc, InvalidInput | NotFound) else types.INTERNAL_ERROR
    )
    return MCPError(code, str(exc))


def _tool(route_name: str, row: ServerToolResponse) -> types.Tool:
    return types.Tool(
        name=route_name,
        title=row.display_name,
        description=row.description,
        input_schema=row.input_schema or {"type": "object"},
        output_schema=row.output_schema,
        annotations=types.ToolAnnotations.model_validate(row.annotations)
        if row.annotations
        else None,
    )


class Gateway:
    def __init__(
        self,
        ops: Operations,
        *,
        separator: str = "__",
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        self.ops = ops
        self.separator = separator
        self.page_size = page_size
        self._catalog: tuple[list[types.Tool], dict[str, Route]] | None = None
        self._catalog_lock = asyncio.Lock()
        self._signature: str | None = None
        # The client connections that have talked to us, to reach them with list_changed.
        # Weak: a connection that closes leaves the set by itself.
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._notify_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.server: Server[Any] = Server(
            "tooldeck",
            version=__version__,
            instructions=INSTRUCTIONS.format(sep=separator),
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_read_resource=self._read_resource,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
        )
        self._unsubscribe = ops.changes.subscribe(self._on_change)

    def initialization_options(self) -> Any:
        return self.server.create_initialization_options(NotificationOptions(tools_changed=True))

    def close(self) -> None:
        self._unsubscribe()
        for task in self._tasks:
            task.cancel()

    # ---- catalog -----------------------------------------------------------------------

    async def catalog(self) -> tuple[list[types.Tool], dict[str, Route]]:
        async with self._catalog_lock:
            if self._catalog is None:
                self._catalog = await self._build_catalog()
            return self._catalog

    async def _build_catalog(self) -> tuple[list[types.Tool], dict[str, Route]]:
        rows = await self.ops.list_gateway_tools()
        tools: list[types.Tool] = []
        routes: dict[str, Route] = {}
        for row in rows:
            server_name = row.server_name or row.server_id
            name = public_name(server_name, row.name, self.separator, set(routes))
            routes[name] = Route(row.server_id, server_name, row.name)
            tools.append(_tool(name, row))
        return tools, routes

    @staticmethod
    def _signature_of(tools: list[types.Tool]) -> str:
        listing = "\n".join(tool.model_dump_json() for tool in tools)
        return hashlib.sha1(listing.encode()).hexdigest()

    # ---- change notices ----------------------------------------------------------------

    def _remember(self, ctx: Any) -> None:
        # The SDK hands handlers a per-request session; notifications outside a request go
        # through its connection, which lives as long as the client. The SDK has no public
        # accessor for it; tests/test_gateway.py fails if this attribute goes away.
        connection = getattr(getattr(ctx, "session", None), "_connection", None)
        if connection is not None:
            self._connections.add(connection)

    def _on_change(self, change: Change, server_id: str | None) -> None:
        self._catalog = None
        if self._notify_task is None or self._notify_task.done():
            with suppress(RuntimeError):  # no running loop: nobody to notify
                self._notify_task = self._spawn(self._notify_if_changed())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _notify_if_changed(self) -> None:
        await asyncio.sleep(NOTIFY_DEBOUNCE_S)
        try:
            tools, _ = await self.catalog()
        except Exception:
            log.exception("rebuilding the gateway's tool list failed")
            return
        signature = self._signature_of(tools)
        if signature == self._signature:
            return
        self._signature = signature
        for connection in list(self._connections):
            try:
                async with asyncio.timeout(2):
                    await connection.send_tool_list_changed()
            except Exception:
                # The client went away; forget it rather than fail the others.
                self._connections.discard(connection)

    # ---- tools -------------------------------------------------------------------------

    async def _list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        self._remember(ctx)
        tools, _ = await self.catalog()
        self._signature = self._signature_of(tools)
        start = _cursor_offset(params)
        page = tools[start : start + self.page_size]
        following = start + self.page_size
        return types.ListToolsResult(
            tools=page, next_cursor=str(following) if following < len(tools) else None
        )

    async def _call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        self._remember(ctx)
        _, routes = await self.catalog()
        route = routes.get(params.name)
        if route is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")
        try:
            result = await self.ops.call_tool(
                route.server_id,
                route.name,
                params.arguments or {},
                source="gateway",
                client_name=_client_name(ctx),
            )
        except InvalidInput as exc:
            # Bad arguments are the model's to fix: answer as a tool error it can read.
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=str(exc))], is_error=True
            )
        except TooldeckError as exc:
            raise _as_mcp_error(exc) from None
        return types.CallToolResult.model_validate(
            {
                "content": result.content
                or (
                    [{"type": "text", "text": result.error_message}] if result.error_message else []
                ),
                "structuredContent": result.structured_content,
                "isError": result.is_error,
            }
        )

    # ---- resources and prompts ---------------------------------------------------------

    async def _each_running(
        self, fetch: Callable[[str], Coroutine[Any, Any, list[Any]]]
    ) -> list[tuple[str, Any]]:
        """(server name, item) for every running server; one that fails is skipped."""
        servers = [s for s in await self.ops.list_servers(enabled=True) if s.status == "running"]

        async def one(name: str) -> list[tuple[str, Any]]:
            try:
                return [(name, item) for item in await fetch(name)]
            except Exception as exc:
                log.info("listing %s through the gateway failed: %s", name, exc)
                return []

        batches = await asyncio.gather(*(one(server.name) for server in servers))
        return [pair for batch in batches for pair in batch]

    async def _list_resources(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        self._remember(ctx)
        pairs = await self._each_running(self.ops.list_resources)
        resources = [
            resource.model_copy(
                update={
                    "uri": resource_uri(server, str(resource.uri)),
                    "name": f"{server}{self.separator}{resource.name}",
                }
            )
            for server, resource in pairs
        ]
        return types.ListResourcesResult(resources=resources)

    async def _read_resource(
        self, ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        self._remember(ctx)
        target = split_resource_uri(str(params.uri))
        if target is None:
            raise MCPError(
                types.INVALID_PARAMS, f"{params.uri} is not a {RESOURCE_SCHEME}:// resource URI"
            )
        server, uri = target
        try:
            result = await self.ops.read_resource(server, uri)
        except TooldeckError as exc:
            raise _as_mcp_error(exc) from None
        contents = [item.model_copy(update={"uri": params.uri}) for item in result.contents]
        return types.ReadResourceResult(contents=contents)

    async def _list_prompts(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        self._remember(ctx)
        pairs = await self._each_running(self.ops.list_prompts)
        taken: set[str] = set()
        prompts = []
        for server, prompt in pairs:
            name = public_name(server, prompt.name, self.separator, taken)
            taken.add(name)
            prompts.append(prompt.model_copy(update={"name": name}))
        return types.ListPromptsResult(prompts=prompts)

    async def _get_prompt(
        self, ctx: Any, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        self._remember(ctx)
        server, sep, name = params.name.partition(self.separator)
        if not sep:
            raise MCPError(types.INVALID_PARAMS, f"unknown prompt {params.name!r}")
        try:
            return await self.ops.get_prompt(server, name, params.arguments or {})
        except TooldeckError as exc:
            raise _as_mcp_error(exc) from None

    # ---- transports --------------------------------------------------------------------

    async def run_stdio(self) -> None:
        from mcp.server.stdio import stdio_server

        from app.core.stdin_lines import cancellable_stdin

        # Stdin read so that a stop signal ends the gateway even while its client is silent.
        async with cancellable_stdin() as stdin, stdio_server(stdin=stdin) as (read, write):  # type: ignore[arg-type]
            await self.server.run(read, write, self.initialization_options())

    def http_app(self, *, host: str = "127.0.0.1") -> Any:
        """The streamable-HTTP ASGI app (served at `/mcp` of its own routes), with the SDK's
        DNS-rebinding protection on for loopback hosts. Run `http_lifespan()` around it."""
        return self.server.streamable_http_app(streamable_http_path="/mcp", host=host)

    @asynccontextmanager
    async def http_lifespan(self) -> AsyncIterator[None]:
        async with self.server.session_manager.run():
            yield


def _cursor_offset(params: types.PaginatedRequestParams | None) -> int:
    cursor = params.cursor if params is not None else None
    if not cursor:
        return 0
    if not cursor.isdigit():
        raise MCPError(types.INVALID_PARAMS, f"bad cursor {cursor!r}")
    return int(cursor)


def _client_name(ctx: Any) -> str | None:
    params = getattr(getattr(ctx, "session", None), "client_params", None)
    info = getattr(params, "client_info", None)
    return getattr(info, "name", None)
