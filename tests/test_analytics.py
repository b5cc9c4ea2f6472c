"""Analytics: hand-built datasets with hand-checked answers, window edges, uptime from events,
percentiles against exact values from the raw rows, windows past the raw-row retention."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from app.core.errors import InvalidInput
from app.core.settings import Settings
from app.core.usage_record import UsageRecord
from app.ops.facade import LocalOperations
from app.runtime.usage import UsageRecorder
from storage.analytics import UsageAnalytics
from storage.latency import (
    RELATIVE_ERROR,
    RunningHistogram,
    bucket_of,
    encode_dense,
    percentiles,
    rank,
)
from storage.models import ServerEvent, ServerTool, ToolServer, ToolUsage
from storage.retention import prune_old_rows
from storage.windows import make_window

# A Wednesday: today began at 00:00, the week on Monday 16th, the month on the 1st.
pytestmark = pytest.mark.both_backends

NOW = datetime(2026, 3, 18, 12, 30, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@dataclass
class Fleet:
    alpha: str
    beta: str
    add: tuple[str, str, str]
    mul: tuple[str, str, str]
    search: tuple[str, str, str]


async def make_fleet(ops: LocalOperations) -> Fleet:
    ids = {}
    for name, created in (("alpha", NOW - 30 * 24 * HOUR), ("beta", NOW - 6 * HOUR)):
        server = await ops.create_server({"name": name, "command": "x"}, actor="test")
        ids[name] = server.id
        async with ops.db.session() as session:
            await session.execute(
                update(ToolServer).where(ToolServer.id == server.id).values(created_at=created)
            )
    tools = {}
    async with ops.db.session() as session:
        for server, name, enabled in (
            ("alpha", "add", True),
            ("alpha", "mul", True),
            ("beta", "search", False),
        ):
            tool = ServerTool(
                server_id=ids[server], name=name, enabled=enabled, is_available=enabled
            )
            session.add(tool)
            await session.flush()
            tools[name] = (ids[server], tool.id, name)
    return Fleet(ids["alpha"], ids["beta"], tools["add"], tools["mul"], tools["search"])


def call(
    tool: tuple[str, str, str], at: datetime, ms: float | None, ok: bool = True
) -> UsageRecord:
    server_id, tool_id, name = tool
    return UsageRecord(
        server_id, tool_id, name, at, ms, ok, None if ok else f"{name} failed", "api"
    )


async def record(ops: LocalOperations, settings: Settings, calls: list[UsageRecord]) -> None:
    async with UsageRecorder(ops.db, settings) as recorder:
        for item in calls:
            recorder.record(item)


def analytics_at(ops: LocalOperations, now: datetime = NOW, **overrides: object) -> UsageAnalytics:
    options: dict[str, object] = {
        "raw_retention_days": 90,
        "failing_error_rate": 0.2,
        "failing_min_calls": 5,
        **overrides,
    }
    return UsageAnalytics(ops.db, clock=lambda: now, **options)  # type: ignore[arg-type]


def window(period: str = "24h", start: datetime | None = None, end: datetime | None = None):  # type: ignore[no-untyped-def]
    return make_window(period, start, end, now=NOW)


@pytest.fixture
async def fleet(ops: LocalOperations, settings: Settings) -> Fleet:
    """The hand-checked dataset (times relative to NOW = 2026-03-18 12:30 UTC)."""
    fleet = await make_fleet(ops)
    day = 24 * HOUR
    await record(
        ops,
        settings,
        [
            call(fleet.add, NOW - 10 * MIN, 10),  # a1 12:20 today
            call(fleet.add, NOW - 2 * HOUR, 20),  # a2 10:30 today
            call(fleet.add, NOW - day + 30 * MIN, 30, ok=False),  # a3 17th 13:00 (an hour edge)
            call(fleet.add, NOW - day - 30 * MIN, 40),  # a4 17th 12:00, before the 24h window
            call(fleet.add, datetime(2026, 3, 16, 9, tzinfo=UTC), 50),  # a5 Monday
            call(fleet.add, datetime(2026, 3, 10, 8, tzinfo=UTC), 60, ok=False),  # a6 last week
            call(fleet.add, datetime(2026, 2, 27, 10, tzinfo=UTC), 70),  # a7 last month
            call(fleet.mul, NOW - 5 * MIN, 5, ok=False),  # m1 12:25 today
            call(fleet.mul, NOW - day - timedelta(seconds=1), 100),  # m2 just outside 24h
            call(fleet.mul, NOW - day, 200),  # m3 exactly at the 24h window's start
            call(fleet.search, NOW - HOUR, None, ok=False),  # s1 refused: no duration
            call(fleet.search, datetime(2026, 3, 18, tzinfo=UTC), 8),  # s2 at midnight
        ],
    )
    return fleet


def near(value: float | None, exact: float) -> bool:
    return value is not None and abs(value - exact) <= RELATIVE_ERROR * exact + 1e-9


async def test_server_metrics_over_24h_count_exactly_the_window(
    ops: LocalOperations, fleet: Fleet
) -> None:
    alpha = await analytics_at(ops).server_metrics(fleet.alpha, window("24h"))
    # a1 a2 a3 m1 m3: a4 and m2 are before the window's start, m3 is on it.
    assert (alpha.total_calls, alpha.total_errors) == (5, 2)
    assert alpha.success_rate == pytest.approx(0.6)
    assert alpha.avg_response_time_ms == pytest.approx((10 + 20 + 30 + 5 + 200) / 5)
    assert alpha.last_activity == NOW - 5 * MIN
    # Nearest rank over 5, 10, 20, 30, 200.
    assert near(alpha.p50_response_time_ms, 20)
    assert near(alpha.p95_response_time_ms, 200)
    assert near(alpha.p99_response_time_ms, 200)
    assert (alpha.server_name, alpha.status, alpha.total_tools, alpha.enabled_tools) == (
        "alpha",
        "stopped",
        2,
        2,
    )
    assert (alpha.period_start, alpha.period_end) == (NOW - 24 * HOUR, NOW)

    beta = await analytics_at(ops).server_metrics(fleet.beta, window("24h"))
    # The refused call counts as a call and an error but has no latency.
    assert (beta.total_calls, beta.total_errors, beta.success_rate) == (2, 1, 0.5)
    assert beta.avg_response_time_ms == 8
    assert near(beta.p50_response_time_ms, 8) and near(beta.p99_response_time_ms, 8)
    assert (beta.total_tools, beta.enabled_tools) == (1, 0)


async def test_tool_metrics_over_7d_with_their_last_24_hours(
    ops: LocalOperations, fleet: Fleet
) -> None:
    add = await analytics_at(ops).tool_metrics(fleet.add[1], window("7d"))
    # a1..a5; a6 (10th 08:00) is before the 7 days (11th 12:30).
    assert (add.total_calls, add.total_errors) == (5, 1)
    assert add.avg_response_time_ms == pytest.approx(30)
    assert near(add.p50_response_time_ms, 30) and near(add.p95_response_time_ms, 50)
    assert (add.calls_last_24h, add.errors_last_24h) == (3, 1)
    assert add.last_called == NOW - 10 * MIN
    assert (add.tool_name, add.server_name, add.status) == ("add", "alpha", "available")

    search = await analytics_at(ops).tool_metrics(fleet.search[1], window("1h"))
    assert (search.total_calls, search.total_errors, search.status) == (1, 1, "disabled")
    assert search.p50_response_time_ms is None and search.avg_response_time_ms is None


async def test_the_system_view_answers_every_field(ops: LocalOperations, fleet: Fleet) -> None:
    view = await analytics_at(ops).system(window("7d"))
    assert (view.total_servers, view.active_servers) == (2, 0)
    assert (view.total_tools, view.enabled_tools) == (3, 2)
    # today: a1 a2 m1 s1 s2 (s2 at midnight is today); week from Monday adds a3 a4 a5 m2 m3;
    # month adds a6; a7 is February.
    assert (view.total_calls_today, view.total_errors_today) == (5, 2)
    assert (view.total_calls_week, view.total_calls_month) == (10, 11)
    # The 7 days: a1..a5, m1..m3, s1, s2.
    assert view.overall_success_rate == pytest.approx(7 / 10)
    timed = [10, 20, 30, 40, 50, 5, 100, 200, 8]
    assert view.avg_response_time_ms == pytest.approx(sum(timed) / len(timed))
    assert near(view.p95_response_time_ms, 200)
    assert [m.server_name for m in view.server_metrics] == ["alpha", "beta"]
    assert [m.total_calls for m in view.server_metrics] == [8, 2]
    assert [(t.tool_name, t.total_calls) for t in view.top_tools] == [
        ("add", 5),
        ("mul", 3),
        ("search", 2),
    ]
    assert [t.last_called for t in view.top_tools] == [NOW - 10 * MIN, NOW - 5 * MIN, NOW - HOUR]
    assert [(t.calls_last_24h, t.errors_last_24h) for t in view.top_tools] == [
        (3, 1),
        (2, 1),
        (2, 1),
    ]
    # add: 1 error in 5 calls is exactly the 20 % threshold with the 5 calls needed.
    assert [t.tool_name for t in view.failing_tools] == ["add"]
    assert view.daily_usage == {
        "2026-03-11": 0,
        "2026-03-12": 0,
        "2026-03-13": 0,
        "2026-03-14": 0,
        "2026-03-15": 0,
        "2026-03-16": 1,
        "2026-03-17": 4,
        "2026-03-18": 5,
    }
    assert view.daily_errors["2026-03-17"] == 1 and view.daily_errors["2026-03-18"] == 2
    assert sum(view.daily_errors.values()) == 3
    assert view.generated_at == NOW
    assert (view.period_start, view.period_end) == (NOW - 7 * 24 * HOUR, NOW)


async def test_failing_tools_are_found_among_all_tools_not_only_the_top(
    ops: LocalOperations, settings: Settings
) -> None:
    fleet = await make_fleet(ops)
    calls = []
    async with ops.db.session() as session:
        for index in range(12):
            tool = ServerTool(server_id=fleet.beta, name=f"busy{index}", enabled=True)
            session.add(tool)
            await session.flush()
            calls += [
                call((fleet.beta, tool.id, tool.name), NOW - index * MIN, 1) for _ in range(9)
            ]
    calls += [call(fleet.mul, NOW - HOUR, 3, ok=False), call(fleet.mul, NOW - HOUR, 3)]
    calls += [call(fleet.add, NOW - HOUR, 3, ok=index < 2) for index in range(6)]
    await record(ops, settings, calls)
    view = await analytics_at(ops, failing_min_calls=2).system(window("24h"))
    assert len(view.top_tools) == 10 and all(t.total_calls == 9 for t in view.top_tools)
    # Highest error rate first: add 4/6, then mul 1/2.
    assert [(t.tool_name, t.total_errors) for t in view.failing_tools] == [("add", 4), ("mul", 1)]


async def test_explicit_windows_include_the_start_and_exclude_the_end(
    ops: LocalOperations, settings: Settings
) -> None:
    fleet = await make_fleet(ops)
    start = datetime(2026, 3, 10, 9, 15, tzinfo=UTC)
    end = datetime(2026, 3, 12, 17, 45, tzinfo=UTC)
    await record(
        ops,
        settings,
        [
            call(fleet.add, start - timedelta(microseconds=1), 1),
            call(fleet.add, start, 2),
            call(fleet.add, start + 45 * MIN, 3),  # the first whole hour
            call(fleet.add, datetime(2026, 3, 11, 3, tzinfo=UTC), 4),
            call(fleet.add, end - 45 * MIN, 5),  # the last whole hour's start
            call(fleet.add, end - timedelta(microseconds=1), 6),
            call(fleet.add, end, 7),
        ],
    )
    explicit = window(start=start, end=end)
    metrics = await analytics_at(ops).server_metrics(fleet.alpha, explicit)
    assert metrics.total_calls == 5
    assert metrics.avg_response_time_ms == pytest.approx(4)
    assert metrics.last_activity == end - timedelta(microseconds=1)
    tool = await analytics_at(ops).tool_metrics(fleet.add[1], explicit)
    assert (tool.total_calls, tool.avg_response_time_ms) == (5, pytest.approx(4))
    view = await analytics_at(ops).system(explicit)
    assert view.daily_usage == {"2026-03-10": 2, "2026-03-11": 1, "2026-03-12": 2}
    # The newest call is in the raw edge after the last whole hour.
    assert view.top_tools[0].last_called == end - timedelta(microseconds=1)
    assert view.server_metrics[0].last_activity == end - timedelta(microseconds=1)
    # The first hour is taken whole and its call before the start (03:00) subtracted.
    quiet = window(
        start=datetime(2026, 3, 11, 3, 10, tzinfo=UTC), end=datetime(2026, 3, 11, 5, tzinfo=UTC)
    )
    nothing = await analytics_at(ops).server_metrics(fleet.alpha, quiet)
    assert (nothing.total_calls, nothing.last_activity, nothing.p50_response_time_ms) == (
        0,
        None,
        None,
    )
    # A window inside one hour is all raw rows.
    short = window(start=start, end=start + 30 * MIN)
    assert (await analytics_at(ops).server_metrics(fleet.alpha, short)).total_calls == 1


async def test_uptime_comes_from_start_and_stop_events(ops: LocalOperations, fleet: Fleet) -> None:
    day_ago = NOW - 24 * HOUR
    async with ops.db.session() as session:
        for server, kind, at in (
            (fleet.alpha, "started", day_ago - 6 * HOUR),  # up when the window opens
            (fleet.alpha, "crashed", day_ago + 6 * HOUR),
            (fleet.alpha, "degraded", day_ago + 7 * HOUR),  # still up
            (fleet.alpha, "started", day_ago + 8 * HOUR),
            (fleet.alpha, "stopped", day_ago + 18 * HOUR),
            (fleet.alpha, "started", day_ago + 20 * HOUR),
            (fleet.beta, "started", NOW - 6 * HOUR),  # created then, up ever since
        ):
            session.add(ServerEvent(server_id=server, kind=kind, message="", created_at=at))
    metrics = await analytics_at(ops).server_metrics(fleet.alpha, window("24h"))
    assert metrics.uptime_percentage == pytest.approx((6 + 10 + 4) / 24)
    view = await analytics_at(ops).system(window("24h"))
    assert [m.uptime_percentage for m in view.server_metrics] == [
        pytest.approx(20 / 24),
        pytest.approx(1.0),
    ]
    # Before beta existed there is nothing to measure.
    old = window(start=NOW - 48 * HOUR, end=NOW - 24 * HOUR)
    assert (await analytics_at(ops).server_metrics(fleet.beta, old)).uptime_percentage is None


async def test_time_series_buckets_add_up(ops: LocalOperations, fleet: Fleet) -> None:
    hourly = await analytics_at(ops).time_series(None, window("24h"), buckets=24)
    assert hourly.bucket_seconds == 3600 and len(hourly.points) == 24
    assert hourly.points[0].start == datetime(2026, 3, 17, 13, tzinfo=UTC)
    assert hourly.points[-1].end == datetime(2026, 3, 18, 13, tzinfo=UTC)
    by_start = {point.start: point for point in hourly.points if point.calls}
    assert {at.hour: point.calls for at, point in by_start.items()} == {
        13: 1,  # a3
        0: 1,  # s2
        10: 1,  # a2
        11: 1,  # s1
        12: 2,  # m1 a1
    }
    noon = by_start[datetime(2026, 3, 18, 12, tzinfo=UTC)]
    # m1 (5 ms) and a1 (10 ms): nearest rank puts p50 on the first, p95 and p99 on the second.
    assert near(noon.p50_response_time_ms, 5)
    assert near(noon.p95_response_time_ms, 10) and near(noon.p99_response_time_ms, 10)

    two_hours = await analytics_at(ops).time_series(fleet.alpha, window("7d"), buckets=84)
    assert two_hours.bucket_seconds == 7200 and len(two_hours.points) == 84
    assert sum(point.calls for point in two_hours.points) == 8

    minutes = await analytics_at(ops).time_series(None, window("1h"), buckets=6)
    assert minutes.bucket_seconds == 600
    assert [point.calls for point in minutes.points] == [1, 0, 0, 0, 0, 2]
    assert [point.errors for point in minutes.points] == [1, 0, 0, 0, 0, 1]


async def test_percentiles_are_within_the_bound_of_the_exact_ones(
    ops: LocalOperations, settings: Settings
) -> None:
    fleet = await make_fleet(ops)
    rng = random.Random(7)
    calls = []
    for _ in range(3000):
        tool = rng.choice([fleet.add, fleet.mul, fleet.search])
        at = NOW - timedelta(seconds=rng.uniform(0, 10 * 24 * 3600))
        # Heavy tails and values below a millisecond: the buckets must hold everywhere.
        ms = rng.lognormvariate(rng.choice([-1.0, 2.0, 5.0]), 1.2)
        calls.append(call(tool, at, ms, ok=rng.random() > 0.1))
    await record(ops, settings, calls)
    windows = [
        window("1h"),
        window("24h"),
        window("7d"),
        window(start=NOW - 200 * HOUR - 17 * MIN, end=NOW - 31 * HOUR - 3 * MIN),
    ]
    async with ops.db.session() as session:
        rows = (await session.execute(select(ToolUsage))).scalars().all()

    def exact(low: datetime, high: datetime, keep: object = None) -> list[float]:
        return sorted(
            row.response_time_ms
            for row in rows
            if low <= row.called_at < high
            and row.response_time_ms is not None
            and (keep is None or keep in (row.server_id, row.tool_id))
        )

    engine = analytics_at(ops)
    for span in windows:
        low, high = span.start, span.end if not span.live else NOW + HOUR
        for percent in (50, 95, 99):
            field = f"p{percent}_response_time_ms"
            server = await engine.server_metrics(fleet.alpha, span)
            values = exact(low, high, fleet.alpha)
            assert near(getattr(server, field), values[rank(len(values), percent) - 1])
            assert server.total_calls == sum(
                1 for row in rows if low <= row.called_at < high and row.server_id == fleet.alpha
            )
            tool = await engine.tool_metrics(fleet.mul[1], span)
            values = exact(low, high, fleet.mul[1])
            assert near(getattr(tool, field), values[rank(len(values), percent) - 1])
        everything = exact(low, high)
        view = await engine.system(span)
        assert near(view.p95_response_time_ms, everything[rank(len(everything), 95) - 1])


async def test_table_figures_agree_with_each_server_and_tool_read_alone(
    ops: LocalOperations, settings: Settings
) -> None:
    fleet = await make_fleet(ops)
    rng = random.Random(5)
    calls = [
        call(
            rng.choice([fleet.add, fleet.mul, fleet.search]),
            NOW - timedelta(seconds=rng.uniform(0, 9 * 24 * 3600)),
            rng.lognormvariate(2.0, 1.0),
            ok=rng.random() > 0.2,
        )
        for _ in range(600)
    ]
    await record(ops, settings, calls)
    engine = analytics_at(ops)
    spans = [
        window("1h"),
        window("24h"),
        window("7d"),
        window(start=NOW - 100 * HOUR - 7 * MIN, end=NOW - 20 * HOUR - 41 * MIN),
    ]
    fields = ("p50_response_time_ms", "p95_response_time_ms", "p99_response_time_ms")
    for span in spans:
        servers = await engine.servers_figures(span)
        assert [server.name for server in servers] == ["alpha", "beta"]
        for figures in servers:
            alone = await engine.server_metrics(figures.id, span)
            assert (figures.calls, figures.errors) == (alone.total_calls, alone.total_errors)
            assert figures.success_rate == alone.success_rate
            assert figures.avg_response_time_ms == pytest.approx(alone.avg_response_time_ms)
            assert figures.last_called == alone.last_activity
            assert all(getattr(figures, name) == getattr(alone, name) for name in fields)
        tools = await engine.tools_figures(fleet.alpha, span)
        assert [tool.name for tool in tools] == ["add", "mul"]
        for figures in tools:
            single = await engine.tool_metrics(figures.id, span)
            assert (figures.calls, figures.errors) == (single.total_calls, single.total_errors)
            assert figures.avg_response_time_ms == pytest.approx(single.avg_response_time_ms)
            assert figures.last_called == single.last_called
            assert all(getattr(figures, name) == getattr(single, name) for name in fields)


async def test_table_figures_of_the_hand_checked_day(ops: LocalOperations, fleet: Fleet) -> None:
    engine = analytics_at(ops)
    alpha, beta = await engine.servers_figures(window("24h"))
    # a1 a2 a3 m1 m3, as the server's own metrics count them.
    assert (alpha.name, alpha.calls, alpha.errors) == ("alpha", 5, 2)
    assert near(alpha.p50_response_time_ms, 20) and near(alpha.p95_response_time_ms, 200)
    assert (beta.calls, beta.errors, beta.avg_response_time_ms) == (2, 1, 8)
    add, mul = await engine.tools_figures(fleet.alpha, window("24h"))
    assert (add.name, add.calls, add.errors, add.last_called) == ("add", 3, 1, NOW - 10 * MIN)
    assert (mul.name, mul.calls, mul.errors) == ("mul", 2, 1)
    assert near(mul.p99_response_time_ms, 200)


async def test_windows_older_than_the_raw_rows_come_from_the_rollups(
    ops: LocalOperations, settings: Settings
) -> None:
    fleet = await make_fleet(ops)
    old = NOW - 5 * 24 * HOUR
    await record(
        ops, settings, [call(fleet.add, old + offset * MIN, 10 + offset) for offset in range(90)]
    )
    deleted = await prune_old_rows(ops.db, 2, now=NOW, batch=7)
    assert deleted["usage"] == 90
    engine = analytics_at(ops, raw_retention_days=2)
    span = window(start=old - 20 * MIN, end=old + 3 * HOUR)
    metrics = await engine.server_metrics(fleet.alpha, span)
    assert metrics.total_calls == 90
    assert near(metrics.p50_response_time_ms, 10 + 44)
    # The raw edge is gone, so the window starts at the whole hour and says so.
    assert metrics.period_start == datetime(2026, 3, 13, 12, tzinfo=UTC)
    assert (await engine.tool_metrics(fleet.add[1], span)).total_calls == 90


async def test_the_facade_rejects_unknown_periods_and_counts_fresh_calls(
    ops: LocalOperations, settings: Settings
) -> None:
    fleet = await make_fleet(ops)
    with pytest.raises(InvalidInput) as caught:
        await ops.analytics("2w")
    assert caught.value.field == "period"
    assert "1h, 24h, 7d, 30d, 90d" in caught.value.message
    with pytest.raises(InvalidInput):
        await ops.server_metrics("alpha", "24h", start=NOW, end=NOW - HOUR)
    with pytest.raises(InvalidInput):
        await ops.time_series(None, "24h", buckets=0)

    async with UsageRecorder(ops.db, settings) as recorder:
        ops.recorder = recorder
        recorder.record(call(fleet.add, datetime.now(UTC) - MIN, 12))
        # Not flushed yet: the facade writes queued calls before answering.
        view = await ops.analytics("24h")
        assert view.server_metrics[0].total_calls == 1
        metrics = await ops.server_metrics("alpha", "1h")
        assert metrics.total_calls == 1
        tool = await ops.tool_metrics("add", "alpha", "24h")
        assert (tool.total_calls, tool.calls_last_24h) == (1, 1)
        series = await ops.time_series("alpha", "24h", buckets=24)
        assert sum(point.calls for point in series.points) == 1


def test_percentiles_of_a_histogram_in_any_order() -> None:
    # Nearest rank over 1, 1, 2, 3, 3, 3, 9 ... by bucket: the same answer in any key order.
    counts = {bucket_of(9.0): 1, bucket_of(1.0): 2, bucket_of(3.0): 3, bucket_of(2.0): 1}
    ordered = dict(sorted(counts.items()))
    assert percentiles(counts) == percentiles(ordered)
    values = percentiles(counts)
    assert near(values[50], 3.0) and near(values[95], 9.0) and near(values[99], 9.0)


def test_the_calls_between_two_running_histograms_are_only_the_buckets_used() -> None:
    earlier = {bucket_of(1.0): 3, bucket_of(40.0): 1}
    later = {bucket_of(1.0): 5, bucket_of(40.0): 1, bucket_of(900.0): 2}
    between = RunningHistogram.decode(encode_dense(later)).since(
        RunningHistogram.decode(encode_dense(earlier))
    )
    assert between == {bucket_of(1.0): 2, bucket_of(900.0): 2}
    assert list(between) == sorted(between)  # in bucket order, as percentiles expect
    assert percentiles(between) == percentiles({**between, bucket_of(40.0): 0})
