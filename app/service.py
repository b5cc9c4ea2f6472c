"""The operations facade: every user-visible action is one method here.

The TUI, the CLI, the HTTP API and the gateway all call these methods (directly, or through
`app/remote.py` when attached to a daemon), so each behaviour is written and tested once.
Mutating operations take an `actor` ("cli:alice", "api:token", "system") and write an event
naming it. Secrets (env and header values) are masked in every answer unless `reveal=True`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.changes import Change, ChangeBus
from app.config import Settings
from app.errors import Conflict, InvalidInput, NotFound, NotRunning, invalid_from_pydantic
from app.schemas import (
    MASK,
    SERVER_STATUSES,
    BulkOperationItem,
    BulkOperationResult,
    BulkToolServerOperation,
    ServerEventResponse,
    ServerToolResponse,
    ToolServerCreate,
    ToolServerResponse,
    ToolServerUpdate,
)
from storage.db import Database
from storage.events import EventKind
from storage.models import ServerEvent, ServerTool, ToolServer
from storage.queries import add_event, find_server, tool_counts

BULK_CONCURRENCY = 8
ModelT = TypeVar("ModelT", bound=BaseModel)


class Runtime(Protocol):
    """What the facade needs from the supervisor. Without one, runtime operations refuse."""

    async def start(self, server_id: str, *, actor: str) -> None: ...
    async def stop(self, server_id: str, *, actor: str) -> None: ...
    async def restart(self, server_id: str, *, actor: str) -> None: ...
    async def refresh_tools(self, server_id: str, *, actor: str) -> int: ...
    async def intent_changed(self, server_id: str) -> None: ...
    async def forget(self, server_id: str) -> None: ...


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


class Operations:
    """The facade over storage and (when present) the runtime."""

    def __init__(self, db: Database, settings: Settings, runtime: Runtime | None = None) -> None:
        self.db = db
        self.settings = settings
        self.runtime = runtime
        # Who wants to know that servers or tools changed: the gateway, the dashboard.
        self.changes = ChangeBus()

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
            add_event(session, row.id, EventKind.CREATED, f"created {spec.name}", actor)
            response = server_response(row)
        await self._intent_changed(response.id)
        return response

    async def get_server(self, ref: str, *, reveal: bool = False) -> ToolServerResponse:
        async with self.db.session() as session:
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
        async with self.db.session() as session:
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
            for field in changed:
                setattr(row, field, getattr(merged, field))
            if "enabled" in changed and row.enabled:
                row.disabled_reason = None
                row.consecutive_failures = 0
            if changed:
                add_event(
                    session, row.id, EventKind.UPDATED, f"changed {', '.join(changed)}", actor
                )
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
        if self.runtime is not None:
            await self.runtime.forget(server_id)
        async with self.db.session() as session:
            row = await self._server(session, server_id)
            await session.delete(row)
            add_event(session, server_id, EventKind.DELETED, f"deleted {name}", actor)
        self.changes.publish(Change.SERVERS, server_id)

    async def set_server_enabled(
        self, ref: str, enabled: bool, *, actor: str, reason: str | None = None
    ) -> ToolServerResponse:
        async with self.db.session() as session:
            row = await self._server(session, ref)
            changed = row.enabled != enabled
            row.enabled = enabled
            if enabled:
                row.disabled_reason = None
                row.consecutive_failures = 0
            elif reason:
                row.disabled_reason = reason
            if changed:
                kind = EventKind.ENABLED if enabled else EventKind.DISABLED
                verb = "enabled" if enabled else "disabled"
                add_event(session, row.id, kind, f"{verb} {row.name}", actor)
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
        async with self.db.session() as session:
            server = await self._server(session, server_ref)
            rows = await session.execute(
                select(ServerTool)
                .where(ServerTool.server_id == server.id)
                .order_by(ServerTool.name)
            )
            return [self._tool_response(tool, server.name) for tool in rows.scalars()]

    async def get_tool(self, ref: str, server_ref: str | None = None) -> ServerToolResponse:
        async with self.db.session() as session:
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
                setattr(tool, field, value)
                add_event(session, tool.server_id, kind, f"{verb} tool {tool.name}", actor)
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
        async with self.db.session() as session:
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
