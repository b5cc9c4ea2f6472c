"""The facade's memory and CPU history of local servers, as the `resources` job stored it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.core.errors import InvalidInput
from app.core.schemas import ProcessHistory, ProcessSample
from app.ops.alerts import parse_since
from app.ops.base import OpsBase
from storage.models import ToolServer
from storage.resource_history import Sample, read_latest, read_series

# A week of one sample a minute; a longer look back gets its newest samples.
MAX_SAMPLES = 10_080
UP_STATUSES = ("running", "degraded")
# A latest sample older than this many sampling intervals belongs to a process gone since.
FRESH_INTERVALS = 3


class ProcessHistoryOperations(OpsBase):
    """Reads of the `resource_samples` series; no supervisor needed, so a remote face has them."""

    async def process_history(self, ref: str, since: str = "1h") -> ProcessHistory:
        start = parse_since(since) if since else None
        if start is None:
            raise InvalidInput("use a duration such as 30m, 24h, 7d, 2w", field="since")
        async with self.db.read() as session:
            server = await self._server(session, ref)
            server_id, server_name = server.id, server.name
        samples = await read_series(self.db, server_id, start, limit=MAX_SAMPLES)
        return ProcessHistory(
            server_id=server_id,
            server_name=server_name,
            since=start,
            interval_s=self.settings.resource_sample_interval_s,
            samples=[_response(sample, server_name) for sample in samples],
        )

    async def process_samples(self) -> list[ProcessSample]:
        fresh = timedelta(seconds=self.settings.resource_sample_interval_s * FRESH_INTERVALS)
        latest = await read_latest(self.db, datetime.now(UTC) - fresh)
        up = select(ToolServer.id, ToolServer.name).where(ToolServer.status.in_(UP_STATUSES))
        async with self.db.read() as session:
            running = {server_id: name for server_id, name in await session.execute(up)}
        chosen = [sample for sample in latest if sample.server_id in running]
        chosen.sort(key=lambda sample: running[sample.server_id])
        return [_response(sample, running[sample.server_id]) for sample in chosen]


def _response(sample: Sample, server_name: str) -> ProcessSample:
    return ProcessSample(
        server_id=sample.server_id,
        server_name=server_name,
        sampled_at=sample.sampled_at,
        rss_bytes=sample.rss_bytes,
        cpu_percent=sample.cpu_percent,
    )
