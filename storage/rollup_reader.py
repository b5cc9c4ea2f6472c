"""The rollup reader: usage over a window plan, from the rollups and the raw rows.

A plan's whole hours come from the hourly rollups: their running totals make any span of hours
"the latest row before the end minus the latest row before the start" per series or scope, two
index lookups however long the span. Its edges come from the raw rows, grouped by SQL. Counts
are exact; histograms are merged by addition and subtraction (storage.latency), never averaged.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.usage_record import ANSWERED
from storage.db import Database
from storage.dialect import time_text
from storage.latency import RunningHistogram, merge_dense
from storage.models import ToolUsage, UsageScopeHourly, UsageScopes, UsageSeries, UsageToolHourly
from storage.usage_math import (
    OWN_COLUMNS,
    RUNNING_COLUMNS,
    SeriesKey,
    Usage,
    parse_sqlite_time,
)
from storage.windows import WindowPlan

_usage = ToolUsage.__table__.c
_series = UsageSeries.__table__.c
_tool_hours = UsageToolHourly.__table__
_scope_hours = UsageScopeHourly.__table__
_scopes = UsageScopes.__table__.c


def _text(column: Any) -> Any:
    # Times are parsed only when they are shown: parsing every row would cost more than the SQL.
    return time_text(column)


# How many columns of running totals a row carries (RUNNING_COLUMNS).
N_RUNNING = len(RUNNING_COLUMNS)
_answered = _usage.outcome.in_(ANSWERED)


def _running(totals: Sequence[Any], last: str | None) -> Usage:
    return Usage.of_running(totals, parse_sqlite_time(last))


@dataclass(slots=True)
class RunningUsage:
    """A scope's running totals with its running histogram, as stored: what happened between
    two of them is `later.since(earlier)`."""

    usage: Usage = field(default_factory=Usage)
    hist: RunningHistogram = field(default_factory=RunningHistogram)

    def since(self, earlier: RunningUsage) -> Usage:
        usage = self.usage.since(earlier.usage)
        usage.hist = self.hist.since(earlier.hist)
        return usage


@asynccontextmanager
async def read_rollups(db: Database) -> AsyncIterator[RollupReader]:
    """A reader inside one read transaction: every query of an answer sees the same snapshot."""
    async with db.read_connection() as conn:
        yield RollupReader(conn)


class RollupReader:
    """Reads usage for one answer. The raw rows of an edge asked for twice in one answer are
    read once."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._edges: dict[tuple[Any, ...], dict[SeriesKey, Usage]] = {}

    async def series_usage(
        self,
        plan: WindowPlan,
        *,
        tool_id: str | None = None,
        series_ids: Sequence[int] | None = None,
    ) -> tuple[dict[SeriesKey, Usage], dict[SeriesKey, tuple[int | None, str | None]]]:
        """Each series' totals over the plan's whole hours (no histograms, no times), and each
        series' id and newest call up to the window's end (as text: parsed when shown). Every
        series, or those of one tool, or those with the given ids.

        One query: the series table LEFT JOIN its rollup row before the start, and before the
        end unless the window ends now (then the series row's own running totals are the end).
        """
        if plan.first_hour >= plan.end_hour:
            return {}, {}
        query = _series_window_query(plan.live)
        if tool_id is not None:
            query = query.where(_series.tool_id == tool_id)
        if series_ids is not None:
            query = query.where(_series.id.in_(series_ids))
        hours = {"first_hour": plan.first_hour, "end_hour": plan.end_hour}
        usage: dict[SeriesKey, Usage] = {}
        seen: dict[SeriesKey, tuple[int | None, str | None]] = {}
        for row in (await self.conn.execute(query, hours)).all():
            before = row[4 : 4 + N_RUNNING]
            end = row[5 + N_RUNNING : 5 + 2 * N_RUNNING]
            if end[0] is None:
                continue  # nothing up to the window's end
            key = (row[1], row[2], row[3])
            earlier = Usage() if before[0] is None else Usage.of_running(before)
            usage[key] = Usage.of_running(end).since(earlier)
            newest = row[5 + 2 * N_RUNNING] if end[0] != (before[0] or 0) else None
            seen[key] = (row[0], newest)
        return usage, seen

    async def tool_hours_usage(self, tool_id: str, first_hour: int, end_hour: int) -> Usage:
        """One tool's hours, histograms included, summed hour by hour."""
        usage = Usage()
        if first_hour >= end_hour:
            return usage
        ids = select(_series.id).where(_series.tool_id == tool_id).scalar_subquery()
        hourly = _tool_hours.c
        hours = and_(hourly.series_id.in_(ids), hourly.hour >= first_hour, hourly.hour < end_hour)
        *totals, last = (
            await self.conn.execute(
                select(
                    *(func.coalesce(func.sum(hourly[name]), 0) for name in OWN_COLUMNS),
                    func.max(_text(hourly.last_called)),
                ).where(hours)
            )
        ).one()
        blobs = (await self.conn.execute(select(hourly.latency_hist).where(hours))).scalars().all()
        usage = _running(totals, last)
        usage.hist = merge_dense(blobs)
        return usage

    async def server_tools_hours_usage(
        self, server_id: str, first_hour: int, end_hour: int
    ) -> dict[str, Usage]:
        """Each tool of one server over whole hours, histograms included, by tool id: one
        grouped sum and one read of the hours' histograms, however many tools."""
        if first_hour >= end_hour:
            return {}
        hourly = _tool_hours.c
        joined = _tool_hours.join(UsageSeries.__table__, _series.id == hourly.series_id)
        hours = and_(
            _series.server_id == server_id, hourly.hour >= first_hour, hourly.hour < end_hour
        )
        result: dict[str, Usage] = {}
        totals = select(
            _series.tool_id,
            *(func.coalesce(func.sum(hourly[name]), 0) for name in OWN_COLUMNS),
            func.max(_text(hourly.last_called)),
        )
        for tool_id, *running, last in (
            await self.conn.execute(
                totals.select_from(joined).where(hours).group_by(_series.tool_id)
            )
        ).all():
            result[tool_id] = _running(running, last)
        blobs: dict[str, list[bytes | None]] = {}
        histograms = select(_series.tool_id, hourly.latency_hist).select_from(joined).where(hours)
        for tool_id, blob in (await self.conn.execute(histograms)).all():
            blobs.setdefault(tool_id, []).append(blob)
        for tool_id, usage in result.items():
            usage.hist = merge_dense(blobs.get(tool_id, ()))
        return result

    async def scope_usage(self, plan: WindowPlan, scopes: Sequence[str]) -> dict[str, Usage]:
        """Each scope's totals and histogram over the plan's whole hours."""
        result = {scope: Usage() for scope in scopes}
        if plan.first_hour >= plan.end_hour:
            return result
        before = await self._scope_rows(scopes, plan.first_hour)
        after = await self._scope_rows(scopes, None if plan.live else plan.end_hour)
        for scope in scopes:
            if scope in after:
                result[scope] = after[scope].since(before.get(scope, RunningUsage()))
        return result

    async def _scope_rows(
        self, scopes: Sequence[str], before_hour: int | None
    ) -> dict[str, RunningUsage]:
        """Each scope's running totals before `before_hour`, or its newest when None."""
        hourly = _scope_hours.c
        if before_hour is None:
            target: Any = _scopes.last_hour
        else:
            earlier = _scope_hours.alias("earlier")
            target = (
                select(func.max(earlier.c.hour))
                .where(earlier.c.scope == _scopes.scope, earlier.c.hour < before_hour)
                .scalar_subquery()
            )
        query = (
            select(
                _scopes.scope,
                *(hourly[name] for name in RUNNING_COLUMNS),
                _text(hourly.last_called),
                hourly.cum_latency_hist,
            )
            .select_from(
                UsageScopes.__table__.outerjoin(
                    _scope_hours, and_(hourly.scope == _scopes.scope, hourly.hour == target)
                )
            )
            .where(_scopes.scope.in_(scopes))
        )
        return {
            row[0]: RunningUsage(
                _running(row[1 : 1 + N_RUNNING], row[1 + N_RUNNING]),
                RunningHistogram.decode(row[2 + N_RUNNING]),
            )
            for row in (await self.conn.execute(query)).all()
            if row[1] is not None
        }

    async def scope_running_at(
        self, scope: str, boundaries: Sequence[int], *, hist: bool = True
    ) -> dict[int, RunningUsage]:
        """A scope's running totals before each boundary hour (hours list, then a few rows)."""
        hourly = _scope_hours.c
        low, high = min(boundaries), max(boundaries)
        hours = sorted(
            (
                await self.conn.execute(
                    select(hourly.hour).where(
                        hourly.scope == scope, hourly.hour >= low, hourly.hour < high
                    )
                )
            )
            .scalars()
            .all()
        )
        previous = (
            await self.conn.execute(
                select(func.max(hourly.hour)).where(hourly.scope == scope, hourly.hour < low)
            )
        ).scalar()
        picks: dict[int, int | None] = {}
        for boundary in boundaries:
            position = bisect_left(hours, boundary)
            picks[boundary] = hours[position - 1] if position > 0 else previous
        wanted = sorted({hour for hour in picks.values() if hour is not None})
        rows: dict[int, RunningUsage] = {}
        if wanted:
            columns = [
                hourly.hour,
                *(hourly[name] for name in RUNNING_COLUMNS),
                _text(hourly.last_called),
            ]
            if hist:
                columns.append(hourly.cum_latency_hist)
            for row in (
                await self.conn.execute(
                    select(*columns).where(hourly.scope == scope, hourly.hour.in_(wanted))
                )
            ).all():
                running = (
                    RunningHistogram.decode(row[2 + N_RUNNING]) if hist else RunningHistogram()
                )
                rows[row[0]] = RunningUsage(
                    _running(row[1 : 1 + N_RUNNING], row[1 + N_RUNNING]), running
                )
        return {
            boundary: rows[hour] if hour is not None else RunningUsage()
            for boundary, hour in picks.items()
        }

    async def raw_edges(
        self,
        edges: Iterable[tuple[datetime, datetime, int]],
        *,
        server_id: str | None = None,
        tool_id: str | None = None,
        hist: bool = True,
    ) -> dict[SeriesKey, Usage]:
        """What the edges add to (or take from) each series, with histograms unless `hist` is
        off. A part taken away carries no time: the newest call is not among them."""
        result: dict[SeriesKey, Usage] = {}
        for low, high, sign in edges:
            parts = await self._raw_edge(low, high, server_id, tool_id, hist)
            for key, part in parts.items():
                usage = result.get(key)
                if usage is None:
                    usage = result[key] = Usage()
                usage.add(part, sign=sign)
        return result

    async def _raw_edge(
        self,
        low: datetime,
        high: datetime,
        server_id: str | None,
        tool_id: str | None,
        hist: bool,
    ) -> dict[SeriesKey, Usage]:
        memo = self._edges
        memo_key = (low, high, server_id, tool_id, hist)
        if memo_key in memo:
            return memo[memo_key]
        # Without histograms, one group per series instead of one per series and bucket.
        bucket: Any = _usage.latency_bucket if hist else func.min(_usage.latency_bucket)
        answered_ms = case((_answered, _usage.response_time_ms))
        query = (
            select(
                _usage.server_id,
                _usage.tool_id,
                _usage.tool_name,
                bucket,
                _count_where(_answered),
                _count_where(_usage.outcome == "error"),
                func.count(answered_ms),
                func.coalesce(func.sum(answered_ms), 0.0),
                func.max(case((_answered, _text(_usage.called_at)))),
                _count_where(_usage.outcome == "refused"),
                _count_where(_usage.outcome == "cancelled"),
            )
            .where(_usage.called_at >= low, _usage.called_at < high)
            .group_by(
                _usage.server_id,
                _usage.tool_id,
                _usage.tool_name,
                *([_usage.latency_bucket] if hist else []),
            )
        )
        if server_id is not None:
            query = query.where(_usage.server_id == server_id)
        if tool_id is not None:
            query = query.where(_usage.tool_id == tool_id)
        result: dict[SeriesKey, Usage] = {}
        for row in (await self.conn.execute(query)).all():
            key = (row[0] or "", row[1] or "", row[2])
            timed = row[6] if row[3] is not None else 0
            part = Usage(
                row[4],
                row[5],
                timed,
                float(row[7]) if timed else 0.0,
                parse_sqlite_time(row[8]),
                {row[3]: timed} if timed and hist else {},
                row[9],
                row[10],
            )
            usage = result.get(key)
            if usage is None:
                result[key] = part
            else:
                usage.add(part)
        memo[memo_key] = result
        return result

    async def raw_buckets(
        self, start: datetime, end: datetime, buckets: int, server_id: str | None = None
    ) -> list[Usage]:
        """The raw rows of [start, end) in `buckets` equal buckets, histograms included."""
        width = (end - start) / buckets
        points = [Usage() for _ in range(buckets)]
        query = select(
            _text(_usage.called_at), _usage.outcome, _usage.response_time_ms, _usage.latency_bucket
        ).where(_usage.called_at >= start, _usage.called_at < end)
        if server_id is not None:
            query = query.where(_usage.server_id == server_id)
        for text, outcome, ms, bucket in (await self.conn.execute(query)).all():
            at = parse_sqlite_time(text)
            assert at is not None
            point = points[min(buckets - 1, int((at - start) / width))]
            if outcome == "refused":
                point.refused += 1
                continue
            if outcome == "cancelled":
                point.cancelled += 1
                continue
            point.calls += 1
            point.errors += 1 if outcome == "error" else 0
            if ms is not None and bucket is not None:
                point.timed += 1
                point.total_ms += ms
                point.hist[bucket] = point.hist.get(bucket, 0) + 1
        return points


