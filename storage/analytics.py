"""Usage analytics over any window: server metrics, tool metrics, the system view, time series.

Each answer is planned (storage.windows), read from the rollups and the raw rows in one snapshot
(storage.rollup_reader), and built into the schema models the faces return.

Every count is exact. Percentiles come from merged latency histograms (storage.latency): their
rank is exact and their value is within ±1 % of the exact percentile of the raw rows — never an
average of per-hour percentiles. A window that starts before the raw-row retention horizon
starts at the whole hour, and the window reported back (`period_start`) says so.

All times are UTC; "today", "week" and "month" are the UTC calendar day, the ISO week (from
Monday) and the calendar month, each up to now.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.periods import DEFAULT_BUCKETS, MAX_BUCKETS
from app.core.schemas import (
    ToolMetrics,
    ToolServerAnalytics,
    ToolServerMetrics,
    UsageFigures,
    UsagePoint,
    UsageTimeSeries,
)
from storage.db import Database
from storage.latency import percentiles
from storage.models import ServerTool, ToolServer
from storage.rollup_reader import RollupReader, read_rollups
from storage.uptime import uptime
from storage.usage_math import (
    ALL_SCOPE,
    HOUR_S,
    SeriesKey,
    Usage,
    hour_of,
    hour_start,
    parse_sqlite_time,
)
from storage.windows import Window, WindowPlan, ceil_hour, make_window, plan_window

TOP_TOOLS = 10
# Up to this long, a time series is cut from the raw rows (buckets shorter than an hour);
# beyond it, from the rollups in whole hours.
RAW_SERIES_MAX = timedelta(hours=6)
ACTIVE_STATUSES = ("running", "degraded")

# A time series' span as covered (start, end), its bucket width in seconds, and its points.
_Points = tuple[datetime, datetime, int, list[UsagePoint]]


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

    def plan(self, window: Window, now: datetime) -> WindowPlan:
        return plan_window(window, now - self.raw_retention)

    # ---- server metrics ------------------------------------------------------------------

    async def server_metrics(self, server_id: str, window: Window) -> ToolServerMetrics:
        now = self.clock()
        plan = self.plan(window, now)
        async with read_rollups(self.db) as reader:
            server = (
                await reader.conn.execute(
                    select(ToolServer.id, ToolServer.name, ToolServer.status).where(
                        ToolServer.id == server_id
                    )
                )
            ).one()
            usage = (await reader.scope_usage(plan, [server_id]))[server_id]
            for key, part in (await reader.raw_edges(plan.edges, server_id=server_id)).items():
                if key[0] == server_id:
                    usage.add(part)
            counts = await _tool_counts(reader.conn, [server_id])
            uptimes = await uptime(reader.conn, [server_id], plan.start, plan.end)
        return _server_metrics(server, usage, counts.get(server_id, (0, 0)), uptimes, plan)

    # ---- figures for tables: every server, or every tool of one server -------------------

    async def servers_figures(self, window: Window) -> list[UsageFigures]:
        """Each server's usage, from its scope's running totals: two lookups per server and
        the raw rows of the window's edges, however many tools and calls."""
        plan = self.plan(window, self.clock())
        async with read_rollups(self.db) as reader:
            servers = (
                await reader.conn.execute(
                    select(ToolServer.id, ToolServer.name).order_by(ToolServer.name)
                )
            ).all()
            scopes = await reader.scope_usage(plan, [server.id for server in servers])
            for key, part in (await reader.raw_edges(plan.edges)).items():
                if key[0] in scopes:
                    scopes[key[0]].add(part)
        return [_figures(server.id, server.name, scopes[server.id]) for server in servers]

    async def tools_figures(self, server_id: str, window: Window) -> list[UsageFigures]:
        """The usage of each tool of one server (those it lists now), by name."""
        plan = self.plan(window, self.clock())
        async with read_rollups(self.db) as reader:
            tools = (
                await reader.conn.execute(
                    select(ServerTool.id, ServerTool.name)
                    .where(ServerTool.server_id == server_id)
                    .order_by(ServerTool.name)
                )
            ).all()
            usage = await reader.server_tools_hours_usage(server_id, plan.first_hour, plan.end_hour)
            edges = await reader.raw_edges(plan.edges, server_id=server_id)
            for key, part in edges.items():
                usage.setdefault(key[1], Usage()).add(part)
        return [_figures(tool.id, tool.name, usage.get(tool.id, Usage())) for tool in tools]

    # ---- tool metrics --------------------------------------------------------------------

    async def tool_metrics(self, tool_id: str, window: Window) -> ToolMetrics:
        now = self.clock()
        plan = self.plan(window, now)
        day = self.plan(make_window("24h", now=now), now)
        async with read_rollups(self.db) as reader:
            tool = (
                await reader.conn.execute(
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
            usage = await reader.tool_hours_usage(tool_id, plan.first_hour, plan.end_hour)
            for part in (await reader.raw_edges(plan.edges, tool_id=tool_id)).values():
                usage.add(part)
            last_day = Usage()
            by_series, _ = await reader.series_usage(day, tool_id=tool_id)
            for part in by_series.values():
                last_day.add(part)
            for part in (await reader.raw_edges(day.edges, tool_id=tool_id)).values():
                last_day.add(part)
        status = _tool_status(True, tool.enabled, tool.is_available)
        return _tool_metrics(
            tool.id, tool.name, tool.server_id, tool[5], status, usage, last_day, plan, hist=True
        )

    # ---- the system view -----------------------------------------------------------------

    async def system(self, window: Window) -> ToolServerAnalytics:
        now = self.clock()
        plan = self.plan(window, now)
        async with read_rollups(self.db) as reader:
            servers = (
                await reader.conn.execute(
                    select(ToolServer.id, ToolServer.name, ToolServer.status).order_by(
                        ToolServer.name
                    )
                )
            ).all()
            server_ids = [server.id for server in servers]
            counts = await _tool_counts(reader.conn, None)
            tools, last_seen = await reader.series_usage(plan)
            scopes = await reader.scope_usage(plan, [ALL_SCOPE, *server_ids])
            for key, part in (await reader.raw_edges(plan.edges)).items():
                _add_part(tools, scopes, key, part)
            uptimes = await uptime(reader.conn, server_ids, plan.start, plan.end)
            calendar, daily = await self._calendar_and_daily(reader, plan, now)
            listed = self._top_and_failing(tools)
            last_day = await self._last_day(
                reader, now, {key: last_seen.get(key, (None, None))[0] for key, _ in listed}
            )
            tool_rows = await _tool_rows(reader.conn, {key[1] for key, _ in listed if key[1]})

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
            total_refused=overall.refused,
            total_cancelled=overall.cancelled,
            server_metrics=[
                _server_metrics(
                    server, scopes[server.id], counts.get(server.id, (0, 0)), uptimes, plan
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
        self, reader: RollupReader, now: datetime, ids: dict[SeriesKey, int | None]
    ) -> dict[SeriesKey, Usage]:
        keys = set(ids)
        if not keys:
            return {}
        day = self.plan(make_window("24h", now=now), now)
        wanted = [series_id for series_id in ids.values() if series_id is not None]
        usage, _ = await reader.series_usage(day, series_ids=wanted)
        for key, part in (await reader.raw_edges(day.edges, hist=False)).items():
            if key in keys:
                usage.setdefault(key, Usage()).add(part)
        return usage

    async def _calendar_and_daily(
        self, reader: RollupReader, plan: WindowPlan, now: datetime
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
        running = await reader.scope_running_at(ALL_SCOPE, sorted(boundaries), hist=False)
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
            for part in (await reader.raw_edges([edge])).values():
                day_usage.add(part)
        return calendar, daily

    # ---- time series ---------------------------------------------------------------------

    async def time_series(
        self, server_id: str | None, window: Window, buckets: int = DEFAULT_BUCKETS
    ) -> UsageTimeSeries:
        buckets = max(1, min(buckets, MAX_BUCKETS))
        async with read_rollups(self.db) as reader:
            name = None
            if server_id is not None:
                query = select(ToolServer.name).where(ToolServer.id == server_id)
                name = (await reader.conn.execute(query)).scalar_one()
            if window.end - window.start <= RAW_SERIES_MAX:
                series = await self._raw_points(reader, server_id, window, buckets)
            else:
                series = await self._hourly_points(reader, server_id, window, buckets)
        start, end, bucket_seconds, points = series
        return UsageTimeSeries(
            server_id=server_id,
            server_name=name,
            period_start=start,
            period_end=end,
            bucket_seconds=bucket_seconds,
            points=points,
        )

    @staticmethod
    async def _raw_points(
        reader: RollupReader, server_id: str | None, window: Window, buckets: int
    ) -> _Points:
        width = (window.end - window.start) / buckets
        usages = await reader.raw_buckets(window.start, window.end, buckets, server_id)
        points = [
            _point(window.start + width * index, window.start + width * (index + 1), usage)
            for index, usage in enumerate(usages)
        ]
        return window.start, window.end, max(1, round(width.total_seconds())), points

    @staticmethod
    async def _hourly_points(
        reader: RollupReader, server_id: str | None, window: Window, buckets: int
    ) -> _Points:
        # Whole-hour buckets ending with the hour that holds the window's end.
        end_hour = hour_of(window.end) + 1 if window.live else ceil_hour(window.end)
        hours = max(1, math.ceil((window.end - window.start) / timedelta(hours=1)))
        width = max(1, math.ceil(hours / buckets))
        count = math.ceil(hours / width)
        first_hour = end_hour - count * width
        boundaries = [first_hour + index * width for index in range(count + 1)]
        scope = ALL_SCOPE if server_id is None else server_id
        running = await reader.scope_running_at(scope, boundaries)
        points = [
            _point(hour_start(low), hour_start(high), running[high].since(running[low]))
            for low, high in pairwise(boundaries)
        ]
        return hour_start(first_hour), hour_start(end_hour), width * HOUR_S, points


# ---- helpers ---------------------------------------------------------------------------------


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


def _server_metrics(
    server: Any,
    usage: Usage,
    counts: tuple[int, int],
    uptimes: dict[str, float | None],
    plan: WindowPlan,
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
        total_refused=usage.refused,
        total_cancelled=usage.cancelled,
        success_rate=usage.success_rate,
        avg_response_time_ms=usage.avg_ms,
        last_activity=usage.last_called if usage.calls > 0 else None,
        uptime_percentage=uptimes.get(server.id),
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
    plan: WindowPlan,
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
        total_refused=usage.refused,
        total_cancelled=usage.cancelled,
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


def _usage_fields(usage: Usage) -> dict[str, Any]:
    """A usage's counts, mean and percentiles, under the names the schemas give them."""
    values = percentiles(usage.hist)
    return {
        "calls": usage.calls,
        "errors": usage.errors,
        "refused": usage.refused,
        "cancelled": usage.cancelled,
        "avg_response_time_ms": usage.avg_ms,
        "p50_response_time_ms": values[50],
        "p95_response_time_ms": values[95],
        "p99_response_time_ms": values[99],
    }


def _figures(id: str, name: str, usage: Usage) -> UsageFigures:
    return UsageFigures(
        id=id,
        name=name,
        success_rate=usage.success_rate,
        last_called=usage.last_called if usage.calls > 0 else None,
        **_usage_fields(usage),
    )


def _point(start: datetime, end: datetime, usage: Usage) -> UsagePoint:
    return UsagePoint(start=start, end=end, **_usage_fields(usage))
