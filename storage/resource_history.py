"""The memory and CPU series of local servers: written a sweep at a time, read per server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select

from storage.db import Database
from storage.models import ResourceSample


@dataclass(frozen=True, slots=True)
class Sample:
    server_id: str
    sampled_at: datetime
    rss_bytes: int | None
    cpu_percent: float | None


async def write_samples(db: Database, samples: Sequence[Sample]) -> int:
    """One transaction for a whole sweep, however many servers it measured."""
    if not samples:
        return 0
    rows = [
        {
            "server_id": sample.server_id,
            "sampled_at": sample.sampled_at,
            "rss_bytes": sample.rss_bytes,
            "cpu_percent": sample.cpu_percent,
        }
        for sample in samples
    ]
    async with db.session() as session:
        await session.execute(insert(ResourceSample), rows)
    return len(rows)


async def read_series(db: Database, server_id: str, since: datetime, *, limit: int) -> list[Sample]:
    """A server's samples from `since` on, oldest first; the newest `limit` of them."""
    newest_first = (
        select(ResourceSample)
        .where(ResourceSample.server_id == server_id, ResourceSample.sampled_at >= since)
        .order_by(ResourceSample.sampled_at.desc(), ResourceSample.id.desc())
        .limit(limit)
    )
    async with db.read() as session:
        rows = list((await session.execute(newest_first)).scalars())
    return [_sample(row) for row in reversed(rows)]


async def read_latest(db: Database, since: datetime) -> list[Sample]:
    """Each server's newest sample taken from `since` on."""
    newest = (
        select(ResourceSample.server_id, func.max(ResourceSample.sampled_at).label("at"))
        .where(ResourceSample.sampled_at >= since)
        .group_by(ResourceSample.server_id)
        .subquery()
    )
    latest = select(ResourceSample).join(
        newest,
        (ResourceSample.server_id == newest.c.server_id)
        & (ResourceSample.sampled_at == newest.c.at),
    )
    async with db.read() as session:
        rows = list((await session.execute(latest)).scalars())
    unique = {row.server_id: _sample(row) for row in rows}
    return list(unique.values())


def _sample(row: ResourceSample) -> Sample:
    return Sample(row.server_id, row.sampled_at, row.rss_bytes, row.cpu_percent)
