"""Uptime: the fraction of a window each server was up, from its start and stop events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.events import DOWN_EVENTS, UP_EVENTS
from storage.models import ServerEvent, ToolServer
from storage.usage_math import as_utc


async def uptime(
    conn: AsyncConnection, server_ids: Sequence[str], start: datetime, end: datetime
) -> dict[str, float | None]:
    """The fraction of [start, end) each server was up, from its start and stop events.

    A server is up from an UP event until the next DOWN event; time before it was created does
    not count either way. None when the server did not exist in the window.
    """
    if not server_ids:
        return {}
    kinds = [str(kind) for kind in (*UP_EVENTS, *DOWN_EVENTS)]
    up_kinds = {str(kind) for kind in UP_EVENTS}
    earlier = ServerEvent.__table__.alias("earlier")
    state_before = (
        select(earlier.c.kind)
        .where(
            earlier.c.server_id == ToolServer.id,
            earlier.c.kind.in_(kinds),
            earlier.c.created_at < start,
        )
        .order_by(earlier.c.created_at.desc(), earlier.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    states = {
        row[0]: (row[1], as_utc(row[2]))
        for row in await conn.execute(
            select(ToolServer.id, state_before, ToolServer.created_at).where(
                ToolServer.id.in_(server_ids)
            )
        )
    }
    changes: dict[str, list[tuple[datetime, bool]]] = defaultdict(list)
    for server_id, kind, at in await conn.execute(
        select(ServerEvent.server_id, ServerEvent.kind, ServerEvent.created_at)
        .where(
            ServerEvent.server_id.in_(server_ids),
            ServerEvent.kind.in_(kinds),
            ServerEvent.created_at >= start,
            ServerEvent.created_at < end,
        )
        .order_by(ServerEvent.created_at, ServerEvent.id)
    ):
        changes[server_id].append((as_utc(at), kind in up_kinds))
    result: dict[str, float | None] = {}
    for server_id in server_ids:
        kind_before, created = states.get(server_id, (None, end))
        # Events are the better witness of when a server existed than its row's creation time.
        born = min([created, *(at for at, _ in changes.get(server_id, []))])
        if kind_before is not None:
            born = min(born, start)
        low = max(start, born)
        if low >= end:
            result[server_id] = None
            continue
        up = kind_before in up_kinds
        since = low
        up_time = timedelta()
        for at, is_up in changes.get(server_id, []):
            at = max(at, low)
            if up:
                up_time += at - since
            up, since = is_up, at
        if up:
            up_time += end - since
        result[server_id] = min(1.0, up_time / (end - low))
    return result
