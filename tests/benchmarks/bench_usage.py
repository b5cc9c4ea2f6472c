"""Usage figures (issue 4) on a database of 10 million calls over 90 days.

The generator fills a fresh database through the same writer the recorder uses (raw rows and
rollups together): 50 servers x 20 tools, each tool with its own lognormal latency (medians from
2 ms to 2 s), its own error rate (most under 3 %, a few failing ones at 15-40 %), a skewed share
of the traffic and a daily rhythm. Then it measures:
- recorder throughput: rows per second from record() to committed, for a burst that keeps the
  writer busy (target >= 50,000 rows/s sustained);
- the cost of one record() on the call path (target < 20 us);
- each analytics query over 90 days, through the facade (target < 50 ms);
- the database size per million rows.

TOOLDECK_BENCH_USAGE_ROWS sets the number of rows (e.g. 1000000 for a quick run);
TOOLDECK_BENCH_DIR keeps the database there instead of in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

from sqlalchemy import make_url, text

from app.core.settings import Settings, load_settings
from app.core.usage_record import UsageRecord
from app.ops.bootstrap import open_database
from app.ops.facade import LocalOperations
from app.runtime.usage import UsageRecorder
from storage.db import Database
from storage.models import ServerTool
from storage.rollups import UsageWriter

SERVERS = 50
TOOLS_PER_SERVER = 20
DAYS = 90
DEFAULT_ROWS = 10_000_000
GENERATE_BATCH = 50_000
THROUGHPUT_ROWS = 400_000
ENQUEUE_CALLS = 200_000
QUERY_RUNS = 7
SOURCES = ("gateway", "gateway", "gateway", "api", "cli", "tui")
CLIENTS = ("claude-desktop", "cursor", "vscode", None)


class Tool:
    def __init__(self, rng: random.Random, server_id: str, tool_id: str, name: str) -> None:
        self.key = (server_id, tool_id, name)
        self.mu = rng.uniform(math.log(2), math.log(2000))  # a median from 2 ms to 2 s
        self.sigma = rng.uniform(0.3, 1.2)
        self.error_rate = rng.uniform(0.15, 0.4) if rng.random() < 0.05 else rng.uniform(0, 0.03)
        self.weight = rng.paretovariate(1.2)

    def record(self, rng: random.Random, at: datetime) -> UsageRecord:
        server_id, tool_id, name = self.key
        ok = rng.random() >= self.error_rate
        source = rng.choice(SOURCES)
        return UsageRecord(
            server_id=server_id,
            tool_id=tool_id,
            tool_name=name,
            called_at=at,
            response_time_ms=rng.lognormvariate(self.mu, self.sigma),
            success=ok,
            error_message=None if ok else f"{name}: upstream returned 503",
            source=source,
            client_name=rng.choice(CLIENTS) if source == "gateway" else None,
            user_id=f"user{rng.randrange(40)}",
            conversation_id=f"{rng.getrandbits(64):016x}" if source == "gateway" else None,
        )


async def make_fleet(ops: LocalOperations, rng: random.Random) -> list[Tool]:
    tools: list[Tool] = []
    for index in range(SERVERS):
        server = await ops.create_server(
            {"name": f"server-{index:02d}", "command": "true"}, actor="bench"
        )
        async with ops.db.session() as session:
            for number in range(TOOLS_PER_SERVER):
                row = ServerTool(server_id=server.id, name=f"tool_{number:02d}", enabled=True)
                session.add(row)
                await session.flush()
                tools.append(Tool(rng, server.id, row.id, row.name))
    return tools


def generate(db: Database, tools: list[Tool], rows: int, now: datetime, rng: random.Random) -> None:
    """`rows` calls spread over the last 90 days, written in time order with their rollups."""
    # Only the generator trades durability for speed; the measured writer does not.
    thread_writer = db.create_thread_writer("synchronous=OFF")
    writer = UsageWriter()
    start = now - timedelta(days=DAYS)
    slices = DAYS * 24 * 4  # quarter hours
    # A daily rhythm: busiest in the afternoon (UTC), a third of that at night.
    shape = [1.0 + 0.5 * math.sin(2 * math.pi * (index % 96 / 96 - 0.4)) for index in range(slices)]
    scale = rows / sum(shape)
    due = [round(scale * total) for total in accumulate(shape)]
    due[-1] = rows
    weights = [tool.weight for tool in tools]
    written = 0
    pending: list[UsageRecord] = []
    began = time.perf_counter()
    for index in range(slices):
        count = due[index] - written - len(pending)
        low = start + timedelta(minutes=15 * index)
        offsets = sorted(rng.uniform(0, 900) for _ in range(count))
        chosen = rng.choices(tools, weights=weights, k=count)
        pending.extend(
            tool.record(rng, low + timedelta(seconds=offset))
            for tool, offset in zip(chosen, offsets, strict=True)
        )
        if len(pending) >= GENERATE_BATCH or index == slices - 1:
            batch = pending
            thread_writer.transaction(lambda conn: writer.write(conn, batch))  # noqa: B023
            written += len(pending)
            pending = []
            if written % 1_000_000 < GENERATE_BATCH:
                rate = written / (time.perf_counter() - began)
                print(f"   generated {written:,} rows ({rate:,.0f} rows/s)", flush=True)
    thread_writer.dispose()
    if db.is_sqlite:
        checkpoint(db)


def checkpoint(db: Database) -> None:
    """Fold the WAL into the database file (outside a transaction, which SQLAlchemy opens)."""
    import sqlite3

    path = make_url(db.url).database
    assert path is not None
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def recorder_throughput(db: Database, settings: Settings, tools: list[Tool]) -> None:
    """A burst far larger than one batch, recorded as fast as the loop allows."""
    rng = random.Random(11)
    records = [rng.choice(tools).record(rng, datetime.now(UTC)) for _ in range(THROUGHPUT_ROWS)]
    recorder = UsageRecorder(db, settings.model_copy(update={"usage_queue_max": THROUGHPUT_ROWS}))
    await recorder.start()
    began = time.perf_counter()
    for index, item in enumerate(records):
        recorder.record(item)
        if index % 2000 == 0:
            await asyncio.sleep(0)  # the call path yields too; the writer gets its turns
    enqueued = time.perf_counter() - began
    await recorder.stop()
    elapsed = time.perf_counter() - began
    stats = recorder.stats()
    assert stats.written == THROUGHPUT_ROWS and stats.dropped == 0, stats
    print(
        f"   recorder: {THROUGHPUT_ROWS:,} rows committed in {elapsed:.2f} s = "
        f"{THROUGHPUT_ROWS / elapsed:,.0f} rows/s sustained ({stats.flushes} transactions; "
        f"enqueueing took {enqueued:.2f} s)",
        flush=True,
    )


def enqueue_cost(db: Database, settings: Settings, tools: list[Tool]) -> None:
    rng = random.Random(12)
    now = datetime.now(UTC)
    records = [rng.choice(tools).record(rng, now) for _ in range(ENQUEUE_CALLS)]
    recorder = UsageRecorder(db, settings.model_copy(update={"usage_queue_max": ENQUEUE_CALLS}))
    began = time.perf_counter_ns()
    for item in records:
        recorder.record(item)
    mean_ns = (time.perf_counter_ns() - began) / ENQUEUE_CALLS
    # One at a time, for the tail (the clock's own cost is included).
    recorder = UsageRecorder(db, settings.model_copy(update={"usage_queue_max": ENQUEUE_CALLS}))
    samples = []
    clock = time.perf_counter_ns
    for item in records[:50_000]:
        before = clock()
        recorder.record(item)
        samples.append(clock() - before)
    samples.sort()
    p99 = samples[int(len(samples) * 0.99)]
    server_id, tool_id, name = tools[0].key
    built = time.perf_counter_ns()
    for _ in range(50_000):
        UsageRecord(server_id, tool_id, name, now, 12.5, True, None, "gateway")
    build_ns = (time.perf_counter_ns() - built) / 50_000
    print(
        f"   record(): {mean_ns / 1000:.2f} us mean, {p99 / 1000:.2f} us p99 "
        f"(building the UsageRecord: {build_ns / 1000:.2f} us more)",
        flush=True,
    )


async def query_times(ops: LocalOperations, tools: list[Tool]) -> None:
    server = tools[0].key[0]
    busiest = max(tools, key=lambda tool: tool.weight)
    queries: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("analytics(90d)", lambda: ops.analytics("90d")),
        ("server_metrics(90d)", lambda: ops.server_metrics(server, "90d")),
        ("tool_metrics(90d), busiest tool", lambda: ops.tool_metrics(busiest.key[1], None, "90d")),
        ("time_series(all, 90d, 60)", lambda: ops.time_series(None, "90d", buckets=60)),
        ("time_series(server, 90d, 90)", lambda: ops.time_series(server, "90d", buckets=90)),
        ("analytics(24h)", lambda: ops.analytics("24h")),
        ("server_metrics(24h)", lambda: ops.server_metrics(server, "24h")),
        ("analytics(7d)", lambda: ops.analytics("7d")),
    ]
    for name, query in queries:
        times = []
        for _ in range(QUERY_RUNS):
            began = time.perf_counter()
            await query()
            times.append((time.perf_counter() - began) * 1000)
        print(
            f"   {name:<34} first {times[0]:6.1f} ms, "
            f"median {statistics.median(times[1:]):6.1f} ms",
            flush=True,
        )
    view = await ops.analytics("90d")
    print(
        f"   (90d: {sum(view.daily_usage.values()):,} calls, "
        f"p95 {view.p95_response_time_ms or 0:.1f} ms, "
        f"{len(view.failing_tools)} failing tools, today {view.total_calls_today:,})",
        flush=True,
    )


def database_size(path: Path, rows: int) -> None:
    import sqlite3

    size = path.stat().st_size
    print(
        f"   database: {size / 1e6:,.0f} MB for {rows:,} rows = "
        f"{size / 1e6 / (rows / 1e6):,.1f} MB per million rows",
        flush=True,
    )
    with sqlite3.connect(path) as conn:
        try:
            parts = conn.execute(
                "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 8"
            ).fetchall()
        except sqlite3.OperationalError:
            return  # this SQLite has no dbstat
    print("   " + ", ".join(f"{name} {pages / 1e6:,.0f} MB" for name, pages in parts), flush=True)


async def run(directory: Path, rows: int) -> None:
    settings = load_settings(directory)
    db = await open_database(settings)
    ops = LocalOperations(db, settings)
    rng = random.Random(10)
    tools = await make_fleet(ops, rng)
    now = datetime.now(UTC)
    began = time.perf_counter()
    await asyncio.to_thread(generate, db, tools, rows, now, rng)
    print(f"   generated {rows:,} rows in {time.perf_counter() - began:.0f} s", flush=True)
    database_size(directory / "tooldeck.db", rows)
    await query_times(ops, tools)
    enqueue_cost(db, settings, tools)
    await recorder_throughput(db, settings, tools)
    async with db.engine.connect() as conn:
        total = (await conn.execute(text("SELECT count(*) FROM tool_usage"))).scalar()
    print(f"   rows now: {total:,}", flush=True)
    await db.dispose()


def main() -> None:
    rows = int(os.environ.get("TOOLDECK_BENCH_USAGE_ROWS", DEFAULT_ROWS))
    kept = os.environ.get("TOOLDECK_BENCH_DIR")
    print(f"   {rows:,} usage rows, {SERVERS} servers x {TOOLS_PER_SERVER} tools, {DAYS} days")
    if kept:
        directory = Path(kept)
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("tooldeck.db", "tooldeck.db-wal", "tooldeck.db-shm"):
            (directory / name).unlink(missing_ok=True)
        asyncio.run(run(directory, rows))
        return
    with tempfile.TemporaryDirectory(prefix="tooldeck-bench-") as temporary:
        asyncio.run(run(Path(temporary), rows))


if __name__ == "__main__":
    main()
