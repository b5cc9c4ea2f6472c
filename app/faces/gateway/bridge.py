"""`tooldeck gateway --stdio` while a daemon runs: a stdio MCP server that forwards every
request to the daemon's `/mcp`, and the daemon's change notices back to the client.

Clients such as Claude Desktop launch their servers as stdio commands; the bridge lets them use
the daemon's gateway (one supervisor, one meter) without speaking HTTP. It connects to the daemon
after the client's `initialize`, under the client's own name, so usage is attributed to it.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

import httpx2
import mcp_types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.stdio import stdio_server

from app import __version__
from app.core.stdin_lines import cancellable_stdin

log = logging.getLogger(__name__)


class GatewayBridge:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        self._upstream: ClientSession | None = None
        self._connecting = asyncio.Lock()
        self._client_session: Any = None
        self._stack = AsyncExitStack()
        self.server: Server[Any] = Server(
            "tooldeck",
            version=__version__,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_read_resource=self._read_resource,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
        )

    async def _session(self, ctx: Any) -> ClientSession:
        self._client_session = ctx.session
        async with self._connecting:
            if self._upstream is None:
                headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
                http = await self._stack.enter_async_context(
                    httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=None))
                )
                read, write = await self._stack.enter_async_context(
                    streamable_http_client(self.url, http_client=http)
                )
                session = await self._stack.enter_async_context(
                    ClientSession(
                        read,
                        write,
                        message_handler=self._from_daemon,
                        client_info=_client_info(ctx),
                    )
                )
                await session.initialize()
                self._upstream = session
            return self._upstream

    async def _from_daemon(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification) and self._client_session:
            try:
                await self._client_session.send_tool_list_changed()
            except Exception:
                log.info("could not pass list_changed on to the client")

    async def _list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        return await (await self._session(ctx)).list_tools(params=params)

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> Any:
        upstream = await self._session(ctx)
        # Forward as a raw request: ClientSession.call_tool would re-list tools and re-check
        # structured output, which the gateway behind us has already done.
        return await upstream.send_request(
            types.CallToolRequest(params=params), types.CallToolResult
        )

    async def _list_resources(self, ctx: Any, params: Any) -> types.ListResourcesResult:
        return await (await self._session(ctx)).list_resources(params=params)

    async def _read_resource(self, ctx: Any, params: Any) -> types.ReadResourceResult:
        return await (await self._session(ctx)).read_resource(params.uri)

    async def _list_prompts(self, ctx: Any, params: Any) -> types.ListPromptsResult:
        return await (await self._session(ctx)).list_prompts(params=params)

    async def _get_prompt(self, ctx: Any, params: Any) -> types.GetPromptResult:
        return await (await self._session(ctx)).get_prompt(params.name, params.arguments)

    async def run_stdio(self) -> None:
        try:
            # Stdin read so that a stop signal ends the bridge even while its client is silent.
            async with cancellable_stdin() as stdin, stdio_server(stdin=stdin) as (read, write):  # type: ignore[arg-type]
                options = self.server.create_initialization_options(
                    NotificationOptions(tools_changed=True)
                )
                await self.server.run(read, write, options)
        finally:
            await self._stack.aclose()


def _client_info(ctx: Any) -> types.Implementation:
    params = getattr(ctx.session, "client_params", None)
    info = getattr(params, "client_info", None)
    if info is not None:
        return info
    return types.Implementation(name="tooldeck-gateway-bridge", version=__version__)
