"""Trim suggestions: enabled tools nobody called in the last N days.

Every listed tool costs each MCP client context space; a tool unused for a month is a candidate
to disable. Tools discovered within the window are left out: they have not had the chance.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.core.schemas import TrimReport, TrimServer, TrimTool
from storage.db import Database
from storage.models import ServerTool, ToolServer, UsageSeries


def no_cost(_tool: ServerTool) -> int:
    return 0


async def trim_report(
    db: Database,
    days: int,
    *,
    now: datetime | None = None,
    cost: Callable[[ServerTool], int] = no_cost,
) -> TrimReport:
    """`cost` estimates the context tokens a tool's listing takes (the facade knows how the
    gateway lists it)."""
    now = now or datetime.now(UTC)
    since = now - timedelta(days=days)
    series_last = (
        select(UsageSeries.tool_id, func.max(UsageSeries.last_called).label("last"))
        .group_by(UsageSeries.tool_id)
        .subquery()
    )
    query = (
        select(ServerTool, ToolServer.name, series_last.c.last)
        .join(ToolServer, ToolServer.id == ServerTool.server_id)
        .outerjoin(series_last, series_last.c.tool_id == ServerTool.id)
        .where(ServerTool.enabled.is_(True))
        .order_by(ToolServer.name, ServerTool.name)
    )
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    enabled: dict[str, int] = defaultdict(int)
    names: dict[str, str] = {}
    unused: dict[str, list[TrimTool]] = defaultdict(list)
    for tool, server_name, series_last_called in rows:
        enabled[tool.server_id] += 1
        names[tool.server_id] = server_name
        last = _latest(tool.last_called, _aware(series_last_called))
        if (last is None or last < since) and tool.discovered_at <= since:
            unused[tool.server_id].append(
                TrimTool(
                    tool_id=tool.id,
                    tool_name=tool.name,
                    last_called=last,
                    estimated_tokens=cost(tool),
                )
            )
    servers = [
        TrimServer(
            server_id=server_id,
            server_name=names[server_id],
            enabled_tools=enabled[server_id],
            unused_tools=len(tools),
            tools=tools,
        )
        for server_id, tools in unused.items()
    ]
    return TrimReport(
        days=days,
        since=since,
        total_unused=sum(server.unused_tools for server in servers),
        servers=servers,
        total_tokens=sum(tool.estimated_tokens for server in servers for tool in server.tools),
    )


def _aware(value: datetime | str | None) -> datetime | None:
    # An aggregate bypasses the column type on SQLite, so it comes back as naive text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _latest(*values: datetime | None) -> datetime | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None
