"""The facade's tool calls: the one path every face uses, and the gateway's upstream reads."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.changes import Change
from app.core.errors import (
    CallFailed,
    Conflict,
    InvalidInput,
    NotFound,
    NotRunning,
    TooldeckError,
    Unavailable,
)
from app.core.schemas import CALL_SOURCES, CallSource, ServerToolResponse, ToolCallResult
from app.core.usage_record import Outcome, UsageRecord
from app.ops.base import Runtime
from app.ops.servers import ServerOperations
from app.runtime.calls import ArgumentChecker, content_dicts, error_text
from app.runtime.peers import FORWARDED_CLIENT_KEY
from storage.models import ServerTool, ToolServer

ROUTE_CACHE_SIZE = 10_000
# One cache of compiled input schemas for the process: compiling costs ~60x validating.
ARGUMENTS = ArgumentChecker()
logger = logging.getLogger(__name__)


class CallOperations(ServerOperations):
    """The one tool-call path, and what the gateway lists and forwards."""

    async def call_tool(
        self,
        server: str,
        tool: str,
        arguments: Any = None,
        *,
        source: CallSource,
        client_name: str | None = None,
        user: str | None = None,
        conversation_id: str | None = None,
    ) -> ToolCallResult:
        if source not in CALL_SOURCES:
            raise InvalidInput(f"use one of {', '.join(CALL_SOURCES)}", field="source")
        forwarded = await self._forwarded(server, tool, arguments, client_name or source, source)
        if forwarded is not None:
            return forwarded
        # The usage row of this call, filled in as the call goes; every outcome is recorded.
        usage = UsageRecord(
            server_id=None,
            tool_id=None,
            tool_name=tool,
            called_at=datetime.now(UTC),
            response_time_ms=None,
            success=False,
            error_message=None,
            source=source,
            client_name=client_name,
            user_id=user,
            conversation_id=conversation_id,
            arguments=arguments if isinstance(arguments, dict) else None,
        )
        try:
            result = await self._call_tool(usage, server, tool, arguments)
        except TooldeckError as exc:
            # Raised before the call was sent: disabled, unknown, bad arguments, not running,
            # too busy. Tooldeck refused it; the tool did not fail.
            self._record_call(usage, outcome="refused", error=str(exc))
            raise
        except Exception as exc:
            self._record_call(usage, outcome="error", error=f"{type(exc).__name__}: {exc}")
            raise
        except asyncio.CancelledError:
            # The caller gave up (the dashboard's esc, an MCP client's cancel) or a shutdown cut
            # it short: neither is the tool's failure.
            self._record_call(
                usage, outcome="cancelled", error="cancelled before a result came back"
            )
            raise
        if usage.outcome is None:
            usage.outcome = "error" if result.is_error else "ok"
        self._record_call(
            usage,
            outcome=usage.outcome,
            error=result.error_message,
            result={
                "content": result.content,
                "structured_content": result.structured_content,
                "is_error": result.is_error,
            },
        )
        return result

    async def _call_tool(
        self, usage: UsageRecord, server_ref: str, tool_ref: str, arguments: Any
    ) -> ToolCallResult:
        server, tool = await self._routed(server_ref, tool_ref)
        usage.server_id = server.id
        if not server.enabled:
            why = f" ({server.disabled_reason})" if server.disabled_reason else ""
            raise Conflict(f"server {server.name} is disabled{why}", field="server")
        if tool is None:
            # A server that never ran has no tool list yet: run it on demand, then look again.
            runtime = self._require_runtime()
            if runtime.is_running(server.id) or not server.auto_start:
                raise NotFound(f"no tool {tool_ref!r} on server {server.name!r}")
            await runtime.start(server.id, actor=f"{usage.source}:on-demand")
            async with self.db.read() as session:
                tool = await self._call_target(session, server, tool_ref)
            if tool is None:
                raise NotFound(f"no tool {tool_ref!r} on server {server.name!r}")
        usage.tool_id, usage.tool_name = tool.id, tool.name
        if not tool.enabled:
            raise Conflict(f"tool {tool.name} of {server.name} is disabled", field="tool")
        usage.arguments = arguments = ARGUMENTS.check(arguments, tool.input_schema)
        runtime = self._require_runtime()
        if not (runtime.is_running(server.id) and tool.is_available):
            if tool.bypass_when_unavailable:
                why = "its server is not running"
                if runtime.is_running(server.id):
                    why = "its server does not list it now"
                # Nothing was sent, so nothing was timed: the usage row says so (no duration),
                # and the answer at once is a refusal, not the tool's error.
                usage.outcome = "refused"
                return self._call_error(
                    usage, server.name, f"{tool.name} is unavailable: {why} (bypass)"
                )
            await self._start_for_call(runtime, server, tool, usage.source)
        began = time.monotonic()
        try:
            answer = await runtime.call_tool(
                server.id, tool.name, arguments, timeout_s=server.call_timeout_s
            )
        except CallFailed as exc:
            self._timed(usage, server.name, began)
            await self._tool_outcome(tool, failed=True, error=exc.message)
            return self._call_error(usage, server.name, exc.message)
        duration_ms = self._timed(usage, server.name, began)
        content = content_dicts(answer)
        is_error = bool(answer.is_error)
        await self._tool_outcome(
            tool, failed=is_error, error=error_text(content) if is_error else None
        )
        return ToolCallResult(
            server_id=server.id,
            server_name=server.name,
            tool_name=tool.name,
            content=content,
            structured_content=answer.structured_content,
            is_error=is_error,
            error_message=error_text(content) if is_error else None,
            duration_ms=duration_ms,
        )

    async def _forwarded(
        self, server_ref: str, tool_ref: str, arguments: Any, client_name: str, source: str
    ) -> ToolCallResult | None:
        """A call for a server another node runs, sent over this node's link to it, answered
        and metered there under the caller's name and face (so not here). None when this node
        runs the server or no other node does: the call takes the local path."""
        if self.peers is None or self.runtime is None:
            return None
        try:
            server, tool = await self._routed(server_ref, tool_ref)
        except TooldeckError:
            return None  # the local path refuses it, and records the refusal
        if not server.enabled or self.runtime.is_running(server.id):
            return None
        conn = await self.peers.connection(server.id)
        if conn is None:
            why = self.peers.why_unreachable(server.id)
            if why is not None:
                raise Unavailable(why)
            return None
        params = {
            "name": tool.name if tool is not None else tool_ref,
            "arguments": arguments if isinstance(arguments, dict) else {},
            "_meta": {
                FORWARDED_CLIENT_KEY: {"name": client_name, "version": None, "source": source}
            },
        }
        began = time.monotonic()
        try:
            async with asyncio.timeout(server.call_timeout_s):
                raw = await conn.request("tools/call", params)
            answer = types.CallToolResult.model_validate(raw)
        except TimeoutError:
            error = (
                f"{params['name']} timed out after {server.call_timeout_s:g} s "
                f"(its server runs on node {conn.peer_node})"
            )
            return self._forwarded_error(server, params["name"], error, began)
        except MCPError as exc:
            error = f"{params['name']} failed: {exc.message}"
            if exc.code == types.CONNECTION_CLOSED:
                error = f"the connection to {conn.where} closed"
            return self._forwarded_error(server, params["name"], error, began)
        content = content_dicts(answer)
        is_error = bool(answer.is_error)
        return ToolCallResult(
            server_id=server.id,
            server_name=server.name,
            tool_name=str(params["name"]),
            content=content,
            structured_content=answer.structured_content,
            is_error=is_error,
            error_message=error_text(content) if is_error else None,
            duration_ms=(time.monotonic() - began) * 1000,
        )

    @staticmethod
    def _forwarded_error(
        server: ToolServer, tool_name: object, error: str, began: float
    ) -> ToolCallResult:
        return ToolCallResult(
            server_id=server.id,
            server_name=server.name,
            tool_name=str(tool_name),
            content=[{"type": "text", "text": error}],
            structured_content=None,
            is_error=True,
            error_message=error,
            duration_ms=(time.monotonic() - began) * 1000,
        )

    async def _routed(self, server_ref: str, tool_ref: str) -> tuple[ToolServer, ServerTool | None]:
        """The server and tool rows a call needs, from memory when nothing changed since.

        Every call of an agent passes here: a database round trip per call cost several
        milliseconds. The rows are detached snapshots; every change to a server's or a tool's
        intent or availability is published on the change bus, which empties this cache.
        """
        key = (server_ref, tool_ref)
        cached = self._routes.get(key)
        if cached is not None:
            return cached
        async with self.db.read() as session:
            server = await self._server(session, server_ref)
            tool = await self._call_target(session, server, tool_ref)
        if tool is not None:  # a missing tool may appear at the next discovery: ask again
            if len(self._routes) >= ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[key] = (server, tool)
        return server, tool

    def _forget_routes(self, change: Change, server_id: str | None) -> None:
        if change in (Change.SERVERS, Change.TOOLS):
            self._routes.clear()

    @staticmethod
    async def _call_target(
        session: AsyncSession, server: ToolServer, tool_ref: str
    ) -> ServerTool | None:
        query = select(ServerTool).where(
            ServerTool.server_id == server.id,
            or_(ServerTool.name == tool_ref, ServerTool.id == tool_ref),
        )
        return (await session.execute(query)).scalars().first()

    async def _start_for_call(
        self, runtime: Runtime, server: ToolServer, tool: ServerTool, source: str | None
    ) -> None:
        """Start the server of an unavailable tool on demand, or say why the call cannot go."""
        if runtime.is_running(server.id):
            raise NotRunning(f"{server.name} does not list {tool.name} now")
        if not server.auto_start:
            raise NotRunning(
                f"{server.name} is not running and does not start on demand (auto-start is off)"
            )
        await runtime.start(server.id, actor=f"{source}:on-demand")
        async with self.db.read() as session:
            fresh = await session.get(ServerTool, tool.id)
            if fresh is None or not fresh.is_available:
                raise NotRunning(f"{server.name} started but does not list {tool.name}")

    def _timed(self, usage: UsageRecord, server_name: str, began: float) -> float:
        """The call's duration since `began`, kept in its usage row and the latency counters."""
        usage.response_time_ms = duration_ms = round((time.monotonic() - began) * 1000, 3)
        self.call_latency.observe(server_name, usage.tool_name, duration_ms)
        return duration_ms

    @staticmethod
    def _call_error(usage: UsageRecord, server_name: str, message: str) -> ToolCallResult:
        return ToolCallResult(
            server_id=usage.server_id,
            server_name=server_name,
            tool_name=usage.tool_name,
            content=[{"type": "text", "text": message}],
            is_error=True,
            error_message=message,
            duration_ms=usage.response_time_ms or 0.0,
        )

    def _record_call(
        self,
        usage: UsageRecord,
        *,
        outcome: Outcome,
        error: str | None,
        result: dict[str, Any] | None = None,
    ) -> None:
        if self.recorder is None:
            return
        usage.outcome, usage.success = outcome, outcome == "ok"
        usage.error_message, usage.result = error, result
        try:
            self.recorder.record(usage)
        except Exception:
            # Metering must never turn an answered call into a failed one.
            logger.exception("recording the usage of %s failed", usage.tool_name)

    # ---- gateway: what the aggregated MCP endpoint lists and forwards --------------------

    async def list_gateway_tools(self) -> list[ServerToolResponse]:
        """Every tool an MCP client of the gateway may call: enabled tools of enabled servers,
        leaving out an unavailable tool with bypass on (it could only answer with an error)."""
        query = (
            select(ServerTool, ToolServer.name)
            .join(ToolServer, ToolServer.id == ServerTool.server_id)
            .where(ToolServer.enabled.is_(True), ServerTool.enabled.is_(True))
            .where(
                or_(
                    ServerTool.is_available.is_(True), ServerTool.bypass_when_unavailable.is_(False)
                )
            )
            .order_by(ToolServer.name, ServerTool.name)
        )
        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
        return [self._tool_response(tool, server_name) for tool, server_name in rows]

    async def list_resources(self, server_ref: str) -> list[types.Resource]:
        return await self._upstream(
            server_ref,
            lambda session: _every_page(session, "resources", session.list_resources),
            "listing resources",
        )

    async def read_resource(self, server_ref: str, uri: str) -> types.ReadResourceResult:
        return await self._upstream(
            server_ref, lambda session: session.read_resource(uri), f"reading {uri}"
        )

    async def list_prompts(self, server_ref: str) -> list[types.Prompt]:
        return await self._upstream(
            server_ref,
            lambda session: _every_page(session, "prompts", session.list_prompts),
            "listing prompts",
        )

    async def get_prompt(
        self, server_ref: str, name: str, arguments: dict[str, str]
    ) -> types.GetPromptResult:
        return await self._upstream(
            server_ref,
            lambda session: session.get_prompt(name, arguments),
            f"getting prompt {name}",
        )

    async def _upstream(
        self, server_ref: str, request: Callable[[Any], Awaitable[Any]], what: str
    ) -> Any:
        server = await self.get_server(server_ref)
        runtime = self._require_runtime()
        return await runtime.upstream(
            server.id, request, what=what, timeout_s=server.call_timeout_s
        )


async def _every_page(
    session: Any, capability: str, list_page: Callable[..., Awaitable[Any]]
) -> list[Any]:
    """Every item of a paginated MCP listing (`resources`, `prompts`), or none when the server
    does not offer that capability."""
    capabilities = getattr(session, "server_capabilities", None)
    if getattr(capabilities, capability, None) is None:
        return []
    items: list[Any] = []
    cursor: str | None = None
    while True:
        page = await list_page(params=types.PaginatedRequestParams(cursor=cursor))
        items.extend(getattr(page, capability))
        cursor = page.next_cursor
        if not cursor:
            return items
