"""The daily partitions of `tool_usage` on PostgreSQL (migration 0011): made ahead, dropped whole.

Each UTC day has its partition, `tool_usage_pYYYYMMDD`; rows of a day without one land in
`tool_usage_default`, so an insert never fails for want of a partition. Making a day's partition
moves that day's rows out of the default partition first. Retention drops the partitions of days
that ended before the cutoff: no row-by-row delete, no dead tuples to vacuum. Several processes
on one database may do either at once: an advisory lock takes them in turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database

PARENT = "tool_usage"
PREFIX = "tool_usage_p"
DEFAULT_PARTITION = "tool_usage_default"
DAYS_AHEAD = 7
# pg_advisory_xact_lock's key for work on the partitions ("tdkparts").
LOCK_KEY = 0x74646B7061727473
# A drop waits this long at most for the inserts in flight to finish.
LOCK_TIMEOUT = "5s"


@dataclass(frozen=True)
class Partition:
    name: str
    day: date

    @property
    def start(self) -> datetime:
        return datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)


def partition_of(day: date) -> Partition:
    return Partition(f"{PREFIX}{day:%Y%m%d}", day)


async def is_partitioned(db: Database) -> bool:
    if db.is_sqlite:
        return False
    async with db.read() as session:
        kind = await session.scalar(
            text("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(:name)"),
            {"name": PARENT},
        )
    return kind == "p"


async def day_partitions(session: AsyncSession) -> list[Partition]:
    """The day partitions there are, oldest first (the default partition is not one)."""
    names = await session.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": PARENT},
    )
    found = []
    for name in names:
        if name.startswith(PREFIX):
            day = datetime.strptime(name.removeprefix(PREFIX), "%Y%m%d").date()
            found.append(Partition(name, day))
    return sorted(found, key=lambda partition: partition.day)


async def make_ahead(db: Database, today: date, days_ahead: int = DAYS_AHEAD) -> list[str]:
    """Partitions for today and the days ahead where missing; the names of those made."""
    made = []
    async with db.session() as session:
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        existing = {partition.day for partition in await day_partitions(session)}
        for ahead in range(days_ahead + 1):
            day = today + timedelta(days=ahead)
            if day not in existing:
                await _make(session, partition_of(day))
                made.append(partition_of(day).name)
    return made


async def adopt_stray_days(db: Database, since: date) -> list[str]:
    """Partitions for the days from `since` on whose rows sit in the default partition (copied
    in by `db copy`, or written while no process made partitions ahead); the names of those
    made. Older strays are left to be deleted by retention: moving them would cost more."""
    made = []
    async with db.session() as session:
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        existing = {partition.day for partition in await day_partitions(session)}
        start = partition_of(since).start
        stray_days = await session.scalars(
            text(
                "SELECT DISTINCT (called_at AT TIME ZONE 'UTC')::date "
                f"FROM {DEFAULT_PARTITION} WHERE called_at >= :start"
            ),
            {"start": start},
        )
        for day in sorted(set(stray_days) - existing):
            await _make(session, partition_of(day))
            made.append(partition_of(day).name)
    return made


async def prepare(db: Database, now: datetime, retention_days: int) -> list[str]:
    """The partitions of today and the days ahead, and of the days still within the retention
    whose rows are in the default partition; the names of those made."""
    made = await make_ahead(db, now.astimezone(UTC).date())
    since = (now - timedelta(days=retention_days)).astimezone(UTC).date()
    return made + await adopt_stray_days(db, since)


async def _make(session: AsyncSession, partition: Partition) -> None:
    # Attached, not created as a partition: rows of its day already in the default partition
    # move into it first, else PostgreSQL would refuse the new bounds.
    bounds = {"start": partition.start, "end": partition.end}
    await session.execute(
        text(
            f"CREATE TABLE {partition.name} "
            f"(LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
    )
    await session.execute(
        text(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} "
            "WHERE called_at >= :start AND called_at < :end RETURNING *) "
            f"INSERT INTO {partition.name} SELECT * FROM moved"
        ),
        bounds,
    )
    # Literal bounds: a partition bound cannot be a parameter.
    await session.execute(
        text(
            f"ALTER TABLE {PARENT} ATTACH PARTITION {partition.name} FOR VALUES "
            f"FROM ('{partition.start.isoformat()}') TO ('{partition.end.isoformat()}')"
        )
    )


@dataclass(frozen=True)
class Dropped:
    partitions: int
    rows: int


async def drop_before(db: Database, cutoff: datetime) -> Dropped:
    """Drop every day partition whose day ended at or before `cutoff`, each in a transaction of
    its own; how many partitions and rows went."""
    async with db.read() as session:
        old = [p for p in await day_partitions(session) if p.end <= cutoff]
    rows = dropped = 0
    for partition in old:
        async with db.session() as session:
            await session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            if (
                await session.scalar(text("SELECT to_regclass(:name)"), {"name": partition.name})
                is None
            ):  # another process dropped it meanwhile
                continue
            rows += int(await session.scalar(text(f"SELECT count(*) FROM {partition.name}")) or 0)
            await session.execute(text(f"DROP TABLE {partition.name}"))
            dropped += 1
    return Dropped(dropped, rows)
