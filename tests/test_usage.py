"""The usage recorder: batches, counters and rollups in step with the rows, bursts, shutdown,
payload capping, and the rollup backfill of migration 0002."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Text, cast, func, select, text
from sqlalchemy.exc import OperationalError

from app.core.settings import Settings
from app.core.usage_record import UsageRecord
from app.ops.facade import LocalOperations
from app.runtime.usage import UsageRecorder
from storage.db import Database, sqlite_url
from storage.latency import decode_dense
from storage.models import (
    ServerEvent,
    ServerTool,
    ToolUsage,
    UsageScopeHourly,
    UsageSeries,
    UsageToolHourly,
)
from storage.rollups import UsageWriter
from storage.usage_math import ALL_SCOPE, hour_of, sqlite_time

START = datetime(2026, 3, 18, 9, 0, tzinfo=UTC)

pytestmark = pytest.mark.both_backends


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"usage_batch_size": 40, "usage_flush_interval_s": 0.02})


async def make_tools(ops: LocalOperations, count: int = 3) -> list[tuple[str, str, str]]:
    """(server id, tool id, tool name) of `count` tools on one server."""
    server = await ops.create_server({"name": "alpha", "command": "x"}, actor="test")
    tools = []
    async with ops.db.session() as session:
        for index in range(count):
            tool = ServerTool(server_id=server.id, name=f"tool{index}", enabled=True)
            session.add(tool)
            await session.flush()
            tools.append((server.id, tool.id, tool.name))
    return tools


def usage(
    tool: tuple[str, str, str],
    at: datetime,
    ms: float | None,
    success: bool = True,
    error: str | None = None,
    **fields: object,
) -> UsageRecord:
    server_id, tool_id, name = tool
    return UsageRecord(
        server_id=server_id,
        tool_id=tool_id,
        tool_name=name,
        called_at=at,
        response_time_ms=ms,
        success=success,
        error_message=error if not success else None,
        source="cli",
        **fields,  # type: ignore[arg-type]
    )


async def assert_rollups_match_rows(db: Database) -> None:
    """Every rollup agrees with the raw rows, hour by hour and in its running totals."""
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    ToolUsage.server_id,
                    ToolUsage.tool_id,
                    ToolUsage.tool_name,
                    ToolUsage.called_at,
                    ToolUsage.response_time_ms,
                    ToolUsage.success,
                    ToolUsage.latency_bucket,
                )
            )
        ).all()
        series = {row.id: row for row in (await conn.execute(select(UsageSeries.__table__))).all()}
        hours = (await conn.execute(select(UsageToolHourly.__table__))).all()
        scopes = (await conn.execute(select(UsageScopeHourly.__table__))).all()

    expected: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    expected_hist: dict[tuple[object, ...], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for server_id, tool_id, name, at, ms, success, bucket in rows:
        for key in (
            ("tool", server_id or "", tool_id or "", name, hour_of(at)),
            ("scope", ALL_SCOPE, hour_of(at)),
            ("scope", server_id, hour_of(at)),
        ):
            counts = expected[key]
            counts[0] += 1
            counts[1] += 0 if success else 1
            counts[2] += 0 if ms is None else 1
            if key[0] == "scope" and ms is not None:
                expected_hist[key[1:2]][bucket] += 1

    actual: dict[tuple[object, ...], list[int]] = {}
    for row in hours:
        owner = series[row.series_id]
        key = ("tool", owner.server_id, owner.tool_id, owner.tool_name, row.hour)
        actual[key] = [row.calls, row.errors, row.timed_calls]
        assert sum(decode_dense(row.latency_hist).values()) == row.timed_calls
        earlier = [h for h in hours if h.series_id == row.series_id and h.hour <= row.hour]
        assert row.cum_calls == sum(h.calls for h in earlier)
        assert row.cum_errors == sum(h.errors for h in earlier)
    assert {k: v for k, v in expected.items() if k[0] == "tool"} == actual

    for row in scopes:
        earlier = [
            counts
            for key, counts in expected.items()
            if key[0] == "scope" and key[1] == row.scope and key[2] <= row.hour
        ]
        assert row.cum_calls == sum(counts[0] for counts in earlier)
        assert row.cum_errors == sum(counts[1] for counts in earlier)
    newest = {}
    for row in scopes:
        if row.scope not in newest or row.hour > newest[row.scope].hour:
            newest[row.scope] = row
    for scope, row in newest.items():
        assert decode_dense(row.cum_latency_hist) == dict(expected_hist[(scope,)])


async def test_counters_and_rollups_match_the_rows_after_a_concurrent_burst(
    ops: LocalOperations, fast_settings: Settings
) -> None:
    tools = await make_tools(ops)
    recorder = UsageRecorder(ops.db, fast_settings)
    await recorder.start()
    rng = random.Random(4)
    made: list[UsageRecord] = []

    async def caller(index: int) -> None:
        for call in range(60):
            # Out of order across four hours, as calls that straddle an hour end up.
            at = START + timedelta(minutes=rng.randrange(0, 240), seconds=index, microseconds=call)
            ms = None if call % 17 == 0 else rng.lognormvariate(3, 1)
            ok = rng.random() > 0.2
            record = usage(rng.choice(tools), at, ms, ok, f"error {index}.{call}")
            made.append(record)
            recorder.record(record)
            if call % 7 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(caller(index) for index in range(25)))
    await recorder.stop()

    stats = recorder.stats()
    assert (stats.accepted, stats.written, stats.dropped, stats.queued) == (1500, 1500, 0, 0)
    assert stats.flushes > 1
    async with ops.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(ToolUsage)) == 1500
    for server_id, tool_id, name in tools:
        mine = [r for r in made if r.tool_id == tool_id]
        tool = await ops.get_tool(tool_id)
        assert tool.total_calls == len(mine)
        assert tool.total_errors == sum(1 for r in mine if not r.success)
        assert tool.last_called == max(r.called_at for r in mine)
        timed = [r.response_time_ms for r in mine if r.response_time_ms is not None]
        assert tool.avg_response_time_ms == pytest.approx(sum(timed) / len(timed), rel=1e-9)
        # The last failed call recorded, not the one that started last.
        assert tool.last_error == [r for r in mine if not r.success][-1].error_message
        del server_id, name
    await assert_rollups_match_rows(ops.db)


async def test_a_shutdown_in_the_middle_of_a_burst_loses_nothing(
    ops: LocalOperations, fast_settings: Settings
) -> None:
    tools = await make_tools(ops, 2)
    recorder = UsageRecorder(ops.db, fast_settings)
    await recorder.start()
    stop_now = asyncio.Event()

    async def caller() -> None:
        for call in range(400):
            recorder.record(usage(tools[call % 2], START + timedelta(seconds=call), 1.0 + call))
            if call == 100:
                stop_now.set()
            await asyncio.sleep(0)

    async def stopper() -> None:
        await stop_now.wait()
        await recorder.stop()

    await asyncio.gather(caller(), caller(), caller(), stopper())
    stats = recorder.stats()
    async with ops.db.session() as session:
        rows = await session.scalar(select(func.count()).select_from(ToolUsage))
    # Whatever record() took is in the database; what came after the stop is counted as lost.
    assert rows == stats.accepted == stats.written
    assert stats.accepted + stats.dropped == 1200
    assert stats.accepted > 300
    await assert_rollups_match_rows(ops.db)


async def test_a_full_queue_drops_loudly_and_says_so_in_an_event(
    ops: LocalOperations, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    tools = await make_tools(ops, 1)
    recorder = UsageRecorder(ops.db, settings.model_copy(update={"usage_queue_max": 100}))
    with caplog.at_level(logging.WARNING, logger="app.runtime.usage"):
        for call in range(130):  # no writer yet: the queue fills
            recorder.record(usage(tools[0], START + timedelta(seconds=call), 2.0))
    assert recorder.stats().dropped == 30
    # One warning, not thirty: it repeats at most every ten seconds.
    assert caplog.text.count("usage not recorded") == 1
    assert "the queue is full" in caplog.text
    await recorder.start()
    await recorder.stop()
    assert recorder.stats().written == 100
    recorder.record(usage(tools[0], START, 2.0))  # after stop: counted, not lost silently
    assert recorder.stats().dropped == 31
    events = await ops.list_events(kind="usage_dropped")
    assert len(events) == 1 and events[0].message.startswith("30 tool call")


async def test_a_refused_write_rolls_back_whole_and_is_retried(
    ops: LocalOperations, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = await make_tools(ops, 1)
    recorder = UsageRecorder(ops.db, fast_settings)
    original = UsageWriter._roll_scopes
    refusals = [OperationalError("INSERT", {}, Exception("database is locked"))]

    def flaky(self: UsageWriter, conn: object, parts: object) -> None:
        # Refused after the raw rows and the tool hours were written: all of it must go.
        if refusals:
            raise refusals.pop()
        original(self, conn, parts)  # type: ignore[arg-type]

    monkeypatch.setattr(UsageWriter, "_roll_scopes", flaky)
    monkeypatch.setattr("app.runtime.usage.RETRY_FIRST_S", 0.01)
    await recorder.start()
    for call in range(50):
        recorder.record(usage(tools[0], START + timedelta(seconds=call), 3.0))
    await recorder.stop()
    stats = recorder.stats()
    assert (stats.written, stats.dropped, stats.failures) == (50, 0, 1)
    assert "locked" in (stats.last_error or "")
    async with ops.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(ToolUsage)) == 50
    assert (await ops.get_tool(tools[0][1])).total_calls == 50
    await assert_rollups_match_rows(ops.db)


async def test_arguments_and_results_are_kept_only_when_asked_and_capped(
    ops: LocalOperations, settings: Settings
) -> None:
    tools = await make_tools(ops, 1)
    small, big = {"a": 2, "b": 3}, {"text": "é" * 2000}

    async def stored(store: bool) -> list[tuple[str | None, str | None]]:
        changed = settings.model_copy(
            update={"store_call_payloads": store, "payload_max_bytes": 256}
        )
        async with UsageRecorder(ops.db, changed) as recorder:
            recorder.record(usage(tools[0], START, 1.0, arguments=small, result=big))
        async with ops.db.session() as session:
            rows = await session.execute(
                select(
                    # As stored: PostgreSQL's json keeps the text it was given.
                    cast(ToolUsage.arguments, Text),
                    cast(ToolUsage.result, Text),
                )
                .order_by(ToolUsage.id.desc())
                .limit(1)
            )
            return [tuple(row) for row in rows]

    assert await stored(False) == [(None, None)]
    [(arguments, result)] = await stored(True)
    assert json.loads(arguments or "") == small
    assert result is not None and len(result.encode()) <= 256
    capped = json.loads(result)
    assert capped["truncated"] is True and capped["size_bytes"] > 4000
    assert capped["preview"].startswith('{"text":"ééé')


async def test_flush_writes_what_is_queued_without_a_writer_task(
    ops: LocalOperations, settings: Settings
) -> None:
    tools = await make_tools(ops, 1)
    recorder = UsageRecorder(ops.db, settings)
    recorder.record(usage(tools[0], START, 1.0))
    await recorder.flush()
    assert (await ops.get_tool(tools[0][1])).total_calls == 1
    await recorder.stop()


class GatedRecorder(UsageRecorder):
    """Each batch waits on the writer thread until the test lets it through."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writing = threading.Semaphore(0)  # released as each batch starts
        self.let_through = threading.Semaphore(0)
        self.batches: list[int] = []

    def _write_batch(self, batch: list[UsageRecord], drops: int) -> None:
        self.batches.append(len(batch))
        self.writing.release()
        self.let_through.acquire()
        super()._write_batch(batch, drops)


