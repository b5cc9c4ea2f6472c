"""What the dashboard's screens read, gathered from the operations facade in one place.

Screens call these from workers and get plain row models back; nothing here touches Textual's
widgets, SQL or MCP. The heavy reads go to `reads` (the facade's reader, on a thread of its
own where that helps); what needs the supervisor goes to the facade itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from app.core.errors import CallFailed, NotFound, NotRunning, Unavailable
from app.core.periods import PERIODS
from app.core.schemas import (
    ServerEventResponse,
    ServerRuntimeInfo,
    ServerToolResponse,
    ToolMetrics,
    ToolServerAnalytics,
    ToolServerResponse,
    UsageFigures,
    UsageTimeSeries,
)
from app.ops.protocol import Operations, ReadOperations
from widgets.event_log import EventRow
from widgets.health_pane import HealthInfo
from widgets.metric_sparklines import SeriesSet
from widgets.server_table import ServerRow
from widgets.tool_figures import ToolFigures
from widgets.tool_table import ToolRow

EVENT_PANE_LIMIT = 50
STDERR_PANE_LINES = 6
METRICS_MAX_AGE_S = 10.0
SPARK_BUCKETS = 24
TOOL_METRICS_CONCURRENCY = 4  # the analytics screen's top tools, each read on its own
TOP_N = 10
# How far back the health pane's memory and CPU sparklines reach.
PROCESS_HISTORY = timedelta(hours=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Overview:
    servers: list[ServerRow]
    responses: dict[str, ToolServerResponse]
    events: list[EventRow]
    system: SeriesSet | None = None
    complete: bool = True  # False for a first paint without usage figures

    @property
    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.servers:
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts


@dataclass(frozen=True)
class ServerDetail:
    server: ToolServerResponse
    tools: list[ToolRow]
    tool_responses: dict[str, ServerToolResponse]
    health: HealthInfo
    series: SeriesSet | None = None
    log_lines: list[str] = field(default_factory=list)
    runtime: ServerRuntimeInfo | None = None


def event_row(event: ServerEventResponse) -> EventRow:
    return EventRow(
        id=event.id,
        at=event.created_at,
        kind=event.kind,
        message=event.message,
        server_name=event.server_name,
        actor=event.actor,
    )


def server_target(server: ToolServerResponse) -> str:
    if server.transport == "stdio":
        return " ".join([server.command or "", *server.args]).strip()
    return f"{server.transport} {server.url or ''}".strip()


def server_reason(server: ToolServerResponse) -> str | None:
    """Why a server is in its state, in the words a person needs."""
    if server.disabled_reason:
        return server.disabled_reason
    if not server.enabled:
        return None  # a person disabled it: the status line says so
    if server.status == "error" and server.last_startup_error:
        return server.last_startup_error
    if server.consecutive_failures:
        return f"{server.consecutive_failures} failure(s) in a row"
    return None


class DeckData:
    """Reads for the screens, over one facade and its reader.

    Usage figures change slowly next to statuses, so they are cached for `metrics_max_age_s`
    and read again sooner only when the period changes: the refresh tick stays cheap with a
    thousand servers.
    """

    def __init__(
        self,
        ops: Operations,
        clock: Callable[[], datetime] = utcnow,
        *,
        fixed_clock: bool = False,
        metrics_max_age_s: float = METRICS_MAX_AGE_S,
        reads: ReadOperations | None = None,
        reuse_servers: bool = False,
    ) -> None:
        self.ops = ops
        self.reads = reads or ops
        self.reuse_servers = reuse_servers
        self.clock = clock
        # A fixed clock (tests, screenshots) asks for windows ending at its time, not now.
        self.fixed_clock = fixed_clock
        self.metrics_max_age_s = metrics_max_age_s
        self._server_metrics: _Cached[dict[str, UsageFigures]] = _Cached()
        self._system_series: _Cached[SeriesSet | None] = _Cached()
        self._detail_metrics: dict[str, _Cached[_DetailMetrics]] = {}
        self._process_history: dict[str, _Cached[_ProcessHistory]] = {}
        # The fleet list as last read, and how many changes had been announced when its read
        # began (None once it was shown again: see `_fleet`).
        self._servers: list[ToolServerResponse] | None = None
        self._servers_as_of: int | None = None
        self._announced = 0

    def servers_changed(self) -> None:
        """A change was announced (the facade's change bus): the next refresh reads the list.

        Only a deck that calls this for every announced change may reuse the list at all
        (`reuse_servers`); any thread may call it.
        """
        self._announced += 1

    def window(self, period: str) -> dict[str, Any]:
        """Keyword arguments naming the window of `period` for the facade's analytics."""
        if self.fixed_clock:
            return {"period": period, "end": self.clock()}
        return {"period": period}

    def invalidate(self) -> None:
        """Forget cached figures (after an action, so its effect shows at once)."""
        self._server_metrics = _Cached()
        self._system_series = _Cached()
        self._detail_metrics.clear()

    # ---- the main screen -----------------------------------------------------------------

    async def overview(self, period: str, *, quick: bool = False) -> Overview:
        """Servers, events and usage figures; `quick` leaves out figures not read yet (the
        first paint shows the fleet at once, its usage a moment later)."""
        if quick and not self._server_metrics.holds(period):
            servers, events = await asyncio.gather(
                self.reads.list_servers(), self.reads.list_events(limit=EVENT_PANE_LIMIT)
            )
            metrics: dict[str, UsageFigures] = {}
            system = None
        else:
            reading_figures = not self._server_metrics.fresh(period, self.metrics_max_age_s)
            servers, events, metrics, system = await asyncio.gather(
                self._fleet(reuse=reading_figures),
                self.reads.list_events(limit=EVENT_PANE_LIMIT),
                self._server_metrics.get(period, self.metrics_max_age_s, self._read_metrics),
                self._system_series.get(period, self.metrics_max_age_s, self._read_system_series),
            )
        # A thousand row models are CPU work: made on a thread of their own, they leave the
        # app's loop free to answer keys meanwhile.
        rows = await asyncio.to_thread(
            lambda: [self.server_row(server, metrics.get(server.id)) for server in servers]
        )
        return Overview(
            servers=rows,
            responses={server.id: server for server in servers},
            events=[event_row(event) for event in events],
            system=system,
            complete=not quick or self._server_metrics.holds(period),
        )

    async def _fleet(self, *, reuse: bool) -> list[ToolServerResponse]:
        """The fleet list; on a tick that reads the usage figures, the one read by the tick
        before, if no change was announced since.

        The list and the figures are the two heaviest reads of a refresh: never both in the
        same tick, a tick stays well within its interval at a thousand servers. The list is
        then never older than one tick: what the change bus does not announce (a health
        check's time, a write by another process) shows a tick later, never more.
        """
        shown = self._servers
        if reuse and self.reuse_servers and shown is not None:
            if self._servers_as_of == self._announced:
                self._servers_as_of = None  # never twice in a row
                return shown
        # Counted before reading: a change announced while the read is under way is not lost.
        as_of = self._announced
        servers = await self.reads.list_servers()
        self._servers, self._servers_as_of = servers, as_of
        return servers

    async def _read_metrics(self, period: str) -> dict[str, UsageFigures]:
        # The fleet's figures alone: the whole system view (top tools, calendar, uptime)
        # would cost a thousand servers' worth of reads on every refresh.
        figures = await self.reads.servers_figures(**self.window(period))
        return {server.id: server for server in figures}

    async def _read_system_series(self, period: str) -> SeriesSet | None:
        return await self.series(None, period)

    async def series(self, server_id: str | None, period: str) -> SeriesSet | None:
        series = await self.reads.time_series(
            server_id, buckets=SPARK_BUCKETS, **self.window(period)
        )
        return series_set(series)

    def server_row(
        self, server: ToolServerResponse, metrics: UsageFigures | None = None
    ) -> ServerRow:
        return ServerRow(
            key=server.id,
            name=server.name,
            status=server.status,
            enabled=server.enabled,
            tools_enabled=server.enabled_tools_count,
            tools_total=server.tools_count,
            calls=metrics.calls if metrics else None,
            errors=metrics.errors if metrics else None,
            success_rate=metrics.success_rate if metrics else None,
            p95_ms=metrics.p95_response_time_ms if metrics else None,
            last_health_check=server.last_health_check,
            up_since=server.last_startup_success,
            disabled_reason=server.disabled_reason,
            display_name=server.display_name,
            description=server.description,
            is_builtin=server.is_builtin,
        )

    async def detail(self, server_id: str, period: str) -> ServerDetail:
        cached = self._detail_metrics.setdefault(server_id, _Cached())
        # Sampled once a minute: read again no more often than the usage figures.
        history = self._process_history.setdefault(server_id, _Cached())
        server, tools, log_lines, runtime, usage, process = await asyncio.gather(
            self.reads.get_server(server_id),
            self.reads.list_tools(server_id),
            self.log_tail(server_id, STDERR_PANE_LINES),
            self.runtime_info(server_id),
            cached.get(
                period,
                self.metrics_max_age_s,
                lambda chosen: self._read_detail_metrics(server_id, chosen),
            ),
            history.get("", self.metrics_max_age_s, lambda _: self.process_history(server_id)),
        )
        return ServerDetail(
            server=server,
            tools=[self.tool_row(tool, usage.tools.get(tool.id)) for tool in tools],
            tool_responses={tool.id: tool for tool in tools},
            health=self.health_info(server, log_lines, runtime, process),
            series=usage.series,
            log_lines=log_lines,
            runtime=runtime,
        )

    async def _read_detail_metrics(self, server_id: str, period: str) -> _DetailMetrics:
        figures, series = await asyncio.gather(
            self.reads.tools_figures(server_id, **self.window(period)),
            self.series(server_id, period),
        )
        return _DetailMetrics({tool.id: tool for tool in figures}, series)

    def tool_row(self, tool: ServerToolResponse, metrics: UsageFigures | None = None) -> ToolRow:
        if metrics is not None:
            return ToolRow(
                key=tool.id,
                name=tool.name,
                enabled=tool.enabled,
                available=tool.is_available,
                bypass=tool.bypass_when_unavailable,
                calls=metrics.calls,
                errors=metrics.errors,
                mean_ms=metrics.avg_response_time_ms,
                p95_ms=metrics.p95_response_time_ms,
                last_called=metrics.last_called or tool.last_called,
                description=tool.description,
            )
        # Without analytics, the tool's lifetime counters are the best there is.
        return ToolRow(
            key=tool.id,
            name=tool.name,
            enabled=tool.enabled,
            available=tool.is_available,
            bypass=tool.bypass_when_unavailable,
            calls=tool.total_calls,
            errors=tool.total_errors,
            mean_ms=tool.avg_response_time_ms,
            last_called=tool.last_called,
            description=tool.description,
        )

    async def process_history(self, server_id: str) -> _ProcessHistory:
        """The last hour of the server's memory and CPU samples, oldest first."""
        start = self.clock() - PROCESS_HISTORY
        try:
            history = await self.ops.process_history(server_id, start.isoformat())
        except NotFound:
            return _ProcessHistory()
        samples = history.samples
        return _ProcessHistory(
            rss=tuple(float(s.rss_bytes) for s in samples if s.rss_bytes is not None),
            cpu=tuple(s.cpu_percent for s in samples if s.cpu_percent is not None),
        )

    async def runtime_info(self, server_id: str) -> ServerRuntimeInfo | None:
        """What the supervisor knows of the process; None without a supervisor."""
        if not self.ops.supervised:
            return None
        try:
            return await self.ops.runtime_info(server_id)
        except (NotRunning, NotFound):
            return None

    def health_info(
        self,
        server: ToolServerResponse,
        log_lines: list[str],
        runtime: ServerRuntimeInfo | None = None,
        process: _ProcessHistory | None = None,
    ) -> HealthInfo:
        reason = server_reason(server)
        if runtime is not None and runtime.next_retry_at is not None and server.enabled:
            wait = max(0, int((runtime.next_retry_at - self.clock()).total_seconds()))
            reason = f"{reason or runtime.last_error or 'failed'}; retry in {wait}s"
        return HealthInfo(
            name=server.name,
            status=server.status,
            enabled=server.enabled,
            reason=reason,
            pid=runtime.pid if runtime else None,
            rss_bytes=runtime.rss_bytes if runtime else None,
            cpu_percent=runtime.cpu_percent if runtime else None,
            failures=server.consecutive_failures,
            max_failures=server.max_failures,
            last_check=server.last_health_check,
            last_latency_ms=runtime.latency_ms if runtime else None,
            last_startup_error=server.last_startup_error,
            stderr_tail=tuple(log_lines),
            target=server_target(server),
            rss_history=process.rss if process else (),
            cpu_history=process.cpu if process else (),
        )

    # ---- other screens -------------------------------------------------------------------

    async def analytics(self, period: str) -> AnalyticsView:
        """System-wide figures for the analytics screen, with the tools' own figures."""
        window = self.window(period)
        view, series = await asyncio.gather(
            self.reads.analytics(**window),
            self.reads.time_series(None, buckets=PERIODS[period].chart_buckets, **window),
        )
        tools = await self._tool_figures(view, window)
        return analytics_view(period, view, series, tools)

    async def _tool_figures(
        self, view: ToolServerAnalytics, window: dict[str, Any]
    ) -> list[ToolFigures]:
        """The most called tools and the failing ones, with their percentiles (the system
        view leaves those out of its lists; each tool's own read has them)."""
        chosen: dict[str, ToolMetrics] = {}
        for tool in [*view.top_tools, *view.failing_tools]:
            chosen.setdefault(tool.tool_id or f"{tool.server_name}/{tool.tool_name}", tool)
        limit = asyncio.Semaphore(TOOL_METRICS_CONCURRENCY)

        async def detailed(tool: ToolMetrics) -> ToolMetrics:
            if tool.tool_id is None:  # a deleted tool: its counts are all there is
                return tool
            async with limit:
                try:
                    return await self.reads.tool_metrics(tool.tool_id, **window)
                except NotFound:
                    return tool

        answers = await asyncio.gather(*(detailed(tool) for tool in chosen.values()))
        return [
            tool_figures(key, summary, answer)
            for (key, summary), answer in zip(chosen.items(), answers, strict=True)
        ]

    async def log_tail(self, server_id: str, lines: int) -> list[str]:
        """The server's last stderr lines; none when it has no log (yet)."""
        # The supervisor keeps the live tail on the app's loop: ask it there.
        source = self.ops if self.ops.supervised else self.reads
        try:
            return await source.log_tail(server_id, lines)
        except (NotRunning, NotFound):
            return []
        except (Unavailable, CallFailed) as exc:
            # The log is on another node that cannot answer now: say so in the pane.
            return [f"({exc})"]


def series_set(series: UsageTimeSeries) -> SeriesSet:
    points = series.points
    calls = sum(point.calls for point in points)
    errors = sum(point.errors for point in points)
    p95s = [point.p95_response_time_ms for point in points if point.p95_response_time_ms]
    return SeriesSet(
        calls=tuple(float(point.calls) for point in points),
        errors=tuple(float(point.errors) for point in points),
        p95=tuple(float(point.p95_response_time_ms or 0.0) for point in points),
        total_calls=calls,
        total_errors=errors,
        # The sparkline's summary is the worst bucket: a tail to look into, not an average.
        p95_ms=max(p95s) if p95s else None,
    )


def bucket_label(start: datetime, bucket_seconds: int, span_seconds: int) -> str:
    """A bucket's start as an axis label: a time within a day, a date and time over days of
    sub-day buckets (the 7-day view's hours repeat every day), a date for day buckets."""
    if bucket_seconds >= 86_400:
        return start.strftime("%b %d")
    if span_seconds > 86_400:
        return start.strftime("%b %d %H:%M")
    return start.strftime("%H:%M")


def tool_figures(key: str, summary: ToolMetrics, detail: ToolMetrics) -> ToolFigures:
    return ToolFigures(
        key=key,
        name=f"{summary.server_name or '?'}/{summary.tool_name}",
        calls=summary.total_calls,
        errors=summary.total_errors,
        success_rate=summary.success_rate,
        mean_ms=detail.avg_response_time_ms,
        p50_ms=detail.p50_response_time_ms,
        p95_ms=detail.p95_response_time_ms,
    )


def analytics_view(
    period: str,
    view: ToolServerAnalytics,
    series: UsageTimeSeries,
    tools: list[ToolFigures] | None = None,
) -> AnalyticsView:
    points = series.points
    top = [
        (f"{tool.server_name}/{tool.tool_name}", float(tool.total_calls)) for tool in view.top_tools
    ]
    failing = [
        (f"{tool.server_name}/{tool.tool_name}", 1.0 - (tool.success_rate or 0.0))
        for tool in view.failing_tools
    ]
    failing.sort(key=lambda pair: pair[1], reverse=True)
    calls = sum(point.calls for point in points)
    errors = sum(point.errors for point in points)
    return AnalyticsView(
        period=period,
        total_calls=calls,
        total_errors=errors,
        success_rate=view.overall_success_rate,
        mean_ms=view.avg_response_time_ms,
        p95_ms=view.p95_response_time_ms,
        top_tools=top[:TOP_N],
        failing_tools=failing[:TOP_N],
        bucket_labels=[
            bucket_label(point.start, series.bucket_seconds, series.bucket_seconds * len(points))
            for point in points
        ],
        calls=[float(point.calls) for point in points],
        errors=[float(point.errors) for point in points],
        latency={
            "p50": [point.p50_response_time_ms for point in points],
            "p95": [point.p95_response_time_ms for point in points],
            "p99": [point.p99_response_time_ms for point in points],
        },
        tools=tools or [],
    )


ValueT = TypeVar("ValueT")


class _Cached(Generic[ValueT]):
    """One value per period, read again when older than a maximum age (monotonic time)."""

    def __init__(self) -> None:
        self._period: str | None = None
        self._at = 0.0
        self._value: ValueT | None = None

    def holds(self, period: str) -> bool:
        return self._period == period and self._value is not None

    def fresh(self, period: str, max_age_s: float) -> bool:
        """Whether `get` would answer without reading."""
        return self.holds(period) and time.monotonic() - self._at <= max_age_s

    async def get(
        self, period: str, max_age_s: float, read: Callable[[str], Awaitable[ValueT]]
    ) -> ValueT:
        now = time.monotonic()
        if not self.fresh(period, max_age_s):
            self._value = await read(period)
            self._period, self._at = period, now
        return self._value


@dataclass(frozen=True)
class _ProcessHistory:
    rss: tuple[float, ...] = ()
    cpu: tuple[float, ...] = ()


@dataclass(frozen=True)
class _DetailMetrics:
    tools: dict[str, UsageFigures]
    series: SeriesSet | None


@dataclass(frozen=True)
class AnalyticsView:
    """The analytics screen's figures for one period."""

    period: str
    total_calls: int | None = None
    total_errors: int | None = None
    success_rate: float | None = None
    mean_ms: float | None = None
    p95_ms: float | None = None
    top_tools: list[tuple[str, float]] = field(default_factory=list)
    failing_tools: list[tuple[str, float]] = field(default_factory=list)
    bucket_labels: list[str] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    latency: dict[str, list[float | None]] = field(default_factory=dict)
    tools: list[ToolFigures] = field(default_factory=list)
    available: bool = True  # False when this core has no analytics at all
