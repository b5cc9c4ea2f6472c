"""The stored tool listing of each server: what discovery found, and whether it is available.

Only the supervisor writes here. What a person set on a tool (enabled, bypass, display name)
survives every listing; what the server says (description, schemas, annotations) follows it.
"""

from __future__ import annotations

from collections.abc import Callable

import mcp_types as types
from sqlalchemy import select, update

from app.core.changes import Change
from app.core.events import EventKind
from storage.db import Database
from storage.models import ServerTool
from storage.queries import add_event


class ToolCatalogue:
    def __init__(self, db: Database, publish: Callable[[Change, str | None], None]) -> None:
        self.db = db
        self._publish = publish

    async def store(self, server_id: str, tools: list[types.Tool], actor: str) -> None:
        """Upsert a listing; an event names what was added, removed or changed."""
        listed = {tool.name: tool for tool in tools}
        added: list[str] = []
        removed: list[str] = []
        changed: list[str] = []
        async with self.db.session() as session:
            rows = (
                (await session.execute(select(ServerTool).where(ServerTool.server_id == server_id)))
                .scalars()
                .all()
            )
            existing = {row.name: row for row in rows}
            for name, tool in listed.items():
                listing = _listing(tool)
                row = existing.get(name)
                if row is None:
                    session.add(
                        ServerTool(
                            server_id=server_id,
                            name=name,
                            display_name=tool.title,
                            enabled=True,
                            is_available=True,
                            **listing,
                        )
                    )
                    added.append(name)
                    continue
                if any(getattr(row, field) != value for field, value in listing.items()):
                    for field, value in listing.items():
                        setattr(row, field, value)
                    changed.append(name)
                row.is_available = True
            for name, row in existing.items():
                if name not in listed and row.is_available:
                    row.is_available = False
                    removed.append(name)
            if added or removed or changed:
                parts = [f"+{name}" for name in added] + [f"-{name}" for name in removed]
                parts += [f"~{name}" for name in changed]
                add_event(
                    session,
                    server_id,
                    EventKind.TOOLS_CHANGED,
                    f"{len(listed)} tools ({', '.join(parts)})",
                    actor,
                )
        self._publish(Change.TOOLS, server_id)

    async def mark_unavailable(self, server_id: str | None = None) -> None:
        """The tools of a server that stopped (of every server when None) are unavailable."""
        async with self.db.session() as session:
            query = update(ServerTool).where(ServerTool.is_available.is_(True))
            if server_id is not None:
                query = query.where(ServerTool.server_id == server_id)
            await session.execute(query.values(is_available=False))
        self._publish(Change.TOOLS, server_id)

    async def available_count(self, server_id: str) -> int:
        async with self.db.read() as session:
            rows = await session.execute(
                select(ServerTool.id).where(
                    ServerTool.server_id == server_id, ServerTool.is_available.is_(True)
                )
            )
            return len(rows.all())


# The fields of a listed tool kept in a column of their own (the title is the display name,
# which a person may change); the others are kept together, as the server spelled them.
_OWN_COLUMNS = {"name", "title", "description", "input_schema", "output_schema", "annotations"}


def _listing(tool: types.Tool) -> dict[str, object]:
    rest = tool.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=_OWN_COLUMNS)
    return {
        "listing_rest": rest or None,
        "description": tool.description,
        "input_schema": dict(tool.input_schema or {}),
        "output_schema": tool.output_schema,
        # As the protocol spells them (readOnlyHint): tools/list sends them back as kept.
        "annotations": tool.annotations.model_dump(mode="json", exclude_none=True, by_alias=True)
        if tool.annotations
        else None,
    }
