"""The facade's server, tool and event operations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError

from app.core.changes import Change
from app.core.errors import Conflict, InvalidInput
from app.core.events import EventKind
from app.core.schemas import (
    SERVER_STATUSES,
    ServerEventResponse,
    ServerToolResponse,
    ToolServerCreate,
    ToolServerResponse,
    ToolServerUpdate,
)
from app.governance.audit import change_details, created_details, deleted_details, snapshot
from app.ops.base import (
    RESPONSE_COLUMNS,
    OpsBase,
    keep_masked_fields,
    response_of_values,
    server_response,
    validated,
    with_placement,
)
from app.ops.nodes import place
from storage.models import ServerEvent, ServerTool, ToolServer
from storage.queries import add_event, find_server, tool_counts


class ServerOperations(OpsBase):
    """Servers and tools: create, read, update, delete, enable, disable; events."""

    async def create_server(
        self, data: ToolServerCreate | dict[str, Any], *, actor: str, is_builtin: bool = False
    ) -> ToolServerResponse:
        spec = validated(ToolServerCreate, data)
        async with self.db.session() as session:
            if await find_server(session, spec.name) is not None:
                raise Conflict(f"a server named {spec.name!r} already exists", field="name")
            values = with_placement(spec.model_dump(), self.settings)
            row = ToolServer(**values, is_builtin=is_builtin, created_by=actor)
            session.add(row)
            try:
                await session.flush()
            except IntegrityError:
                raise Conflict(
                    f"a server named {spec.name!r} already exists", field="name"
                ) from None
            details = created_details(with_placement(spec.model_dump(mode="json"), self.settings))
            add_event(session, row.id, EventKind.CREATED, f"created {spec.name}", actor, details)
            response = server_response(row)
        await self._intent_changed(response.id)
        return response

    async def get_server(self, ref: str, *, reveal: bool = False) -> ToolServerResponse:
        async with self.db.read() as session:
            row = await self._server(session, ref)
            counts = (await tool_counts(session, row.id)).get(row.id, (0, 0))
            response = server_response(row, counts, reveal=reveal)
            await place(session, self.single_node, self.settings, [response])
            return response

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
        # Plain columns rather than ORM objects: the dashboard reads every server each tick.
        query: Select[Any] = select(*RESPONSE_COLUMNS).order_by(ToolServer.name)
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
            result = await session.execute(query)
            names = [column.key for column in RESPONSE_COLUMNS]
            rows = [dict(zip(names, row, strict=True)) for row in result]
            counts = await tool_counts(session)
            responses = [
                response_of_values(row, counts.get(row["id"], (0, 0)), reveal=reveal)
                for row in rows
            ]
            await place(session, self.single_node, self.settings, responses)
            return responses

    async def update_server(
        self, ref: str, data: ToolServerUpdate | dict[str, Any], *, actor: str
    ) -> ToolServerResponse:
        changes = validated(ToolServerUpdate, data).model_dump(exclude_unset=True)
        async with self.db.session() as session:
            row = await self._server(session, ref)
            current = ToolServerCreate.model_construct(
                **{field: getattr(row, field) for field in ToolServerCreate.model_fields}
            ).model_dump()
            changes = keep_masked_fields(changes, row)
            # Validate the server as it will be, so a change cannot leave it unusable.
            merged = validated(ToolServerCreate, {**current, **_drop_none(changes)})
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
            counts = (await tool_counts(session, row.id)).get(row.id, (0, 0))
            response = server_response(row, counts)
        if changed:
            await self._intent_changed(response.id)
        return response

    async def delete_server(self, ref: str, *, actor: str) -> None:
        async with self.db.read() as session:
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
            counts = (await tool_counts(session, row.id)).get(row.id, (0, 0))
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


def _drop_none(changes: dict[str, Any]) -> dict[str, Any]:
    # Optional text fields may be cleared with None; collections and flags may not.
    clearable = {"display_name", "description", "command", "cwd", "url"}
    return {key: value for key, value in changes.items() if value is not None or key in clearable}
