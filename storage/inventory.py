"""What a database is and holds, in a few cheap queries: for `tooldeck db check` and `status`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import Database
from storage.models import (
    Alert,
    ServerEvent,
    ServerTool,
    ToolServer,
    ToolUsage,
    UsageScopeHourly,
    UsageScopes,
)
from storage.usage_math import ALL_SCOPE


@dataclass(frozen=True, slots=True)
class Inventory:
    backend: str  # "sqlite" or "postgresql"
    server_version: str
    servers: int
    tools: int
    calls: int  # every call ever metered, from the rollups (retention does not prune them)
    usage_rows: int  # raw usage rows kept
    events: int
    open_alerts: int

    def summary(self) -> str:
        return (
            f"{self.servers:,} servers, {self.tools:,} tools, {self.calls:,} calls metered "
            f"({self.usage_rows:,} raw rows kept), {self.events:,} events, "
            f"{self.open_alerts:,} open alerts"
        )


async def take_inventory(db: Database) -> Inventory:
    async with db.read() as session:
        conn = await session.connection()
        return Inventory(
            backend=conn.dialect.name,
            server_version=".".join(str(part) for part in conn.dialect.server_version_info or ()),
            servers=await _count(conn, ToolServer.id),
            tools=await _count(conn, ServerTool.id),
            calls=await _calls(conn),
            usage_rows=await _count(conn, ToolUsage.id),
            events=await _count(conn, ServerEvent.id),
            open_alerts=(
                await conn.execute(select(func.count(Alert.id)).where(Alert.status == "open"))
            ).scalar_one(),
        )


async def _count(conn: AsyncConnection, column: Any) -> int:
    return (await conn.execute(select(func.count(column)))).scalar_one()


async def _calls(conn: AsyncConnection) -> int:
    """Calls of every outcome, from the newest running totals of all servers together."""
    hourly = UsageScopeHourly.__table__.c
    scopes = UsageScopes.__table__.c
    newest = UsageScopes.__table__.join(
        UsageScopeHourly.__table__,
        (hourly.scope == scopes.scope) & (hourly.hour == scopes.last_hour),
    )
    row = (
        await conn.execute(
            select(hourly.cum_calls + hourly.cum_refused + hourly.cum_cancelled)
            .select_from(newest)
            .where(scopes.scope == ALL_SCOPE)
        )
    ).first()
    return int(row[0]) if row is not None else 0
