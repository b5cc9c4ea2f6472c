"""SQLite against PostgreSQL on the same work, in the same run (issue 17).

For each backend, on a fresh database (PostgreSQL: a server this benchmark starts, durable as a
real one: fsync and full_page_writes on, synchronous_commit off, which is what SQLite's WAL with
synchronous=NORMAL promises too):
- usage ingest: rows per second from record() to committed, through the recorder and its writer
  (target >= 50,000 rows/s);
- analytics over many rows spread over 90 days, through the facade (target < 50 ms a query);
- the dashboard's figures of all servers (list_servers and the fleet's analytics) at 1,000
  servers with a day of usage (target < 50 ms).

TOOLDECK_BENCH_SHORT=1 runs a quick version (fewer rows: figures for a smoke test, not for the
targets); TOOLDECK_BENCH_USAGE_ROWS sets the analytics rows (default 2,000,000, short 200,000:
the queries read the rollups, whose size follows tools x hours, not rows; bench_usage measures
SQLite at 10,000,000, and TOOLDECK_BENCH_USAGE_ROWS=10000000 does the same here);
TOOLDECK_BENCH_BACKENDS=sqlite or =postgresql runs one of them.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.core.settings import Settings, load_settings
from app.ops.bootstrap import open_database
from app.ops.facade import LocalOperations
from tests.benchmarks import bench_dashboard, bench_usage
from tests.pg_server import PgServer, postgres_server

SHORT = os.environ.get("TOOLDECK_BENCH_SHORT") == "1"
ROWS = int(os.environ.get("TOOLDECK_BENCH_USAGE_ROWS", 200_000 if SHORT else 2_000_000))
INGEST_ROWS = 50_000 if SHORT else 400_000
DASHBOARD_SERVERS = 1000
DASHBOARD_USAGE_ROWS = 20_000 if SHORT else 100_000
RUNS = 7
# A durable server: what a deployment runs, not the test session's throwaway settings.
DURABLE = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "off"}


def backends() -> list[str]:
    wanted = os.environ.get("TOOLDECK_BENCH_BACKENDS", "sqlite,postgresql")
    return [name.strip() for name in wanted.split(",") if name.strip()]


@asynccontextmanager
async def facade(home: Path, server: PgServer | None, name: str) -> AsyncIterator[LocalOperations]:
    settings = load_settings(home / name, {"mcp_enabled": False})
    if server is not None:
        settings = settings.model_copy(update={"database_url": server.create_database(name)})
    db = await open_database(settings)
    try:
        yield LocalOperations(db, settings)
    finally:
        await db.dispose()


async def timed(query: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """First and median run times of `query`, in ms."""
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        await query()
        times.append((time.perf_counter() - began) * 1000)
    return times[0], statistics.median(times[1:])


async def ingest(ops: LocalOperations, settings: Settings) -> float:
    tools = await bench_usage.make_fleet(ops, random.Random(10))
    rng = random.Random(11)
    records = [rng.choice(tools).record(rng, datetime.now(UTC)) for _ in range(INGEST_ROWS)]
    from app.runtime.usage import UsageRecorder

    recorder = UsageRecorder(ops.db, settings.model_copy(update={"usage_queue_max": INGEST_ROWS}))
    await recorder.start()
    began = time.perf_counter()
    for index, item in enumerate(records):
        recorder.record(item)
        if index % 2000 == 0:
            await asyncio.sleep(0)
    await recorder.stop()
    elapsed = time.perf_counter() - began
    assert recorder.stats().written == INGEST_ROWS, recorder.stats()
    return INGEST_ROWS / elapsed


async def analytics(ops: LocalOperations) -> dict[str, tuple[float, float]]:
    rng = random.Random(10)
    tools = await bench_usage.make_fleet(ops, rng)
    began = time.perf_counter()
    await asyncio.to_thread(bench_usage.generate, ops.db, tools, ROWS, datetime.now(UTC), rng)
    print(f"   generated {ROWS:,} rows in {time.perf_counter() - began:.0f} s", flush=True)
    server = tools[0].key[0]
    busiest = max(tools, key=lambda tool: tool.weight)
    return {
        "analytics(90d)": await timed(lambda: ops.analytics("90d")),
        "server_metrics(90d)": await timed(lambda: ops.server_metrics(server, "90d")),
        "tool_metrics(90d)": await timed(lambda: ops.tool_metrics(busiest.key[1], None, "90d")),
        "time_series(all, 90d, 60)": await timed(lambda: ops.time_series(None, "90d", buckets=60)),
        "analytics(24h)": await timed(lambda: ops.analytics("24h")),
    }


async def fleet_figures(home: Path, server: PgServer | None, backend: str) -> tuple[float, float]:
    settings = load_settings(home / f"{backend}-fleet", {"mcp_enabled": False})
    if server is not None:
        url = server.create_database(f"{backend}_fleet")
        settings = settings.model_copy(update={"database_url": url})
    bench_dashboard.USAGE_ROWS = DASHBOARD_USAGE_ROWS
    bench_dashboard.SERVERS = DASHBOARD_SERVERS
    ops = await bench_dashboard.build_fleet(settings)
    try:

        async def figures() -> None:
            await asyncio.gather(ops.list_servers(), ops.analytics("24h"))

        return await timed(figures)
    finally:
        await ops.db.dispose()


async def run(home: Path, backend: str, server: PgServer | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with facade(home, server, f"{backend}_ingest") as ops:
        results["ingest rows/s"] = await ingest(ops, ops.settings)
    async with facade(home, server, f"{backend}_analytics") as ops:
        results.update(await analytics(ops))
    results["figures of 1,000 servers"] = await fleet_figures(home, server, backend)
    return results


def main() -> None:
    mode = "short" if SHORT else "full"
    print(f"   {mode}: {ROWS:,} rows for analytics, {INGEST_ROWS:,} ingested", flush=True)
    table: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tooldeck-bench-backends-") as temporary:
        for backend in backends():
            started: AbstractContextManager[Any] = (
                postgres_server("bench", settings=DURABLE)
                if backend == "postgresql"
                else nullcontext()
            )
            with started as server:
                if server is not None:
                    print(f"   {server.version} from {server.source}", flush=True)
                table[backend] = asyncio.run(run(Path(temporary), backend, server))
    names = list(next(iter(table.values())))
    print(f"   {'':<28}" + "".join(f"{backend:>24}" for backend in table))
    for name in names:
        cells = []
        for backend in table:
            value = table[backend][name]
            if isinstance(value, tuple):
                cells.append(f"{value[1]:8.1f} ms (1st {value[0]:6.1f})")
            else:
                cells.append(f"{value:,.0f}")
        print(f"   {name:<28}" + "".join(f"{cell:>24}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