def _count_where(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


@cache
def _series_window_query(live: bool) -> Any:
    """Every series with its running totals before `first_hour` and before `end_hour` (or its
    own newest running totals when the window ends now). Built once: it is the costliest
    statement to build, and only the hours change."""
    columns: list[Any] = [_series.id, _series.server_id, _series.tool_id, _series.tool_name]
    joined: Any = UsageSeries.__table__
    for name in ("first_hour", "end_hour"):
        if name == "end_hour" and live:
            columns += [*(_series[key] for key in RUNNING_COLUMNS), _text(_series.last_called)]
            continue
        rows = _tool_hours.alias(f"before_{name}")
        earlier = _tool_hours.alias(f"before_{name}_earlier")
        # Driven by usage_series (a LEFT JOIN keeps it the outer loop): one seek per series.
        latest = (
            select(func.max(earlier.c.hour))
            .where(earlier.c.series_id == _series.id, earlier.c.hour < bindparam(name))
            .scalar_subquery()
        )
        joined = joined.outerjoin(rows, and_(rows.c.series_id == _series.id, rows.c.hour == latest))
        columns += [*(rows.c[key] for key in RUNNING_COLUMNS), _text(rows.c.last_called)]
    # A series idle since before the window (and its raw edge's hour) needs no lookup.
    return (
        select(*columns).select_from(joined).where(_series.last_hour >= bindparam("first_hour") - 1)
    )
