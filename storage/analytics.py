"""Usage analytics over any window: server metrics, tool metrics, the system view, time series.

A window [start, end) is answered in two parts:
- its whole hours from the hourly rollups, whose running totals make any span of hours two index
  lookups per series (storage.rollups), however long the window;
- its ragged edges (the part of an hour before the first whole hour, and after the last one when
  the window ends in the past) from the raw rows, grouped by SQL. Of the two ways to cover a
  partial first hour, the one reading fewer raw rows is taken: add the raw rows of the part
  inside the window, or take the whole hour from the rollups and subtract the raw rows of the
  part before it. So the start edge never reads more than half an hour of raw rows.
A window that ends now needs no raw rows at its end: the rollups of the current hour are written
with the raw rows, so they are complete up to now.

Every count is exact. Percentiles come from merged latency histograms (storage.latency): their
rank is exact and their value is within ±1 % of the exact percentile of the raw rows — never an
average of per-hour percentiles. Rollups are kept past the raw-row retention; a window that starts
before the retention horizon starts at the whole hour (its raw edge may be gone), and the window
reported back (`period_start`) says so.

All times are UTC; "today", "week" and "month" are the UTC calendar day, the ISO week (from
Monday) and the calendar month, each up to now.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import Any

from sqlalchemy import String, and_, bindparam, case, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.events import DOWN_EVENTS, UP_EVENTS
from app.core.periods import DEFAULT_BUCKETS, DEFAULT_PERIOD, MAX_BUCKETS, PERIODS
from app.core.schemas import (
    ToolMetrics,
    ToolServerAnalytics,
    ToolServerMetrics,
    UsagePoint,
    UsageTimeSeries,
)
from storage.db import Database
from storage.latency import RunningHistogram, merge_dense, percentiles
from storage.models import (
    ServerEvent,
    ServerTool,
    ToolServer,
    ToolUsage,
    UsageScopeHourly,
    UsageScopes,
    UsageSeries,
    UsageToolHourly,
)
from storage.usage_math import (
    ALL_SCOPE,
    HOUR_S,
    SeriesKey,
    Usage,
    as_utc,
    hour_of,
    hour_start,
    parse_sqlite_time,
)

TOP_TOOLS = 10
# Up to this long, a time series is cut from the raw rows (buckets shorter than an hour);
# beyond it, from the rollups in whole hours.
RAW_SERIES_MAX = timedelta(hours=6)
ACTIVE_STATUSES = ("running", "degraded")


class UnknownPeriod(ValueError):
    def __init__(self, period: str) -> None:
        super().__init__(f"unknown period {period!r}: use one of {', '.join(PERIODS)}")
        self.period = period


# ---- windows ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    live: bool  # ends now: the newest rollup hour is complete up to the end


def make_window(
    period: str | None = DEFAULT_PERIOD,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    now: datetime,
) -> Window:
    """The window a request means: an explicit start and end, or the `period` up to `end`
    (default now). Raises UnknownPeriod, or ValueError when start is not before end."""
    period = period or DEFAULT_PERIOD
    if period not in PERIODS:
        raise UnknownPeriod(period)
    now = as_utc(now)
    end = now if end is None else as_utc(end)
    start = end - PERIODS[period].span if start is None else as_utc(start)
    if start >= end:
        raise ValueError("start must be before end")
    return Window(start, end, live=end >= now)


@dataclass(frozen=True, slots=True)
class _Plan:
    """How a window is answered: rollup hours [first_hour, end_hour), plus (sign 1) or minus
    (sign -1) the raw rows of each edge [low, high)."""

    start: datetime
    end: datetime
    first_hour: int
    end_hour: int
    live: bool
    edges: tuple[tuple[datetime, datetime, int], ...]


def _ceil_hour(moment: datetime) -> int:
    hour = hour_of(moment)
    return hour if hour_start(hour) == moment else hour + 1


def plan_window(window: Window, raw_horizon: datetime) -> _Plan:
    start, end = window.start, window.end
    if start < raw_horizon:
        # The raw rows of a partial first hour may be pruned: start at the whole hour.
        start = hour_start(hour_of(start))
    first = _ceil_hour(start)
    if window.live:
        last = hour_of(end) + 1
    else:
        last = hour_of(end)
        if end < raw_horizon and hour_start(last) != end:
            last += 1
            end = hour_start(last)
    edges: list[tuple[datetime, datetime, int]] = []
    if first >= last:
        # No whole hour inside: all of it from the raw rows, cut at the hour so that every edge
        # lies within one hour (and so within one day).
        stop = hour_start(last) if window.live else end
        cut = hour_start(first)
        if start < cut < stop:
            edges += [(start, cut, 1), (cut, stop, 1)]
        else:
            edges.append((start, stop, 1))
        first = last
    else:
        if start < hour_start(first):
            before = hour_start(first - 1)
            if start - before < hour_start(first) - start and before >= raw_horizon:
                first -= 1
                edges.append((before, start, -1))
            else:
                edges.append((start, hour_start(first), 1))
        # At the end only adding will do: the newest call of an hour taken whole could lie
        # after the end, and running totals do not say which one came before it.
        if not window.live and hour_start(last) < end:
            edges.append((hour_start(last), end, 1))
    return _Plan(start, end, first, last, window.live, tuple(edges))


# ---- the queries -----------------------------------------------------------------------------

_usage = ToolUsage.__table__.c
_series = UsageSeries.__table__.c
_tool_hours = UsageToolHourly.__table__
_scope_hours = UsageScopeHourly.__table__
_scopes = UsageScopes.__table__.c
_RUNNING = ("cum_calls", "cum_errors", "cum_timed", "cum_ms")
_EDGES = "usage_analytics_edges"


def _text(column: Any) -> Any:
    # Times are parsed only when they are shown: parsing every row would cost more than the SQL.
    return type_coerce(column, String)


def _running(calls: int, errors: int, timed: int, total_ms: float, last: str | None) -> Usage:
    return Usage(calls, errors, timed, total_ms, parse_sqlite_time(last))


@dataclass(slots=True)
class _Running:
    """A scope's running totals with its running histogram, as stored."""

    usage: Usage = field(default_factory=Usage)
    hist: RunningHistogram = field(default_factory=RunningHistogram)

    def since(self, earlier: _Running) -> Usage:
        usage = self.usage.since(earlier.usage)
        usage.hist = self.hist.since(earlier.hist)
        return usage