async def one_call_being_written(
    ops: LocalOperations, settings: Settings
) -> tuple[GatedRecorder, list[tuple[str, str, str]], asyncio.Task[None]]:
    """A gated recorder with one call taken from its queue and held in its write, and the
    flush that asked for it."""
    tools = await make_tools(ops, 1)
    recorder = GatedRecorder(ops.db, settings)
    recorder.record(usage(tools[0], START, 1.0))
    flush = asyncio.create_task(recorder.flush())
    await asyncio.to_thread(recorder.writing.acquire)
    return recorder, tools, flush


async def test_flushes_asked_together_share_a_write_and_never_wait_for_later_calls(
    ops: LocalOperations, settings: Settings
) -> None:
    recorder, tools, first = await one_call_being_written(ops, settings)
    recorder.record(usage(tools[0], START, 2.0))
    later = [asyncio.create_task(recorder.flush()) for _ in range(3)]
    await asyncio.sleep(0)  # a yield, no wait: the three flushes take note of what is queued
    recorder.let_through.release()
    await asyncio.to_thread(recorder.writing.acquire)  # one write for the second call
    recorder.record(usage(tools[0], START, 3.0))  # asked after all three: none waits for it
    recorder.let_through.release()
    recorder.let_through.release()  # room for a third write, which none of them should make
    await asyncio.gather(first, *later)
    assert recorder.batches == [1, 1]
    assert (await ops.get_tool(tools[0][1])).total_calls == 2
    assert recorder.stats().queued == 1
    await recorder.stop()
    assert (await ops.get_tool(tools[0][1])).total_calls == 3


