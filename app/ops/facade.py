"""The operations facade: every user-visible action is one method here.

The TUI, the CLI, the HTTP API and the gateway all call these methods (directly, or through
`app/remote.py` when attached to a daemon), so each behaviour is written and tested once.
Mutating operations take an `actor` ("cli:alice", "api:token", "system") and write an event
naming it. Secrets (env and header values) are masked in every answer unless `reveal=True`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar, get_args

import mcp_types as types
from pydantic import BaseModel, ValidationError
from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import interchange
from app.core.changes import Change, ChangeBus
from app.core.errors import (
    CallFailed,
    Conflict,
    InvalidInput,
    NotFound,
    NotRunning,
    TooldeckError,
    invalid_from_pydantic,
)
from app.core.schemas import (
    CONFLICT_POLICIES,
    EXPORT_FORMATS,
    MASK,
    SERVER_STATUSES,
    BulkOperationItem,
    BulkOperationResult,
    BulkToolServerOperation,
    CallSource,
    ConflictPolicy,
    ExportFormat,
    ImportItem,
    ImportReport,
    JobStatus,
    ProbeReport,
    ServerEventResponse,
    ServerHealth,
    ServerRuntimeInfo,
    ServerToolResponse,
    ToolCallResult,
    ToolMetrics,
    ToolServerAnalytics,
    ToolServerCreate,
    ToolServerMetrics,
    ToolServerResponse,
    ToolServerUpdate,
    UsageTimeSeries,
)
from app.core.settings import Settings
from app.governance.audit import change_details, created_details, deleted_details, snapshot
from app.ops.alerts import AlertOperations
from app.runtime.call_latency import CallLatency
from app.runtime.calls import ArgumentChecker, CallTrace, content_dicts, error_text
from storage.analytics import (
    DEFAULT_BUCKETS,
    DEFAULT_PERIOD,
    MAX_BUCKETS,
    UnknownPeriod,
    UsageAnalytics,
    Window,
    make_window,
)
from storage.db import Database
from storage.events import EventKind
from storage.models import ServerEvent, ServerTool, ToolServer
from storage.queries import add_event, find_server, tool_counts

BULK_CONCURRENCY = 8
ROUTE_CACHE_SIZE = 10_000
logger = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)


class Runtime(Protocol):
    """What the facade needs from the supervisor. Without one, runtime operations refuse."""

    async def start(self, server_id: str, *, actor: str) -> None: ...
    async def stop(self, server_id: str, *, actor: str) -> None: ...
    async def restart(self, server_id: str, *, actor: str) -> None: ...
    async def refresh_tools(self, server_id: str, *, actor: str) -> int: ...
    async def intent_changed(self, server_id: str) -> None: ...
    async def forget(self, server_id: str) -> None: ...
    async def check_health(self, server_id: str) -> ServerHealth: ...
    async def runtime_info(self, server_id: str) -> ServerRuntimeInfo: ...
    async def log_tail(self, server_id: str, lines: int = 100) -> list[str]: ...
    def is_running(self, server_id: str) -> bool: ...
    async def call_tool(
        self, server_id: str, tool_name: str, arguments: dict[str, Any], *, timeout_s: float
    ) -> Any: ...
    async def upstream(
        self,
        server_id: str,
        request: Callable[[Any], Awaitable[Any]],
        *,
        what: str,
        timeout_s: float,
    ) -> Any: ...


class JobRunner(Protocol):
    """What the facade needs from the scheduler."""

    def status(self) -> list[JobStatus]: ...
    async def run_now(self, name: str) -> JobStatus: ...


class UsageSink(Protocol):
    """The usage recorder (app.runtime.usage.UsageRecorder): takes a record without waiting."""

    def record(self, record: Any) -> None: ...


CALL_SOURCES: tuple[str, ...] = get_args(CallSource)
# One cache of compiled input schemas for the process: compiling costs ~60x validating.
ARGUMENTS = ArgumentChecker()


def mask_secrets(values: dict[str, str]) -> dict[str, str]:
    return {key: MASK for key in values}


def keep_masked(new: dict[str, str], old: dict[str, str]) -> dict[str, str]:
    """A masked value sent back (by an edit form or a PUT of a GET) means "unchanged"."""
    return {key: old.get(key, "") if value == MASK else value for key, value in new.items()}


def server_response(
    row: ToolServer, counts: tuple[int, int] = (0, 0), *, reveal: bool = False
) -> ToolServerResponse:
    response = ToolServerResponse.model_validate(row)
    response.tools_count, response.enabled_tools_count = counts
    if not reveal:
        response.env = mask_secrets(response.env)
        response.headers = mask_secrets(response.headers)
    return response


def _validated(model: type[ModelT], data: Any) -> ModelT:
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None


class Operations(AlertOperations):
    """The facade over storage and (when present) the runtime."""

    # Wired by app.ops.bootstrap.running_core; absent in a process that runs no servers.
    scheduler: JobRunner | None = None
    recorder: UsageSink | None = None

    def __init__(
        self,
        db: Database,
        settings: Settings,
        runtime: Runtime | None = None,
        *,
        recorder: UsageSink | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.runtime = runtime
        self.recorder = recorder
        # Who wants to know that servers or tools changed: the gateway, the dashboard.
        self.changes = ChangeBus()
        self._routes: dict[tuple[str, str], tuple[ToolServer, ServerTool]] = {}
        # Durations of this process's calls per tool, for Prometheus histograms.
        self.call_latency = CallLatency()
        self.changes.subscribe(self._forget_routes)

    # ---- servers: create, read, update, delete ------------------------------------------

    async def create_server(
        self, data: ToolServerCreate | dict[str, Any], *, actor: str, is_builtin: bool = False
    ) -> ToolServerResponse:
        spec = _validated(ToolServerCreate, data)
        async with self.db.session() as session:
            if await find_server(session, spec.name) is not None:
                raise Conflict(f"a server named {spec.name!r} already exists", field="name")
            row = ToolServer(**spec.model_dump(), is_builtin=is_builtin, created_by=actor)
            session.add(row)
            try:
                await session.flush()
            except IntegrityError:
                raise Conflict(
                    f"a server named {spec.name!r} already exists", field="name"
                ) from None
            details = created_details(spec.model_dump(mode="json"))
            add_event(session, row.id, EventKind.CREATED, f"created {spec.name}", actor, details)
            response = server_response(row)
        await self._intent_changed(response.id)
        return response

    async def get_server(self, ref: str, *, reveal: bool = False) -> ToolServerResponse:
        async with self.db.read() as session:
            row = await self._server(session, ref)
            counts = (await tool_counts(session)).get(row.id, (0, 0))
            return server_response(row, counts, reveal=reveal)

    async def list_servers(
        self,
        *,
        status: str | None = None,
        enabled: bool | None = None,
        text: str | None = None,
        reveal: bool = False,
    ) -> list[ToolServerResponse]:
        if status is not None and status not in SERVER_STATUSES:
            raise InvalidInput(f"use one of {', '.join(SERVER_STATUSES)}", field="status")
        query: Select[tuple[ToolServer]] = select(ToolServer).order_by(ToolServer.name)
        if status is not None:
            query = query.where(ToolServer.status == status)
        if enabled is not None:
            query = query.where(ToolServer.enabled == enabled)
        if text:
            pattern = f"%{text.lower()}%"
            query = query.where(
                or_(
                    ToolServer.name.ilike(pattern),
                    ToolServer.display_name.ilike(pattern),
                    ToolServer.description.ilike(pattern),
                )
            )
        async with self.db.read() as session:
            rows = (await session.execute(query)).scalars().all()
            counts = await tool_counts(session)
            return [server_response(row, counts.get(row.id, (0, 0)), reveal=reveal) for row in rows]

    async def update_server(
        self, ref: str, data: ToolServerUpdate | dict[str, Any], *, actor: str
    ) -> ToolServerResponse:
        changes = _validated(ToolServerUpdate, data).model_dump(exclude_unset=True)
        async with self.db.session() as session:
            row = await self._server(session, ref)
            current = ToolServerCreate.model_construct(
                **{field: getattr(row, field) for field in ToolServerCreate.model_fields}
            ).model_dump()
            if "env" in changes and changes["env"] is not None:
                changes["env"] = keep_masked(changes["env"], row.env or {})
            if "headers" in changes and changes["headers"] is not None:
                changes["headers"] = keep_masked(changes["headers"], row.headers or {})
            # Validate the server as it will be, so a change cannot leave it unusable.
            merged = _validated(ToolServerCreate, {**current, **_drop_none(changes)})
            changed = [
                field
                for field, value in merged.model_dump().items()
                if field != "name" and getattr(row, field) != value
            ]
            before = snapshot(row, changed)
            for field in changed:
                setattr(row, field, getattr(merged, field))
            if "enabled" in changed and row.enabled:
                row.disabled_reason = None
                row.consecutive_failures = 0
            if changed:
                details = change_details(before, snapshot(row, changed), changed)
                message = f"changed {', '.join(changed)}"
                add_event(session, row.id, EventKind.UPDATED, message, actor, details)
            await session.flush()
            counts = (await tool_counts(session)).get(row.id, (0, 0))
            response = server_response(row, counts)
        if changed:
            await self._intent_changed(response.id)
        return response

    async def delete_server(self, ref: str, *, actor: str) -> None:
        async with self.db.session() as session:
            row = await self._server(session, ref)
            if row.is_builtin:
                raise Conflict(f"{row.name} is a built-in server: it can be disabled, not deleted")
            server_id, name = row.id, row.name
            details = deleted_details(snapshot(row, ToolServerCreate.model_fields))
        if self.runtime is not None:
            await self.runtime.forget(server_id)
        async with self.db.session() as session:
            row = await self._server(session, server_id)
            await session.delete(row)
            add_event(session, server_id, EventKind.DELETED, f"deleted {name}", actor, details)
        self.changes.publish(Change.SERVERS, server_id)

    async def set_server_enabled(
        self, ref: str, enabled: bool, *, actor: str, reason: str | None = None
    ) -> ToolServerResponse:
        async with self.db.session() as session:
            row = await self._server(session, ref)
            changed = row.enabled != enabled
            before = snapshot(row, ("enabled", "disabled_reason"))
            row.enabled = enabled
            if enabled:
                row.disabled_reason = None
                row.consecutive_failures = 0
            elif reason:
                row.disabled_reason = reason
            if changed:
                kind = EventKind.ENABLED if enabled else EventKind.DISABLED
                verb = "enabled" if enabled else "disabled"
                details = change_details(before, snapshot(row, ("enabled", "disabled_reason")))
                add_event(session, row.id, kind, f"{verb} {row.name}", actor, details)
            counts = (await tool_counts(session)).get(row.id, (0, 0))
            response = server_response(row, counts)
        if changed:
            await self._intent_changed(response.id)
        return response

    async def enable_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self.set_server_enabled(ref, True, actor=actor)

    async def disable_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self.set_server_enabled(ref, False, actor=actor)

    # ---- tools -------------------------------------------------------------------------

    async def list_tools(self, server_ref: str) -> list[ServerToolResponse]:
        async with self.db.read() as session:
            server = await self._server(session, server_ref)
            rows = await session.execute(
                select(ServerTool)
                .where(ServerTool.server_id == server.id)
                .order_by(ServerTool.name)
            )
            return [self._tool_response(tool, server.name) for tool in rows.scalars()]

    async def get_tool(self, ref: str, server_ref: str | None = None) -> ServerToolResponse:
        async with self.db.read() as session:
            tool = await self._tool(session, ref, server_ref)
            server = await session.get(ToolServer, tool.server_id)
            return self._tool_response(tool, server.name if server else None)

    async def set_tool_enabled(
        self, ref: str, enabled: bool, *, actor: str, server_ref: str | None = None
    ) -> ServerToolResponse:
        kind = EventKind.TOOL_ENABLED if enabled else EventKind.TOOL_DISABLED
        verb = "enabled" if enabled else "disabled"
        return await self._set_tool_flag(ref, server_ref, "enabled", enabled, kind, verb, actor)

    async def set_tool_bypass(
        self, ref: str, bypass: bool, *, actor: str, server_ref: str | None = None
    ) -> ServerToolResponse:
        verb = "bypass on for" if bypass else "bypass off for"
        return await self._set_tool_flag(
            ref, server_ref, "bypass_when_unavailable", bypass, EventKind.TOOL_BYPASS, verb, actor
        )

    async def _set_tool_flag(
        self,
        ref: str,
        server_ref: str | None,
        field: str,
        value: bool,
        kind: EventKind,
        verb: str,
        actor: str,
    ) -> ServerToolResponse:
        async with self.db.session() as session:
            tool = await self._tool(session, ref, server_ref)
            server = await session.get(ToolServer, tool.server_id)
            server_name = server.name if server else None
            if getattr(tool, field) != value:
                details = {
                    "tool": tool.name,
                    "before": {field: getattr(tool, field)},
                    "after": {field: value},
                }
                if field == "enabled" and value and tool.disabled_reason:
                    # A person re-enabling a tool the system disabled clears the system's reason.
                    details["before"]["disabled_reason"] = tool.disabled_reason
                    details["after"]["disabled_reason"] = None
                    tool.disabled_reason = None
                setattr(tool, field, value)
                message = f"{verb} tool {tool.name}"
                add_event(session, tool.server_id, kind, message, actor, details)
            await session.flush()
            response = self._tool_response(tool, server_name)
        await self._intent_changed(response.server_id)
        return response

    # ---- events ------------------------------------------------------------------------

    async def list_events(
        self, server_ref: str | None = None, *, kind: str | None = None, limit: int = 100
    ) -> list[ServerEventResponse]:
        if not 1 <= limit <= 10_000:
            raise InvalidInput("use a number from 1 to 10000", field="limit")
        query = select(ServerEvent, ToolServer.name).outerjoin(
            ToolServer, ToolServer.id == ServerEvent.server_id
        )
        async with self.db.read() as session:
            if server_ref is not None:
                server = await self._server(session, server_ref)
                query = query.where(ServerEvent.server_id == server.id)
            if kind is not None:
                query = query.where(ServerEvent.kind == kind)
            query = query.order_by(ServerEvent.created_at.desc(), ServerEvent.id.desc()).limit(
                limit
            )
            rows = (await session.execute(query)).all()
        events = []
        for event, server_name in rows:
            response = ServerEventResponse.model_validate(event)
            response.server_name = server_name
            events.append(response)
        return events

    # ---- runtime operations (need the supervisor) ----------------------------------------

    async def start_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self._run_on_runtime(ref, actor, "start")

    async def stop_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self._run_on_runtime(ref, actor, "stop")

    async def restart_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self._run_on_runtime(ref, actor, "restart")

    async def refresh_tools(self, ref: str, *, actor: str) -> ToolServerResponse:
        return await self._run_on_runtime(ref, actor, "refresh_tools")

    async def _run_on_runtime(self, ref: str, actor: str, verb: str) -> ToolServerResponse:
        server = await self.get_server(ref)
        runtime = self._require_runtime()
        method: Callable[..., Awaitable[Any]] = getattr(runtime, verb)
        await method(server.id, actor=actor)
        return await self.get_server(server.id)

    def _require_runtime(self) -> Runtime:
        if self.runtime is None:
            raise NotRunning(
                "no supervisor is running: start `tooldeck --headless` or the dashboard"
            )
        return self.runtime

    async def check_health(self, ref: str) -> ServerHealth:
        """Probe a server now (ping, or a tool listing where ping is missing)."""
        server = await self.get_server(ref)
        return await self._require_runtime().check_health(server.id)

    async def runtime_info(self, ref: str) -> ServerRuntimeInfo:
        """Its process (pid, RSS, CPU), uptime, last probe latency and next retry."""
        server = await self.get_server(ref)
        return await self._require_runtime().runtime_info(server.id)

    async def log_tail(self, ref: str, lines: int = 100) -> list[str]:
        """The last lines of a server's stderr: live from the supervisor, else its log file."""
        if not 1 <= lines <= 10_000:
            raise InvalidInput("use a number from 1 to 10000", field="lines")
        server = await self.get_server(ref)
        if self.runtime is not None:
            return await self.runtime.log_tail(server.id, lines)
        from app.runtime.serverlog import log_path, read_log_tail

        path = log_path(self.settings, server.name)
        return await asyncio.to_thread(read_log_tail, path, lines)

    async def scheduler_jobs(self) -> list[JobStatus]:
        return self._require_scheduler().status()

    async def run_job(self, name: str) -> JobStatus:
        """Run a scheduler job now and wait for it (joining a run already in progress)."""
        return await self._require_scheduler().run_now(name)

    def _require_scheduler(self) -> JobRunner:
        if self.scheduler is None:
            raise NotRunning(
                "no scheduler is running: start `tooldeck --headless` or the dashboard"
            )
        return self.scheduler

    async def probe(self, target: str | ToolServerCreate | dict[str, Any]) -> ProbeReport:
        """Start or connect once, initialize, list tools, ping, stop; nothing is stored.

        `target` is a server's name or id, or a definition not saved yet (an edit form's).
        """
        source: Any
        if isinstance(target, str):
            async with self.db.session() as session:
                source = await self._server(session, target)
        else:
            source = _validated(ToolServerCreate, target)
            async with self.db.session() as session:
                saved = await find_server(session, source.name)
            if saved is not None:
                # A form filled from a masked GET sends the masks back: use the stored secrets.
                source.env = keep_masked(source.env, saved.env or {})
                source.headers = keep_masked(source.headers, saved.headers or {})
        from app.runtime.probe import probe

        return await probe(
            source,
            startup_timeout=source.startup_timeout_s,
            call_timeout=self.settings.health_check_timeout_s,
        )

    # ---- tool calls: the one path every face uses -----------------------------------------

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
        """Call a tool: check intent, validate, route (starting the server on demand), time it,
        and record the usage of every outcome, refusals included.

        Refusals raise (NotFound, Conflict for a disabled server or tool, InvalidInput for bad
        arguments, NotRunning); a call that reached no result (a timeout, a broken connection)
        and a bypassed one return an error result.
        """
        if source not in CALL_SOURCES:
            raise InvalidInput(f"use one of {', '.join(CALL_SOURCES)}", field="source")
        trace = CallTrace(
            tool_name=tool,
            source=source,
            client_name=client_name,
            user=user,
            conversation_id=conversation_id,
            arguments=arguments,
        )
        try:
            result = await self._call_tool(trace, server, tool, arguments)
        except TooldeckError as exc:
            self._record_call(trace, success=False, error=str(exc))
            raise
        except Exception as exc:
            self._record_call(trace, success=False, error=f"{type(exc).__name__}: {exc}")
            raise
        except asyncio.CancelledError:
            # Shutdown or a client gone: the call still happened and is metered as failed.
            self._record_call(trace, success=False, error="cancelled before a result came back")
            raise
        self._record_call(
            trace,
            success=not result.is_error,
            error=result.error_message,
            result={
                "content": result.content,
                "structured_content": result.structured_content,
                "is_error": result.is_error,
            },
        )
        return result

    async def _call_tool(
        self, trace: CallTrace, server_ref: str, tool_ref: str, arguments: Any
    ) -> ToolCallResult:
        server, tool = await self._routed(server_ref, tool_ref)
        trace.server_id, trace.server_name = server.id, server.name
        if not server.enabled:
            why = f" ({server.disabled_reason})" if server.disabled_reason else ""
            raise Conflict(f"server {server.name} is disabled{why}", field="server")
        if tool is None:
            # A server that never ran has no tool list yet: run it on demand, then look again.
            runtime = self._require_runtime()
            if runtime.is_running(server.id) or not server.auto_start:
                raise NotFound(f"no tool {tool_ref!r} on server {server.name!r}")
            await runtime.start(server.id, actor=f"{trace.source}:on-demand")
            async with self.db.session() as session:
                tool = await self._call_target(session, server, tool_ref)
            if tool is None:
                raise NotFound(f"no tool {tool_ref!r} on server {server.name!r}")
        trace.tool_id, trace.tool_name = tool.id, tool.name
        if not tool.enabled:
            raise Conflict(f"tool {tool.name} of {server.name} is disabled", field="tool")
        trace.arguments = arguments = ARGUMENTS.check(arguments, tool.input_schema)
        runtime = self._require_runtime()
        if not (runtime.is_running(server.id) and tool.is_available):
            if tool.bypass_when_unavailable:
                why = "its server is not running"
                if runtime.is_running(server.id):
                    why = "its server does not list it now"
                # Nothing was sent, so nothing was timed: the usage row says so (no duration).
                return self._call_error(trace, f"{tool.name} is unavailable: {why} (bypass)")
            await self._start_for_call(runtime, server, tool, trace.source)
        began = time.monotonic()
        try:
            answer = await runtime.call_tool(
                server.id, tool.name, arguments, timeout_s=server.call_timeout_s
            )
        except CallFailed as exc:
            trace.duration_ms = round((time.monotonic() - began) * 1000, 3)
            await self._tool_outcome(tool, failed=True, error=exc.message)
            return self._call_error(trace, exc.message)
        trace.duration_ms = round((time.monotonic() - began) * 1000, 3)
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
            duration_ms=trace.duration_ms,
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
        self, runtime: Runtime, server: ToolServer, tool: ServerTool, source: str
    ) -> None:
        """Start the server of an unavailable tool on demand, or say why the call cannot go."""
        if runtime.is_running(server.id):
            raise NotRunning(f"{server.name} does not list {tool.name} now")
        if not server.auto_start:
            raise NotRunning(
                f"{server.name} is not running and does not start on demand (auto-start is off)"
            )
        await runtime.start(server.id, actor=f"{source}:on-demand")
        async with self.db.session() as session:
            fresh = await session.get(ServerTool, tool.id)
            if fresh is None or not fresh.is_available:
                raise NotRunning(f"{server.name} started but does not list {tool.name}")

    @staticmethod
    def _call_error(trace: CallTrace, message: str) -> ToolCallResult:
        return ToolCallResult(
            server_id=trace.server_id,
            server_name=trace.server_name or "",
            tool_name=trace.tool_name,
            content=[{"type": "text", "text": message}],
            is_error=True,
            error_message=message,
            duration_ms=trace.duration_ms or 0.0,
        )

    def _record_call(
        self,
        trace: CallTrace,
        *,
        success: bool,
        error: str | None,
        result: dict[str, Any] | None = None,
    ) -> None:
        if trace.duration_ms is not None:
            self.call_latency.observe(trace.server_name, trace.tool_name, trace.duration_ms)
        if self.recorder is None:
            return
        try:
            self.recorder.record(trace.usage_record(success=success, error=error, result=result))
        except Exception:
            # Metering must never turn an answered call into a failed one.
            logger.exception("recording the usage of %s failed", trace.tool_name)

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

    # ---- bulk --------------------------------------------------------------------------

    async def bulk(
        self, data: BulkToolServerOperation | dict[str, Any], *, actor: str
    ) -> BulkOperationResult:
        request = _validated(BulkToolServerOperation, data)
        actions: dict[str, Callable[[str], Awaitable[Any]]] = {
            "start": lambda ref: self.start_server(ref, actor=actor),
            "stop": lambda ref: self.stop_server(ref, actor=actor),
            "restart": lambda ref: self.restart_server(ref, actor=actor),
            "enable": lambda ref: self.enable_server(ref, actor=actor),
            "disable": lambda ref: self.disable_server(ref, actor=actor),
            "delete": lambda ref: self.delete_server(ref, actor=actor),
            "refresh": lambda ref: self.refresh_tools(ref, actor=actor),
        }
        action = actions[request.operation]
        limit = asyncio.Semaphore(BULK_CONCURRENCY)

        async def one(ref: str) -> BulkOperationItem:
            async with limit:
                try:
                    await action(ref)
                except (Conflict, InvalidInput, NotFound, NotRunning) as exc:
                    return BulkOperationItem(server_id=ref, success=False, message=str(exc))
                except Exception as exc:  # one server's failure must not sink the others
                    return BulkOperationItem(
                        server_id=ref, success=False, message=f"{type(exc).__name__}: {exc}"
                    )
            return BulkOperationItem(server_id=ref, success=True, message=f"{request.operation} ok")

        unique_refs = list(dict.fromkeys(request.server_ids))
        results = await asyncio.gather(*(one(ref) for ref in unique_refs))
        failed = [item for item in results if not item.success]
        return BulkOperationResult(
            total_requested=len(unique_refs),
            successful=len(results) - len(failed),
            failed=len(failed),
            results=list(results),
            errors=[f"{item.server_id}: {item.message}" for item in failed],
        )

    # ---- built-in servers --------------------------------------------------------------

    async def seed_builtin_servers(self) -> list[str]:
        """Create the configured built-in servers that do not exist yet; returns their names."""
        if not self.settings.mcp_enabled:
            return []
        created = []
        for name in self.settings.mcp_servers:
            spec, reason = builtin_server_spec(name, self.settings)
            async with self.db.session() as session:
                existing = await find_server(session, name)
                if existing is not None:
                    if existing.is_builtin and name == "calculator":
                        # The interpreter path is this installation's: follow it if it moved.
                        existing.command = spec.command
                    continue
            await self.create_server(spec, actor="system", is_builtin=True)
            if reason:
                await self.set_server_enabled(name, False, actor="system", reason=reason)
            created.append(name)
        return created

    # ---- analytics ---------------------------------------------------------------------
    # A window is a period (1h, 24h, 7d, 30d, 90d) up to now, or an explicit start and end.
    # Calls still queued in this process's recorder are written first, so an answer counts
    # every call made before it was asked.

    async def server_metrics(
        self,
        ref: str,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ToolServerMetrics:
        window = self._analytics_window(period, start, end)
        server = await self.get_server(ref)
        await self._flush_usage()
        metrics = await self._analytics().server_metrics(server.id, window)
        return ToolServerMetrics.model_validate(metrics)

    async def tool_metrics(
        self,
        tool_ref: str,
        server_ref: str | None = None,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ToolMetrics:
        window = self._analytics_window(period, start, end)
        tool = await self.get_tool(tool_ref, server_ref)
        await self._flush_usage()
        return ToolMetrics.model_validate(await self._analytics().tool_metrics(tool.id, window))

    async def analytics(
        self,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ToolServerAnalytics:
        window = self._analytics_window(period, start, end)
        await self._flush_usage()
        return ToolServerAnalytics.model_validate(await self._analytics().system(window))

    async def time_series(
        self,
        server_ref: str | None = None,
        period: str = DEFAULT_PERIOD,
        start: datetime | None = None,
        end: datetime | None = None,
        buckets: int = DEFAULT_BUCKETS,
    ) -> UsageTimeSeries:
        window = self._analytics_window(period, start, end)
        if not 1 <= buckets <= MAX_BUCKETS:
            raise InvalidInput(f"use a number from 1 to {MAX_BUCKETS}", field="buckets")
        server_id = (await self.get_server(server_ref)).id if server_ref is not None else None
        await self._flush_usage()
        series = await self._analytics().time_series(server_id, window, buckets)
        return UsageTimeSeries.model_validate(series)

    def _analytics(self) -> UsageAnalytics:
        return UsageAnalytics(
            self.db,
            raw_retention_days=self.settings.tool_server_usage_retention_days,
            failing_error_rate=self.settings.failing_tool_error_rate,
            failing_min_calls=self.settings.failing_tool_min_calls,
        )

    @staticmethod
    def _analytics_window(
        period: str | None, start: datetime | None, end: datetime | None
    ) -> Window:
        try:
            return make_window(period, start, end, now=datetime.now(UTC))
        except UnknownPeriod as exc:
            raise InvalidInput(str(exc), field="period") from None
        except ValueError as exc:
            raise InvalidInput(str(exc), field="start") from None

    async def _flush_usage(self) -> None:
        flush = getattr(self.recorder, "flush", None)
        if flush is None:
            return
        try:
            await flush()
        except Exception:
            # What is committed is still worth answering with; the recorder retries the rest.
            logger.warning("could not write queued usage before answering", exc_info=True)

    # ---- lookups -----------------------------------------------------------------------

    async def _server(self, session: AsyncSession, ref: str) -> ToolServer:
        row = await find_server(session, ref)
        if row is None:
            raise NotFound(f"no server {ref!r}")
        return row

    async def _tool(self, session: AsyncSession, ref: str, server_ref: str | None) -> ServerTool:
        if server_ref is not None:
            server = await self._server(session, server_ref)
            query = select(ServerTool).where(
                ServerTool.server_id == server.id,
                or_(ServerTool.name == ref, ServerTool.id == ref),
            )
        else:
            query = select(ServerTool).where(ServerTool.id == ref)
        tool = (await session.execute(query)).scalars().first()
        if tool is None:
            where = f" on server {server_ref!r}" if server_ref else ""
            raise NotFound(f"no tool {ref!r}{where}")
        return tool

    @staticmethod
    def _tool_response(tool: ServerTool, server_name: str | None) -> ServerToolResponse:
        response = ServerToolResponse.model_validate(tool)
        response.server_name = server_name
        return response

    async def _intent_changed(self, server_id: str) -> None:
        self.changes.publish(Change.SERVERS, server_id)
        if self.runtime is not None:
            await self.runtime.intent_changed(server_id)

    # ---- import and export -------------------------------------------------------------
    # An import never replaces a built-in: built-ins belong to this installation (seeded from
    # MCP_SERVERS; the calculator's command follows this interpreter). Under "overwrite" a
    # built-in's entry is skipped with that reason, visibly; "rename" imports it beside.

    async def import_servers(
        self,
        document: Any,
        *,
        dry_run: bool = False,
        on_conflict: ConflictPolicy = "skip",
        actor: str,
    ) -> ImportReport:
        """Add the servers of an MCP client configuration: all of them, or none on an error."""
        if on_conflict not in CONFLICT_POLICIES:
            raise InvalidInput(f"use one of {', '.join(CONFLICT_POLICIES)}", field="on_conflict")
        parsed = interchange.parse_document(document)
        # Every entry is validated before the database is touched: a bad one stops the import.
        specs = [
            self._import_spec(entry, {"name": entry.name, **entry.fields})
            for entry in parsed.entries
        ]
        names = [entry.name for entry in parsed.entries]
        async with self.db.session() as session:
            rows = await session.execute(select(ToolServer).where(ToolServer.name.in_(names)))
            existing = {row.name: row for row in rows.scalars()}
            # A renamed entry must not take a name that exists or that a later entry brings.
            taken = set((await session.execute(select(ToolServer.name))).scalars()) | set(names)
            items = [
                await self._import_one(
                    session,
                    entry,
                    spec,
                    existing.get(entry.name),
                    on_conflict=on_conflict,
                    taken=taken,
                    actor=actor,
                    write=not dry_run,
                )
                for entry, spec in zip(parsed.entries, specs, strict=True)
            ]
        if not dry_run:
            for item in items:
                if item.server_id and item.action in ("create", "rename", "overwrite"):
                    await self._intent_changed(item.server_id)
        actions = [item.action for item in items]
        return ImportReport(
            dry_run=dry_run,
            on_conflict=on_conflict,
            sections=parsed.sections,
            items=items,
            created=actions.count("create") + actions.count("rename"),
            overwritten=actions.count("overwrite"),
            unchanged=actions.count("unchanged"),
            skipped=actions.count("skip"),
        )

    async def export_servers(
        self,
        names: Sequence[str] | None = None,
        *,
        format: ExportFormat = "claude",
        include_secrets: bool = False,
    ) -> dict[str, Any]:
        """The named servers (all when none are named) as a client configuration document."""
        if format not in EXPORT_FORMATS:
            raise InvalidInput(f"use one of {', '.join(EXPORT_FORMATS)}", field="format")
        if names:
            servers = [
                await self.get_server(ref, reveal=include_secrets) for ref in dict.fromkeys(names)
            ]
        else:
            servers = await self.list_servers(reveal=include_secrets)
        return interchange.export_document(servers, format)

    @staticmethod
    def _import_spec(entry: interchange.ImportEntry, data: dict[str, Any]) -> ToolServerCreate:
        try:
            return _validated(ToolServerCreate, data)
        except InvalidInput as exc:
            # Name the entry and the key as the document spells it, not our field names.
            key = "type" if exc.field == "transport" else exc.field
            field = f"{entry.path}.{key}" if key else entry.path
            raise InvalidInput(exc.message, field=field) from None

    async def _import_one(
        self,
        session: AsyncSession,
        entry: interchange.ImportEntry,
        spec: ToolServerCreate,
        row: ToolServer | None,
        *,
        on_conflict: ConflictPolicy,
        taken: set[str],
        actor: str,
        write: bool,
    ) -> ImportItem:
        item = ImportItem(
            source_name=entry.source_name,
            name=entry.name,
            action="create",
            transport=spec.transport,
            warnings=list(entry.warnings),
        )
        if row is not None and (
            on_conflict == "skip" or (row.is_builtin and on_conflict == "overwrite")
        ):
            item.action, item.server_id = "skip", row.id
            kind = "a built-in server" if row.is_builtin else "a server"
            item.reason = f"{kind} with this name exists"
            if on_conflict == "overwrite":
                item.reason = "a built-in server: an import never replaces it"
            return item
        if row is not None and on_conflict == "overwrite":
            return self._import_overwrite(session, entry, spec, row, item, actor=actor, write=write)
        if row is not None:
            item.action, item.reason = "rename", f"{entry.name} exists"
            item.name = interchange.unique_name(entry.name, taken)
            taken.add(item.name)
        values = spec.model_dump() | {"name": item.name}
        for field in ("env", "headers"):
            values[field] = self._import_masked(
                values[field], {}, f"{entry.path}.{field}", item.warnings
            )
        if not write:
            return item
        created = ToolServer(**values, is_builtin=False, created_by=actor)
        session.add(created)
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict(
                f"a server named {item.name!r} appeared during the import: nothing was imported",
                field=entry.path,
            ) from None
        message = f"created {item.name} (imported"
        message += f" from {entry.source_name!r})" if entry.source_name != item.name else ")"
        add_event(session, created.id, EventKind.CREATED, message, actor, created_details(values))
        item.server_id = created.id
        return item

    def _import_overwrite(
        self,
        session: AsyncSession,
        entry: interchange.ImportEntry,
        spec: ToolServerCreate,
        row: ToolServer,
        item: ImportItem,
        *,
        actor: str,
        write: bool,
    ) -> ImportItem:
        # The document replaces what it can express; Tooldeck's own settings (display name,
        # timeouts, max failures, ...) stay as they are.
        replacing = spec.model_dump(include=set(interchange.DEFINITION_FIELDS))
        if "enabled" in entry.fields:
            replacing["enabled"] = spec.enabled
        for field in ("env", "headers"):
            replacing[field] = self._import_masked(
                replacing[field], getattr(row, field) or {}, f"{entry.path}.{field}", item.warnings
            )
        current = {field: getattr(row, field) for field in ToolServerCreate.model_fields}
        merged = self._import_spec(entry, {**current, **replacing})
        changed = [
            field
            for field, value in merged.model_dump().items()
            if field != "name" and getattr(row, field) != value
        ]
        item.server_id = row.id
        if not changed:
            item.action = "unchanged"
            return item
        item.action, item.reason = "overwrite", f"differs in {', '.join(changed)}"
        if write:
            before = snapshot(row, changed)
            for field in changed:
                setattr(row, field, getattr(merged, field))
            if "enabled" in changed and row.enabled:
                row.disabled_reason = None
                row.consecutive_failures = 0
            message = f"changed {', '.join(changed)} (imported from {entry.source_name!r})"
            details = change_details(before, snapshot(row, changed), changed)
            add_event(session, row.id, EventKind.UPDATED, message, actor, details)
        return item

    @staticmethod
    def _import_masked(
        values: dict[str, str], old: dict[str, str], path: str, warnings: list[str]
    ) -> dict[str, str]:
        """An imported masked value keeps the server's current one; without one it is left out."""
        # A document exported without secrets says "********": importing that literally would run
        # the server with a wrong key, so it is dropped and named instead.
        dropped = [key for key, value in values.items() if value == MASK and key not in old]
        if dropped:
            warnings.append(
                f"{path}: {', '.join(dropped)} masked in the document: left out, set after import"
            )
        return keep_masked({key: value for key, value in values.items() if key not in dropped}, old)


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


def _drop_none(changes: dict[str, Any]) -> dict[str, Any]:
    # Optional text fields may be cleared with None; collections and flags may not.
    clearable = {"display_name", "description", "command", "cwd", "url"}
    return {key: value for key, value in changes.items() if value is not None or key in clearable}


def builtin_server_spec(name: str, settings: Settings) -> tuple[ToolServerCreate, str | None]:
    """The built-in server `name` and, when it cannot run here, why it is seeded disabled."""
    if name == "calculator":
        return (
            ToolServerCreate(
                name="calculator",
                display_name="Calculator",
                description="Arithmetic and a safe expression evaluator (built in)",
                command=sys.executable,
                args=["-m", "app.builtin.calculator"],
            ),
            None,
        )
    if name == "filesystem":
        files = Path(settings.data_dir) / "files"
        files.mkdir(parents=True, exist_ok=True)
        return (
            ToolServerCreate(
                name="filesystem",
                display_name="Filesystem",
                description=f"Read and write files under {files}",
                command="npx",
                args=["-y", "@modelcontextprotocol/server-filesystem", str(files)],
            ),
            None,
        )
    if name == "browser":
        key = os.environ.get("BRAVE_API_KEY", "")
        return (
            ToolServerCreate(
                name="browser",
                display_name="Brave Search",
                description="Web search through the Brave Search API",
                command="npx",
                args=["-y", "@modelcontextprotocol/server-brave-search"],
                env={"BRAVE_API_KEY": key} if key else {},
            ),
            None if key else "BRAVE_API_KEY is not set: add it to this server's env to enable it",
        )
    raise InvalidInput(f"unknown built-in server {name!r}", field="MCP_SERVERS")
