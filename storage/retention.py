"""Deleting rows past the retention period, in bounded batches so writers are never locked out
for long (each batch is its own short transaction, with a pause after it in which a waiting
writer gets the lock).

What goes: raw `tool_usage` rows and `server_events` older than the retention, and memory and CPU
samples older than their own (shorter) retention. What stays: the
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