async def test_a_flush_waits_for_the_write_under_way_of_the_calls_it_covers(
    ops: LocalOperations, settings: Settings
) -> None:
    """The batch being written has left the queue: an empty queue is not a written one."""
    recorder, tools, under_way = await one_call_being_written(ops, settings)
    assert recorder.stats().queued == 0
    asked = asyncio.create_task(recorder.flush())
    for _ in range(3):
        await asyncio.sleep(0)  # yields, no wait: a flush that returned at once is done now
    returned_early = asked.done()
    recorder.let_through.release()
    await asked
    assert not returned_early
    assert (await ops.get_tool(tools[0][1])).total_calls == 1
    await under_way
    await recorder.stop()


def test_times_are_written_exactly_as_sqlalchemy_writes_them() -> None:
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    processor = ToolUsage.__table__.c.called_at.type.dialect_impl(dialect).bind_processor(dialect)
    for moment in (START, START + timedelta(microseconds=7), datetime(2026, 1, 2, tzinfo=UTC)):
        assert sqlite_time(moment) == processor(moment)


async def test_migration_0002_rolls_up_rows_written_before_it(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "old.db"))
    try:
        await db.upgrade("0001")
        async with db.engine.begin() as conn:
            for minute, ms, ok in ((0, 5.0, 1), (70, 7.5, 0), (75, None, 1)):
                at = sqlite_time(START + timedelta(minutes=minute))
                await conn.execute(
                    text(
                        "INSERT INTO tool_usage (server_id, tool_id, tool_name, called_at,"
                        " response_time_ms, success) VALUES ('s1', 't1', 'add', :at, :ms, :ok)"
                    ),
                    {"at": at, "ms": ms, "ok": ok},
                )
        await db.upgrade()
        await assert_rollups_match_rows(db)
        async with db.session() as session:
            assert await session.scalar(select(func.max(UsageSeries.cum_calls))) == 3
            events = await session.scalar(select(func.count()).select_from(ServerEvent))
            assert events == 0
    finally:
        await db.dispose()


async def test_a_lost_postgresql_connection_is_retried_and_loses_nothing(
    settings: Settings, new_pg_database: Callable[..., str]
) -> None:
    db = Database(new_pg_database())
    try:
        ops = LocalOperations(db, settings)
        tools = await make_tools(ops, 1)
        fast = settings.model_copy(update={"usage_batch_size": 10, "usage_flush_interval_s": 0.02})
        recorder = UsageRecorder(db, fast)
        await recorder.start()
        for call in range(20):
            recorder.record(usage(tools[0], START + timedelta(seconds=call), 2.0))
        await recorder.flush()
        # What a server restart or a network break does to the writer's open connection.
        async with db.engine.connect() as conn:
            ended = await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            assert any(row[0] for row in ended)
        for call in range(20, 40):
            recorder.record(usage(tools[0], START + timedelta(seconds=call), 2.0))
        await recorder.stop()
        stats = recorder.stats()
        assert (stats.written, stats.dropped) == (40, 0)
        assert stats.failures >= 1
        assert (await ops.get_tool(tools[0][1])).total_calls == 40
        await assert_rollups_match_rows(db)
    finally:
        await db.dispose()
