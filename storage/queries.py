"""Small reusable queries shared by the facade and the runtime."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.events import EventKind
from storage.models import DeckState, ServerEvent, ServerTool, ToolServer

# The built-in servers were seeded once: later starts never create them again.
BUILTINS_SEEDED = "builtins_seeded"


def add_event(
    session: AsyncSession,
    server_id: str | None,
    kind: EventKind | str,
    message: str = "",
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> ServerEvent:
    row = ServerEvent(
        server_id=server_id, kind=str(kind), message=message, actor=actor, details=details
    )
    session.add(row)
    return row


async def find_server(session: AsyncSession, ref: str) -> ToolServer | None:
    """A server by id or by name."""
    result = await session.execute(
        select(ToolServer).where(or_(ToolServer.id == ref, ToolServer.name == ref))
    )
    return result.scalars().first()


async def tool_counts(
    session: AsyncSession, server_id: str | None = None
) -> dict[str, tuple[int, int]]:
    """Per server id: (number of tools, number of enabled tools); of one server when named
    (counting a whole fleet's tools for one server costs a thousand times the work)."""
    query = select(
        ServerTool.server_id,
        func.count(ServerTool.id),
        func.sum(func.cast(ServerTool.enabled, type_=ServerTool.total_calls.type)),
    ).group_by(ServerTool.server_id)
    if server_id is not None:
        query = query.where(ServerTool.server_id == server_id)
    rows = await session.execute(query)
    return {server_id: (total, int(enabled or 0)) for server_id, total, enabled in rows}


async def deck_fact(session: AsyncSession, key: str) -> str | None:
    """What the database remembers under `key` (see DeckState), or None."""
    row = await session.get(DeckState, key)
    return None if row is None else row.value or ""


async def remember_deck_fact(session: AsyncSession, key: str, value: str) -> None:
    row = await session.get(DeckState, key)
    if row is None:
        session.add(DeckState(key=key, value=value))
    else:
        row.value = value
