"""Usage per client: calls, errors and p95 of each client name, and one client's tools.

The rollups are kept per (server, tool) and carry no client, so these are grouped queries over
the raw rows: one per answer, grouped by client (or tool) and latency bucket, so the p95 is
merged from exact counts like every other percentile here (storage.latency). A window reaches
back no further than the raw-row retention; the caller says where it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select

from app.core.usage_record import ANSWERED
from storage.db import Database
from storage.dialect import time_text
from storage.latency import percentiles
from storage.models import ToolServer, ToolUsage
from storage.usage_math import parse_sqlite_time

_usage = ToolUsage.__table__.c
_answered = _usage.outcome.in_(ANSWERED)


@dataclass(slots=True)
class ClientUsage:
    calls: int = 0
    errors: int = 0
    refused: int = 0
    last_called: datetime | None = None
    hist: dict[int, int] = field(default_factory=dict)

    @property
    def p95_ms(self) -> float | None:
        return percentiles(self.hist, (95,))[95] if self.hist else None

    def add(self, other: ClientUsage) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.refused += other.refused
        for bucket, count in other.hist.items():
            self.hist[bucket] = self.hist.get(bucket, 0) + count
        self._seen(other.last_called)

    def _seen(self, at: datetime | None) -> None:
        if at is not None and (self.last_called is None or at > self.last_called):
            self.last_called = at

    def add_row(self, row: Any) -> None:
        """A grouped row: (bucket, answered, errors, timed, refused, newest answered)."""
        bucket, answered, errors, timed, refused, newest = row
        self.calls += answered
        self.errors += errors
        self.refused += refused
        if timed and bucket is not None:
            self.hist[bucket] = self.hist.get(bucket, 0) + timed
        self._seen(parse_sqlite_time(newest))


def _count_where(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _figures() -> tuple[Any, ...]:
    return (
        _usage.latency_bucket,
        _count_where(_answered),
        _count_where(_usage.outcome == "error"),
        func.count(case((_answered, _usage.response_time_ms))),
        _count_where(_usage.outcome == "refused"),
        func.max(case((_answered, time_text(_usage.called_at)))),
    )


async def usage_by_client(db: Database, start: datetime, end: datetime) -> dict[str, ClientUsage]:
    """Every named client's calls in [start, end)."""
    query = (
        select(_usage.client_name, *_figures())
        .where(_usage.called_at >= start, _usage.called_at < end)
        .where(_usage.client_name.is_not(None))
        .group_by(_usage.client_name, _usage.latency_bucket)
    )
    found: dict[str, ClientUsage] = {}
    async with db.read() as session:
        for row in (await session.execute(query)).all():
            found.setdefault(row[0], ClientUsage()).add_row(row[1:])
    return found


async def usage_of_client_tools(
    db: Database, client_name: str, start: datetime, end: datetime
) -> dict[tuple[str | None, str], ClientUsage]:
    """One client's calls in [start, end) per (server name, tool name); a deleted server's
    tools are under None."""
    query = (
        select(ToolServer.name, _usage.tool_name, *_figures())
        .select_from(ToolUsage)
        .outerjoin(ToolServer, ToolServer.id == _usage.server_id)
        .where(_usage.called_at >= start, _usage.called_at < end)
        .where(_usage.client_name == client_name)
        .group_by(ToolServer.name, _usage.tool_name, _usage.latency_bucket)
    )
    found: dict[tuple[str | None, str], ClientUsage] = {}
    async with db.read() as session:
        for row in (await session.execute(query)).all():
            found.setdefault((row[0], row[1]), ClientUsage()).add_row(row[2:])
    return found
