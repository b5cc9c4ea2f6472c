"""Usage partitioned by day on PostgreSQL: the migration keeps every row, retention drops whole
days, and the analytics answer as before."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from app.core.settings import Settings
from app.ops.facade import LocalOperations
from storage.db import Database
from storage.models import ToolUsage
from storage.retention import prune_old_rows
from storage.usage_partitions import DEFAULT_PARTITION, make_ahead
from tests.pg_server import PgServer
from tests.test_analytics import HOUR, MIN, NOW, analytics_at, call, make_fleet, record, window

DAY = 24 * HOUR


@pytest.fixture(scope="session")
def backend() -> str:
    return "postgresql"


async def partitions(db: Database) -> list[str]:
    async with db.read() as session:
        names = await session.scalars(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'tool_usage'::regclass ORDER BY c.relname"
            )
        )
        return list(names)


async def count(db: Database, table: str = "tool_usage") -> int:
    async with db.read() as session:
        return int(await session.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


async def test_retention_drops_whole_days_and_the_analytics_stay(
    ops: LocalOperations, settings: Settings
) -> None:
    fleet = await make_fleet(ops)
    first = (NOW - 10 * DAY).date()
    await make_ahead(ops.db, first, days_ahead=10)
    calls = [
        call(fleet.add, NOW - days * DAY + minute * MIN, 10 + minute)
        for days in range(11)
        for minute in range(6)
    ]
    # Early on the cutoff's own day: deleted row by row from the partition that stays.
    boundary = [call(fleet.mul, NOW - 5 * DAY - 6 * HOUR + n * MIN, 50) for n in range(4)]
    await record(ops, settings, calls + boundary)
    span = window("30d")
    engine = analytics_at(ops, raw_retention_days=90)
    before = (await engine.server_metrics(fleet.alpha, span), await engine.system(span))
    assert before[0].total_calls == 70

    deleted = await prune_old_rows(ops.db, 5, now=NOW)

    # 11th..17th March hold calls made 10..6 days ago at 12:30: 5 days x 6 calls, plus the 4.
    assert deleted["usage"] == 5 * 6 + 4
    kept = await partitions(ops.db)
    for gone in ("08", "09", "10", "11", "12"):
        assert f"tool_usage_p202603{gone}" not in kept
    for day in ("13", "14", "15", "16", "17", "18"):
        assert f"tool_usage_p202603{day}" in kept
    assert DEFAULT_PARTITION in kept
    assert await count(ops.db) == 6 * 6
    async with ops.db.read() as session:
        oldest = await session.scalar(select(func.min(ToolUsage.called_at)))
    assert oldest == NOW - 5 * DAY
    engine = analytics_at(ops, raw_retention_days=5)
    after = (await engine.server_metrics(fleet.alpha, span), await engine.system(span))
    assert after[0].total_calls == before[0].total_calls
    assert after[0].avg_response_time_ms == pytest.approx(before[0].avg_response_time_ms)
    assert after[0].p95_response_time_ms == pytest.approx(before[0].p95_response_time_ms)
    assert after[1].daily_usage == before[1].daily_usage


async def test_a_days_rows_in_the_default_partition_move_into_its_new_partition(
    ops: LocalOperations, settings: Settings
) -> None:
    fleet = await make_fleet(ops)
    lost_day = datetime(2026, 1, 7, 9, tzinfo=UTC)
    await record(ops, settings, [call(fleet.add, lost_day + n * MIN, 5) for n in range(3)])
    assert await count(ops.db, DEFAULT_PARTITION) == 3

    assert await make_ahead(ops.db, lost_day.date(), days_ahead=1) == [
        "tool_usage_p20260107",
        "tool_usage_p20260108",
    ]
    assert await count(ops.db, DEFAULT_PARTITION) == 0
    assert await count(ops.db, "tool_usage_p20260107") == 3
    # Made once: a second run, like another node's, finds them there.
    assert await make_ahead(ops.db, lost_day.date(), days_ahead=1) == []


async def test_retention_gives_stray_days_within_it_a_partition_and_deletes_older_ones(
    ops: LocalOperations, settings: Settings
) -> None:
    fleet = await make_fleet(ops)
    # As `db copy` leaves them, or a fleet that made no partitions for a while: all in default.
    await record(
        ops, settings, [call(fleet.add, NOW - 2 * DAY, 5), call(fleet.add, NOW - 9 * DAY, 5)]
    )
    assert await count(ops.db, DEFAULT_PARTITION) == 2

    deleted = await prune_old_rows(ops.db, 5, now=NOW)

    assert deleted["usage"] == 1
    assert await count(ops.db, DEFAULT_PARTITION) == 0
    assert await count(ops.db, "tool_usage_p20260316") == 1
    assert "tool_usage_p20260309" not in await partitions(ops.db)


async def test_the_migration_moves_every_row_into_partitions_and_back(
    new_pg_database: Callable[..., str], pg: PgServer
) -> None:
    url = new_pg_database(migrated=False)
    db = Database(url)
    try:
        await db.upgrade("0009_oauth")
        days = [datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 2, 23, 59, tzinfo=UTC)]
        async with db.session() as session:
            for at in days * 2:
                await session.execute(
                    text(
                        "INSERT INTO tool_usage (tool_name, called_at, success, outcome) "
                        "VALUES ('t', :at, true, 'ok')"
                    ),
                    {"at": at},
                )
        rows_before = await id_times(db)

        await db.upgrade()

        assert await relkind(db) == "p"
        assert await id_times(db) == rows_before
        names = await partitions(db)
        assert {"tool_usage_p20260301", "tool_usage_p20260302", DEFAULT_PARTITION} <= set(names)
        assert f"tool_usage_p{datetime.now(UTC).date() + timedelta(days=7):%Y%m%d}" in names
        assert await count(db, "tool_usage_p20260302") == 2
        async with db.session() as session:
            session.add(ToolUsage(tool_name="t", success=True, called_at=days[0]))
        assert max(row[0] for row in await id_times(db)) == 5

        await db.downgrade("0009_oauth")
        assert await relkind(db) == "r"
        assert len(await id_times(db)) == 5
    finally:
        await db.dispose()
        pg.drop_database(url.rsplit("/", 1)[1])


async def id_times(db: Database) -> list[tuple[int, datetime]]:
    async with db.read() as session:
        rows = await session.execute(text("SELECT id, called_at FROM tool_usage ORDER BY id"))
        return [(row[0], row[1]) for row in rows]


async def relkind(db: Database) -> str:
    async with db.read() as session:
        return str(
            await session.scalar(
                text("SELECT relkind::text FROM pg_class WHERE relname = 'tool_usage'")
            )
        )
