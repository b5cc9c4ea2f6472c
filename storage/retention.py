"""Deleting rows past the retention period, in bounded batches so writers are never locked out
for long (each batch is its own short transaction, with a pause after it in which a waiting
writer gets the lock).

What goes: raw `tool_usage` rows and `server_events` older than the retention, and memory and CPU
samples older than their own (shorter) retention; samples past their first day are thinned to the
peak of each quarter hour. What stays: the
usage rollups (they answer every analytics window, also past the retention) and, per server, the
newest start/stop event before the cutoff, so uptime still knows whether the server was up when
a window begins.

On PostgreSQL, where usage is partitioned by day, the days wholly past the cutoff are dropped as
partitions and only the rest is deleted row by row; the partitions of the days ahead are made on
the way.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from app.core.events import DOWN_EVENTS, UP_EVENTS
from storage.db import Database
from storage.models import ResourceSample, ServerEvent, ToolUsage
from storage.usage_partitions import drop_before, is_partitioned, prepare

BATCH_ROWS = 5000
# Long enough for SQLite's busy handler of a waiting writer to get the lock.
PAUSE_BETWEEN_BATCHES_S = 0.02
# A week of a sample a minute is 10,080 rows a server, ten million at 1,000 servers. Past a day
# nobody reads minutes: one sample a quarter hour (the one of highest memory, what a look back
# is for) keeps the week's shape in a fifth of the rows.
THIN_AFTER = timedelta(days=1)
THIN_TO_S = 15 * 60


async def prune_old_rows(
    db: Database,
    retention_days: int,
    *,
    resource_days: int | None = None,
    now: datetime | None = None,
    batch: int = BATCH_ROWS,
) -> dict[str, int]:
    """Delete rows older than `retention_days` (resource samples: `resource_days`, when given);
    returns how many of each kind went."""
    moment = now or datetime.now(UTC)
    cutoff = moment - timedelta(days=retention_days)
    pruned = {
        "usage": await _prune_usage(db, moment, retention_days, batch),
        "events": await _prune_events(db, cutoff, batch),
    }
    if resource_days is not None:
        pruned["resource samples"] = await _prune_resources(
            db, moment - timedelta(days=resource_days), batch
        )
        pruned["resource samples thinned"] = await _thin_resources(db, moment - THIN_AFTER, batch)
    return pruned


async def _prune_usage(db: Database, now: datetime, retention_days: int, batch: int) -> int:
    cutoff = now - timedelta(days=retention_days)
    dropped = 0
    if await is_partitioned(db):
        await prepare(db, now, retention_days)
        dropped = (await drop_before(db, cutoff)).rows
    oldest_first = (
        select(ToolUsage.id)
        .where(ToolUsage.called_at < cutoff)
        .order_by(ToolUsage.called_at)
        .limit(batch)
    )
    # The time again outside the subquery: PostgreSQL then looks in the old partitions only.
    old = delete(ToolUsage).where(ToolUsage.called_at < cutoff)
    deleted = await _delete_in_batches(db, old, ToolUsage.id, oldest_first, batch)
    return dropped + deleted


async def _prune_resources(db: Database, cutoff: datetime, batch: int) -> int:
    """Every resource sample taken before `cutoff`, oldest first."""
    stamp = ResourceSample.sampled_at
    oldest_first = select(ResourceSample.id).where(stamp < cutoff).order_by(stamp).limit(batch)
    return await _delete_in_batches(
        db, delete(ResourceSample), ResourceSample.id, oldest_first, batch
    )


async def _thin_resources(db: Database, before: datetime, batch: int) -> int:
    """All but each quarter hour's peak of the samples taken before `before`, a server at a
    time (a bucket already thinned has one sample left, so a second run deletes nothing)."""
    stamp = ResourceSample.sampled_at
    async with db.read() as session:
        servers = list(
            (
                await session.execute(
                    select(ResourceSample.server_id).where(stamp < before).distinct()
                )
            ).scalars()
        )
    thinned = 0
    for server_id in servers:
        async with db.read() as session:
            rows = (
                await session.execute(
                    select(ResourceSample.id, stamp, ResourceSample.rss_bytes)
                    .where(ResourceSample.server_id == server_id, stamp < before)
                    .order_by(stamp, ResourceSample.id)
                )
            ).all()
        surplus = _all_but_each_quarter_peak(rows)
        for start in range(0, len(surplus), batch):
            chunk = surplus[start : start + batch]
            async with db.session() as session:
                await session.execute(delete(ResourceSample).where(ResourceSample.id.in_(chunk)))
            thinned += len(chunk)
            await asyncio.sleep(PAUSE_BETWEEN_BATCHES_S)
    return thinned


def _all_but_each_quarter_peak(rows: Any) -> list[int]:
    """The ids of every sample but the highest-memory one (the first of equals) of its bucket."""
    peaks: dict[int, tuple[int, int]] = {}
    surplus: list[int] = []
    for sample_id, sampled_at, rss in rows:
        at = sampled_at if sampled_at.tzinfo else sampled_at.replace(tzinfo=UTC)
        bucket = int(at.timestamp()) // THIN_TO_S
        memory = -1 if rss is None else rss
        peak = peaks.get(bucket)
        if peak is None:
            peaks[bucket] = (memory, sample_id)
        elif memory > peak[0]:
            surplus.append(peak[1])
            peaks[bucket] = (memory, sample_id)
        else:
            surplus.append(sample_id)
    return surplus


async def _prune_events(db: Database, cutoff: datetime, batch: int) -> int:
    state_kinds = [str(kind) for kind in (*UP_EVENTS, *DOWN_EVENTS)]
    newest_first = func.row_number().over(
        partition_by=ServerEvent.server_id,
        order_by=(ServerEvent.created_at.desc(), ServerEvent.id.desc()),
    )
    ranked = (
        select(ServerEvent.id, newest_first.label("rank"))
        .where(
            ServerEvent.created_at < cutoff,
            ServerEvent.kind.in_(state_kinds),
            ServerEvent.server_id.is_not(None),
        )
        .subquery()
    )
    async with db.session() as session:
        kept = list(
            (await session.execute(select(ranked.c.id).where(ranked.c.rank == 1))).scalars()
        )
    old = select(ServerEvent.id).where(ServerEvent.created_at < cutoff)
    if kept:
        old = old.where(ServerEvent.id.not_in(kept))
    return await _delete_in_batches(
        db, delete(ServerEvent), ServerEvent.id, old.limit(batch), batch
    )


async def _delete_in_batches(
    db: Database, statement: Any, id_column: Any, ids: Any, batch: int
) -> int:
    total = 0
    while True:
        async with db.session() as session:
            result = await session.execute(
                statement.where(id_column.in_(ids.scalar_subquery())).execution_options(
                    synchronize_session=False
                )
            )
            deleted = int(result.rowcount or 0)
        total += deleted
        if deleted < batch:
            return total
        await asyncio.sleep(PAUSE_BETWEEN_BATCHES_S)