class UsageAnalytics:
    """Answers analytics questions from the rollups and the raw rows. Stateless between calls."""

    def __init__(
        self,
        db: Database,
        *,
        raw_retention_days: int,
        failing_error_rate: float,
        failing_min_calls: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.raw_retention = timedelta(days=raw_retention_days)
        self.failing_error_rate = failing_error_rate
        self.failing_min_calls = failing_min_calls
        self.clock = clock

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        # One read transaction: every query of an answer sees the same snapshot, so the raw
        # rows of an edge asked for twice in one answer are read once (memo on the connection,
        # which serves one answer at a time).
        async with self.db.read_engine.connect() as conn, conn.begin():
            conn.info[_EDGES] = {}
            try:
                yield conn
            finally:
                conn.info.pop(_EDGES, None)

    def plan(self, window: Window, now: datetime) -> _Plan:
        return plan_window(window, now - self.raw_retention)

    # ---- server metrics ------------------------------------------------------------------

    async def server_metrics(self, server_id: str, window: Window) -> ToolServerMetrics:
        now = self.clock()
        plan = self.plan(window, now)
        async with self._read() as conn:
            server = (
                await conn.execute(
                    select(ToolServer.id, ToolServer.name, ToolServer.status).where(
                        ToolServer.id == server_id
                    )
                )
            ).one()
            usage = (await self._scope_usage(conn, plan, [server_id]))[server_id]
            for key, part in (await self._raw_edges(conn, plan.edges, server_id=server_id)).items():
                if key[0] == server_id:
                    usage.add(part)
            counts = await _tool_counts(conn, [server_id])
            uptime = await _uptime(conn, [server_id], plan.start, plan.end)
        return _server_metrics(server, usage, counts.get(server_id, (0, 0)), uptime, plan)

    # ---- tool metrics --------------------------------------------------------------------

    async def tool_metrics(self, tool_id: str, window: Window) -> ToolMetrics:
        now = self.clock()
        plan = self.plan(window, now)
        day = self.plan(make_window("24h", now=now), now)
        async with self._read() as conn:
            tool = (
                await conn.execute(
                    select(
                        ServerTool.id,
                        ServerTool.name,
                        ServerTool.server_id,
                        ServerTool.enabled,
                        ServerTool.is_available,
                        ToolServer.name,
                    )
                    .join(ToolServer, ToolServer.id == ServerTool.server_id)
                    .where(ServerTool.id == tool_id)
                )
            ).one()
            usage = await self._tool_hours_usage(conn, tool_id, plan.first_hour, plan.end_hour)
            for part in (await self._raw_edges(conn, plan.edges, tool_id=tool_id)).values():
                usage.add(part)
            last_day = Usage()
            by_series, _ = await self._series_usage(conn, day, _series.tool_id == tool_id)
            for part in by_series.values():
                last_day.add(part)
            for part in (await self._raw_edges(conn, day.edges, tool_id=tool_id)).values():
                last_day.add(part)
        status = _tool_status(True, tool.enabled, tool.is_available)
        return _tool_metrics(
            tool.id, tool.name, tool.server_id, tool[5], status, usage, last_day, plan, hist=True
        )

    # ---- the system view -----------------------------------------------------------------

    async def system(self, window: Window) -> ToolServerAnalytics:
        now = self.clock()
        plan = self.plan(window, now)
        async with self._read() as conn:
            servers = (
                await conn.execute(
                    select(ToolServer.id, ToolServer.name, ToolServer.status).order_by(
                        ToolServer.name
                    )
                )
            ).all()
            server_ids = [server.id for server in servers]
            counts = await _tool_counts(conn, None)
            tools, last_seen = await self._series_usage(conn, plan, None)
            scopes = await self._scope_usage(conn, plan, [ALL_SCOPE, *server_ids])
            for key, part in (await self._raw_edges(conn, plan.edges)).items():
                _add_part(tools, scopes, key, part)
            uptime = await _uptime(conn, server_ids, plan.start, plan.end)
            calendar, daily = await self._calendar_and_daily(conn, plan, now)
            listed = self._top_and_failing(tools)
            last_day = await self._last_day(
                conn, now, {key: last_seen.get(key, (None, None))[0] for key, _ in listed}
            )
            tool_rows = await _tool_rows(conn, {key[1] for key, _ in listed if key[1]})

        names = {server.id: server.name for server in servers}
        overall = scopes[ALL_SCOPE]

        def tool_entry(key: SeriesKey) -> ToolMetrics:
            server_id, tool_id, tool_name = key
            row = tool_rows.get(tool_id)
            status = _tool_status(
                bool(tool_id), row[0] if row else False, row[1] if row else False, gone=row is None
            )
            usage = tools[key]
            newest = parse_sqlite_time(last_seen.get(key, (None, None))[1])
            if newest is not None and (usage.last_called is None or newest > usage.last_called):
                usage.last_called = newest
            return _tool_metrics(
                tool_id or None,
                tool_name,
                server_id or None,
                names.get(server_id),
                status,
                usage,
                last_day.get(key, Usage()),
                plan,
                hist=False,
            )

        top, failing = self._split(listed)
        return ToolServerAnalytics(
            total_servers=len(servers),
            active_servers=sum(1 for server in servers if server.status in ACTIVE_STATUSES),
            total_tools=sum(total for total, _ in counts.values()),
            enabled_tools=sum(enabled for _, enabled in counts.values()),
            total_calls_today=calendar["today"].calls,
            total_calls_week=calendar["week"].calls,
            total_calls_month=calendar["month"].calls,
            total_errors_today=calendar["today"].errors,
            overall_success_rate=overall.success_rate,
            avg_response_time_ms=overall.avg_ms,
            p95_response_time_ms=percentiles(overall.hist, (95,))[95],
            server_metrics=[
                _server_metrics(
                    server, scopes[server.id], counts.get(server.id, (0, 0)), uptime, plan
                )
                for server in servers
            ],
            top_tools=[tool_entry(key) for key in top],
            failing_tools=[tool_entry(key) for key in failing],
            daily_usage={day: usage.calls for day, usage in daily.items()},
            daily_errors={day: usage.errors for day, usage in daily.items()},
            generated_at=now,
            period_start=plan.start,
            period_end=plan.end,
        )

    def _top_and_failing(self, tools: dict[SeriesKey, Usage]) -> list[tuple[SeriesKey, str]]:
        """The keys to list, each tagged "top" or "failing" (a tool may be both)."""
        called = [(key, usage) for key, usage in tools.items() if usage.calls > 0]
        top = sorted(called, key=lambda item: (-item[1].calls, item[0][2], item[0]))[:TOP_TOOLS]
        failing = sorted(
            (
                (key, usage)
                for key, usage in called
                if usage.calls >= self.failing_min_calls
                and usage.errors / usage.calls >= self.failing_error_rate
            ),
            key=lambda item: (-item[1].errors / item[1].calls, -item[1].calls, item[0][2]),
        )
        return [(key, "top") for key, _ in top] + [(key, "failing") for key, _ in failing]

    @staticmethod
    def _split(listed: list[tuple[SeriesKey, str]]) -> tuple[list[SeriesKey], list[SeriesKey]]:
        return (
            [key for key, kind in listed if kind == "top"],
            [key for key, kind in listed if kind == "failing"],
        )

    async def _last_day(
        self, conn: AsyncConnection, now: datetime, ids: dict[SeriesKey, int | None]
    ) -> dict[SeriesKey, Usage]:
        keys = set(ids)
        if not keys:
            return {}
        day = self.plan(make_window("24h", now=now), now)
        wanted = [series_id for series_id in ids.values() if series_id is not None]
        usage, _ = await self._series_usage(conn, day, _series.id.in_(wanted))
        for key, part in (await self._raw_edges(conn, day.edges, hist=False)).items():
            if key in keys:
                usage.setdefault(key, Usage()).add(part)
        return usage

    async def _calendar_and_daily(
        self, conn: AsyncConnection, plan: _Plan, now: datetime
    ) -> tuple[dict[str, Usage], dict[str, Usage]]:
        """Today, this week and this month up to now; and each UTC day the window touches
        (its part of the window). Counts only: one set of running totals serves them all."""
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        calendar_starts = {
            "today": hour_of(today),
            "week": hour_of(today - timedelta(days=today.weekday())),
            "month": hour_of(today.replace(day=1)),
        }
        now_hour = hour_of(now) + 1
        days: list[datetime] = []
        day = plan.start.replace(hour=0, minute=0, second=0, microsecond=0)
        while day < plan.end:
            days.append(day)
            day += timedelta(days=1)
        boundaries = {plan.first_hour, plan.end_hour, now_hour, *calendar_starts.values()}
        boundaries |= {
            hour_of(day) for day in days if plan.first_hour < hour_of(day) < plan.end_hour
        }
        running = await self._scope_running_at(conn, ALL_SCOPE, sorted(boundaries), hist=False)
        calendar = {
            name: running[now_hour].since(running[start]) for name, start in calendar_starts.items()
        }
        daily: dict[str, Usage] = {}
        for day in days:
            low = max(plan.first_hour, hour_of(day))
            high = min(plan.end_hour, hour_of(day) + 24)
            daily[day.date().isoformat()] = (
                running[high].since(running[low]) if low < high else Usage()
            )
        for edge in plan.edges:
            # An edge lies within one hour, so within one day.
            day_usage = daily[edge[0].date().isoformat()]
            for part in (await self._raw_edges(conn, [edge])).values():
                day_usage.add(part)
        return calendar, daily

    # ---- time series ---------------------------------------------------------------------

    async def time_series(
        self, server_id: str | None, window: Window, buckets: int = DEFAULT_BUCKETS
    ) -> UsageTimeSeries:
        buckets = max(1, min(buckets, MAX_BUCKETS))
        async with self._read() as conn:
            name = None
            if server_id is not None:
                name = (
                    await conn.execute(select(ToolServer.name).where(ToolServer.id == server_id))
                ).scalar_one()
            if window.end - window.start <= RAW_SERIES_MAX:
                return await self._raw_series(conn, server_id, name, window, buckets)
            return await self._hourly_series(conn, server_id, name, window, buckets)

    async def _raw_series(
        self,
        conn: AsyncConnection,
        server_id: str | None,
        server_name: str | None,
        window: Window,
        buckets: int,
    ) -> UsageTimeSeries:
        width = (window.end - window.start) / buckets
        points = [Usage() for _ in range(buckets)]
        query = select(
            _text(_usage.called_at), _usage.success, _usage.response_time_ms, _usage.latency_bucket
        ).where(_usage.called_at >= window.start, _usage.called_at < window.end)
        if server_id is not None:
            query = query.where(_usage.server_id == server_id)
        for text, success, ms, bucket in (await conn.execute(query)).all():
            at = parse_sqlite_time(text)
            assert at is not None
            point = points[min(buckets - 1, int((at - window.start) / width))]
            point.calls += 1
            point.errors += 0 if success else 1
            if ms is not None and bucket is not None:
                point.timed += 1
                point.total_ms += ms
                point.hist[bucket] = point.hist.get(bucket, 0) + 1
        return UsageTimeSeries(
            server_id=server_id,
            server_name=server_name,
            period_start=window.start,
            period_end=window.end,
            bucket_seconds=max(1, round(width.total_seconds())),
            points=[
                _point(window.start + width * index, window.start + width * (index + 1), usage)
                for index, usage in enumerate(points)
            ],
        )

    async def _hourly_series(
        self,
        conn: AsyncConnection,
        server_id: str | None,
        server_name: str | None,
        window: Window,
        buckets: int,
    ) -> UsageTimeSeries:
        # Whole-hour buckets ending with the hour that holds the window's end.
        end_hour = hour_of(window.end) + 1 if window.live else _ceil_hour(window.end)
        hours = max(1, math.ceil((window.end - window.start) / timedelta(hours=1)))
        width = max(1, math.ceil(hours / buckets))
        count = math.ceil(hours / width)
        first_hour = end_hour - count * width
        boundaries = [first_hour + index * width for index in range(count + 1)]
        scope = ALL_SCOPE if server_id is None else server_id
        running = await self._scope_running_at(conn, scope, boundaries)
        points = [
            _point(hour_start(low), hour_start(high), running[high].since(running[low]))
            for low, high in pairwise(boundaries)
        ]
        return UsageTimeSeries(
            server_id=server_id,
            server_name=server_name,
            period_start=hour_start(first_hour),
            period_end=hour_start(end_hour),
            bucket_seconds=width * HOUR_S,
            points=points,
        )

    # ---- building blocks -----------------------------------------------------------------

    async def _series_usage(
        self, conn: AsyncConnection, plan: _Plan, where: Any | None
    ) -> tuple[dict[SeriesKey, Usage], dict[SeriesKey, tuple[int | None, str | None]]]:
        """Each series' totals over the plan's whole hours (no histograms, no times), and each
        series' id and newest call up to the window's end (as text: parsed when shown).

        One query: the series table LEFT JOIN its rollup row before the start, and before the
        end unless the window ends now (then the series row's own running totals are the end).
        """
        if plan.first_hour >= plan.end_hour:
            return {}, {}
        query = _series_window_query(plan.live)
        if where is not None:
            query = query.where(where)
        hours = {"first_hour": plan.first_hour, "end_hour": plan.end_hour}
        usage: dict[SeriesKey, Usage] = {}
        seen: dict[SeriesKey, tuple[int | None, str | None]] = {}
        for row in (await conn.execute(query, hours)).all():
            calls = row[9]
            if calls is None:
                continue  # nothing up to the window's end
            key = (row[1], row[2], row[3])
            if row[4] is None:
                usage[key] = Usage(calls, row[10], row[11], row[12] if row[11] else 0.0)
            else:
                timed = row[11] - row[6]
                usage[key] = Usage(
                    calls - row[4], row[10] - row[5], timed, row[12] - row[7] if timed else 0.0
                )
            seen[key] = (row[0], row[13] if calls != (row[4] or 0) else None)
        return usage, seen

    async def _tool_hours_usage(
        self, conn: AsyncConnection, tool_id: str, first_hour: int, end_hour: int
    ) -> Usage:
        """One tool's hours, histograms included, summed hour by hour."""
        usage = Usage()
        if first_hour >= end_hour:
            return usage
        ids = select(_series.id).where(_series.tool_id == tool_id).scalar_subquery()
        hourly = _tool_hours.c
        hours = and_(hourly.series_id.in_(ids), hourly.hour >= first_hour, hourly.hour < end_hour)
        calls, errors, timed, total_ms, last = (
            await conn.execute(
                select(
                    func.coalesce(func.sum(hourly.calls), 0),
                    func.coalesce(func.sum(hourly.errors), 0),
                    func.coalesce(func.sum(hourly.timed_calls), 0),
                    func.coalesce(func.sum(hourly.total_ms), 0.0),
                    func.max(_text(hourly.last_called)),
                ).where(hours)
            )
        ).one()
        blobs = (await conn.execute(select(hourly.latency_hist).where(hours))).scalars().all()
        return Usage(calls, errors, timed, total_ms, parse_sqlite_time(last), merge_dense(blobs))

    async def _scope_usage(
        self, conn: AsyncConnection, plan: _Plan, scopes: Sequence[str]
    ) -> dict[str, Usage]:
        """Each scope's totals and histogram over the plan's whole hours."""
        result = {scope: Usage() for scope in scopes}
        if plan.first_hour >= plan.end_hour:
            return result
        before = await self._scope_rows(conn, scopes, plan.first_hour)
        after = await self._scope_rows(conn, scopes, None if plan.live else plan.end_hour)
        for scope in scopes:
            if scope in after:
                result[scope] = after[scope].since(before.get(scope, _Running()))
        return result

    async def _scope_rows(
        self, conn: AsyncConnection, scopes: Sequence[str], before_hour: int | None
    ) -> dict[str, _Running]:
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
                *(hourly[name] for name in _RUNNING),
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
            row[0]: _Running(_running(*row[1:6]), RunningHistogram.decode(row[6]))
            for row in (await conn.execute(query)).all()
            if row[1] is not None
        }

    async def _scope_running_at(
        self, conn: AsyncConnection, scope: str, boundaries: Sequence[int], *, hist: bool = True
    ) -> dict[int, _Running]:
        """A scope's running totals before each boundary hour (hours list, then a few rows)."""
        hourly = _scope_hours.c
        low, high = min(boundaries), max(boundaries)
        hours = sorted(
            (
                await conn.execute(
                    select(hourly.hour).where(
                        hourly.scope == scope, hourly.hour >= low, hourly.hour < high
                    )
                )
            )
            .scalars()
            .all()
        )
        previous = (
            await conn.execute(
                select(func.max(hourly.hour)).where(hourly.scope == scope, hourly.hour < low)
            )
        ).scalar()
        picks: dict[int, int | None] = {}
        for boundary in boundaries:
            position = bisect_left(hours, boundary)
            picks[boundary] = hours[position - 1] if position > 0 else previous
        wanted = sorted({hour for hour in picks.values() if hour is not None})
        rows: dict[int, _Running] = {}
        if wanted:
            columns = [hourly.hour, *(hourly[name] for name in _RUNNING), _text(hourly.last_called)]
            if hist:
                columns.append(hourly.cum_latency_hist)
            for row in (
                await conn.execute(
                    select(*columns).where(hourly.scope == scope, hourly.hour.in_(wanted))
                )
            ).all():
                running = RunningHistogram.decode(row[6]) if hist else RunningHistogram()
                rows[row[0]] = _Running(_running(*row[1:6]), running)
        return {
            boundary: rows[hour] if hour is not None else _Running()
            for boundary, hour in picks.items()
        }

    async def _raw_edges(
        self,
        conn: AsyncConnection,
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
            parts = await self._raw_edge(conn, low, high, server_id, tool_id, hist)
            for key, part in parts.items():
                usage = result.get(key)
                if usage is None:
                    usage = result[key] = Usage()
                usage.add(part, sign=sign)
        return result

    async def _raw_edge(
        self,
        conn: AsyncConnection,
        low: datetime,
        high: datetime,
        server_id: str | None,
        tool_id: str | None,
        hist: bool,
    ) -> dict[SeriesKey, Usage]:
        memo: dict[tuple[Any, ...], dict[SeriesKey, Usage]] = conn.info[_EDGES]
        memo_key = (low, high, server_id, tool_id, hist)
        if memo_key in memo:
            return memo[memo_key]
        # Without histograms, one group per series instead of one per series and bucket.
        bucket: Any = _usage.latency_bucket if hist else func.min(_usage.latency_bucket)
        query = (
            select(
                _usage.server_id,
                _usage.tool_id,
                _usage.tool_name,
                bucket,
                func.count(),
                func.sum(case((_usage.success.is_(True), 0), else_=1)),
                func.count(_usage.response_time_ms),
                func.coalesce(func.sum(_usage.response_time_ms), 0.0),
                func.max(_text(_usage.called_at)),
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
        for row in (await conn.execute(query)).all():
            key = (row[0] or "", row[1] or "", row[2])
            timed = row[6] if row[3] is not None else 0
            part = Usage(
                row[4],
                int(row[5] or 0),
                timed,
                float(row[7]) if timed else 0.0,
                parse_sqlite_time(row[8]),
                {row[3]: timed} if timed and hist else {},
            )
            usage = result.get(key)
            if usage is None:
                result[key] = part
            else:
                usage.add(part)
        memo[memo_key] = result
        return result


# ---- helpers ---------------------------------------------------------------------------------


@cache
def _series_window_query(live: bool) -> Any:
    """Every series with its running totals before `first_hour` and before `end_hour` (or its
    own newest running totals when the window ends now). Built once: it is the costliest
    statement to build, and only the hours change."""
    columns: list[Any] = [_series.id, _series.server_id, _series.tool_id, _series.tool_name]
    joined: Any = UsageSeries.__table__
    for name in ("first_hour", "end_hour"):
        if name == "end_hour" and live:
            columns += [*(_series[key] for key in _RUNNING), _text(_series.last_called)]
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
        columns += [*(rows.c[key] for key in _RUNNING), _text(rows.c.last_called)]
    # A series idle since before the window (and its raw edge's hour) needs no lookup.
    return (
        select(*columns).select_from(joined).where(_series.last_hour >= bindparam("first_hour") - 1)
    )


def _add_part(
    tools: dict[SeriesKey, Usage], scopes: dict[str, Usage], key: SeriesKey, part: Usage
) -> None:
    tool_part = part.copy()
    tool_part.hist = {}
    tools.setdefault(key, Usage()).add(tool_part)
    scopes[ALL_SCOPE].add(part)
    if key[0] in scopes:
        scopes[key[0]].add(part)


async def _tool_counts(
    conn: AsyncConnection, server_ids: Sequence[str] | None
) -> dict[str, tuple[int, int]]:
    query = select(
        ServerTool.server_id,
        func.count(),
        func.sum(case((ServerTool.enabled.is_(True), 1), else_=0)),
    ).group_by(ServerTool.server_id)
    if server_ids is not None:
        query = query.where(ServerTool.server_id.in_(server_ids))
    return {row[0]: (row[1], int(row[2] or 0)) for row in await conn.execute(query)}


async def _tool_rows(conn: AsyncConnection, tool_ids: set[str]) -> dict[str, tuple[bool, bool]]:
    if not tool_ids:
        return {}
    rows = await conn.execute(
        select(ServerTool.id, ServerTool.enabled, ServerTool.is_available).where(
            ServerTool.id.in_(tool_ids)
        )
    )
    return {row[0]: (row[1], row[2]) for row in rows}


def _tool_status(known: bool, enabled: bool, available: bool, *, gone: bool = False) -> str:
    if not known:
        return "unknown"
    if gone:
        return "deleted"
    if not enabled:
        return "disabled"
    return "available" if available else "unavailable"


async def _uptime(
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


def _server_metrics(
    server: Any,
    usage: Usage,
    counts: tuple[int, int],
    uptime: dict[str, float | None],
    plan: _Plan,
) -> ToolServerMetrics:
    values = percentiles(usage.hist)
    return ToolServerMetrics(
        server_id=server.id,
        server_name=server.name,
        status=server.status,
        total_tools=counts[0],
        enabled_tools=counts[1],
        total_calls=usage.calls,
        total_errors=usage.errors,
        success_rate=usage.success_rate,
        avg_response_time_ms=usage.avg_ms,
        last_activity=usage.last_called if usage.calls > 0 else None,
        uptime_percentage=uptime.get(server.id),
        p50_response_time_ms=values[50],
        p95_response_time_ms=values[95],
        p99_response_time_ms=values[99],
        period_start=plan.start,
        period_end=plan.end,
    )


def _tool_metrics(
    tool_id: str | None,
    tool_name: str,
    server_id: str | None,
    server_name: str | None,
    status: str,
    usage: Usage,
    last_day: Usage,
    plan: _Plan,
    *,
    hist: bool,
) -> ToolMetrics:
    values = percentiles(usage.hist) if hist else {50: None, 95: None, 99: None}
    return ToolMetrics(
        tool_id=tool_id,
        tool_name=tool_name,
        server_id=server_id,
        server_name=server_name,
        status=status,
        total_calls=usage.calls,
        total_errors=usage.errors,
        success_rate=usage.success_rate,
        avg_response_time_ms=usage.avg_ms,
        last_called=usage.last_called if usage.calls > 0 else None,
        calls_last_24h=last_day.calls,
        errors_last_24h=last_day.errors,
        p50_response_time_ms=values[50],
        p95_response_time_ms=values[95],
        p99_response_time_ms=values[99],
        period_start=plan.start,
        period_end=plan.end,
    )


def _point(start: datetime, end: datetime, usage: Usage) -> UsagePoint:
    return UsagePoint(
        start=start,
        end=end,
        calls=usage.calls,
        errors=usage.errors,
        avg_response_time_ms=usage.avg_ms,
        p95_response_time_ms=percentiles(usage.hist, (95,))[95],
    )
