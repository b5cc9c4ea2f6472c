"""Several nodes on one PostgreSQL: how fast a change reaches the others, and what retention
costs with usage partitioned by day (issue 18).

- change buses: two relays in this process, each on its own connection, as two nodes have; the
  time from a publish on one bus to the other bus's listener, p50/p95 over CHANGES changes;
- end to end: NODES real daemons (`tooldeck --headless`) on one database, each with an MCP client
  on its gateway; a tool is disabled and enabled in turn through node B's API, and the time from
  sending the request to each client's `tools/list_changed` is taken. The baseline is B's own
  client (the change made where it is heard): the other nodes' figures are also given as a ratio
  to it;
- the database connections the nodes hold, after start and after the changes;
- gateway calls per second (calculator's `add`, IN_FLIGHT at a time): through one node, then
  through every node at once, as a ratio; on this machine the nodes share its cores;
- retention: the same usage rows (RETENTION_DAYS days of RETENTION_ROWS_PER_DAY) pruned from the
  partitioned table (whole days dropped) and from the table as it was before migration 0011
  (rows deleted, then the VACUUM that deleting calls for), as a ratio.

The PostgreSQL server is durable, as a deployment's (fsync and full_page_writes on,
synchronous_commit off). TOOLDECK_BENCH_SHORT=1 runs fewer changes and rows.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
from mcp import ClientSession
from sqlalchemy import text

from app.core.changes import Change, ChangeBus
from app.runtime.change_relay import ChangeRelay
from storage.db import Database
from storage.retention import prune_old_rows
from storage.usage_partitions import make_ahead
from tests.daemon_helpers import Daemon, daemon_env, start_daemon
from tests.gateway_helpers import RecordingClient, over_http
from tests.pg_server import PgServer, postgres_server

SHORT = os.environ.get("TOOLDECK_BENCH_SHORT") == "1"
CHANGES = 20 if SHORT else 50
NODES = 3
RETENTION_DAYS = 10
RETENTION_ROWS_PER_DAY = 10_000 if SHORT else 100_000
DURABLE = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "off"}
# Between two changes: the gateways' reloads of one change are over before the next begins.
SETTLE_S = 0.3
LIST_CHANGED = "notifications/tools/list_changed"
TOOL = "/api/v1/toolservers/tools/add/{verb}?server=calculator"
RATE_CALLS = 200 if SHORT else 1000
IN_FLIGHT = 8


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def line(name: str, samples: list[float], baseline: list[float] | None = None) -> str:
    p50, p95 = percentiles(samples)
    text_ = f"   {name:<44} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms"
    if baseline is not None:
        text_ += f"   x{p50 / percentiles(baseline)[0]:.2f} of the baseline's p50"
    return text_


# ---- change bus to change bus -------------------------------------------------------------


async def bus_to_bus(url: str) -> list[float]:
    dbs = [Database(url), Database(url)]
    sender, receiver = (ChangeRelay(ChangeBus(), db) for db in dbs)
    heard = asyncio.Event()
    arrived: list[float] = []

    def listener(_change: Change, _server_id: str | None) -> None:
        arrived.append(time.perf_counter())
        heard.set()

    receiver.bus.subscribe(listener)
    await sender.start()
    await receiver.start()
    samples = []
    try:
        for n in range(CHANGES):
            heard.clear()
            began = time.perf_counter()
            sender.bus.publish(Change.TOOLS, f"server-{n}")
            await asyncio.wait_for(heard.wait(), 10)
            samples.append((arrived[-1] - began) * 1000)
    finally:
        for relay in (sender, receiver):
            await relay.stop()
        for db in dbs:
            await db.dispose()
    return samples


# ---- daemon to daemon ----------------------------------------------------------------------


class StampingClient(RecordingClient):
    """A gateway client that notes when each `tools/list_changed` arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()
        self.at = 0.0

    async def on_message(self, message: Any) -> None:
        if getattr(message, "method", "") == LIST_CHANGED and not self.changed.is_set():
            self.at = time.perf_counter()
            self.changed.set()


@asynccontextmanager
async def clients(daemons: list[Daemon]) -> AsyncIterator[list[StampingClient]]:
    async with AsyncExitStack() as stack:
        made = []
        for daemon in daemons:
            client = StampingClient()
            session: ClientSession = await stack.enter_async_context(
                over_http(f"{daemon.url}/mcp", client, daemon.token)
            )
            await session.list_tools()
            made.append(client)
        yield made


async def node_to_node(daemons: list[Daemon]) -> list[list[float]]:
    """Per node, the times from B's API request to that node's client hearing of it."""
    changer = daemons[1]
    samples: list[list[float]] = [[] for _ in daemons]
    async with (
        clients(daemons) as listening,
        httpx2.AsyncClient(
            base_url=changer.url, headers=changer.headers(), trust_env=False, timeout=30
        ) as http,
    ):
        for n in range(CHANGES):
            await asyncio.sleep(SETTLE_S)
            for client in listening:
                client.changed.clear()
            began = time.perf_counter()
            answer = await http.post(TOOL.format(verb="disable" if n % 2 == 0 else "enable"))
            answer.raise_for_status()
            await asyncio.wait_for(
                asyncio.gather(*(client.changed.wait() for client in listening)), 10
            )
            for index, client in enumerate(listening):
                samples[index].append((client.at - began) * 1000)
    return samples


async def call_rate(daemons: list[Daemon]) -> float:
    """Gateway calls per second over all `daemons` at once, IN_FLIGHT calls at a time on each."""
    async with AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(
                over_http(f"{daemon.url}/mcp", RecordingClient(), daemon.token)
            )
            for daemon in daemons
        ]
        for session in sessions:  # the server started and the route known before the clock
            await session.call_tool("calculator__add", {"a": 1, "b": 2})

        async def worker(session: ClientSession) -> None:
            for n in range(RATE_CALLS // IN_FLIGHT):
                result = await session.call_tool("calculator__add", {"a": n, "b": 1})
                assert not result.is_error, result

        began = time.perf_counter()
        await asyncio.gather(*(worker(s) for s in sessions for _ in range(IN_FLIGHT)))
        return len(sessions) * (RATE_CALLS // IN_FLIGHT) * IN_FLIGHT / (time.perf_counter() - began)


async def connections_of(url: str) -> int:
    """Connections to the database of `url` (this one's own not counted)."""
    db = Database(url)
    try:
        async with db.read() as session:
            found = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return int(found or 0)
    finally:
        await db.dispose()


def start_fleet(home: Path, url: str) -> list[Daemon]:
    daemons: list[Daemon] = []
    try:
        for index in range(NODES):
            node_home = home / f"node{index}" / "home"
            daemons.append(
                start_daemon(node_home, env=daemon_env(node_home, TOOLDECK_DATABASE_URL=url))
            )
    except BaseException:
        for daemon in daemons:
            daemon.stop()
        raise
    return daemons


# ---- retention -------------------------------------------------------------------------------

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)


async def fill(db: Database) -> int:
    """RETENTION_DAYS whole days of rows, ending the day before the cutoff day."""
    first = (NOW - timedelta(days=RETENTION_DAYS + 1)).replace(hour=0)
    async with db.session() as session:
        await session.execute(
            text(
                "INSERT INTO tool_usage (server_id, tool_id, tool_name, called_at,"
                " response_time_ms, success, outcome, source, latency_bucket)"
                " SELECT 's' || (n % 20), 't' || (n % 200), 'tool' || (n % 200),"
                " CAST(:first AS timestamptz) + n * (86400.0 / :per_day) * interval '1 second',"
                " (n % 500)::float, n % 17 <> 0, 'ok', 'gateway', (n % 40)::smallint"
                " FROM generate_series(0, :rows - 1) AS n"
            ),
            {
                "first": first,
                "per_day": RETENTION_ROWS_PER_DAY,
                "rows": RETENTION_DAYS * RETENTION_ROWS_PER_DAY,
            },
        )
    return RETENTION_DAYS * RETENTION_ROWS_PER_DAY


async def retention(server: PgServer) -> dict[str, float]:
    figures: dict[str, float] = {}
    for kind in ("partitioned", "rows"):
        db = Database(server.create_database(f"retention_{kind}"))
        try:
            await db.upgrade()
            if kind == "rows":
                await db.downgrade("0009_oauth")
            else:
                first = (NOW - timedelta(days=RETENTION_DAYS + 1)).date()
                await make_ahead(db, first, days_ahead=RETENTION_DAYS + 2)
            rows = await fill(db)
            async with db.engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                    text("VACUUM ANALYZE tool_usage")
                )
            began = time.perf_counter()
            pruned = await prune_old_rows(db, 1, now=NOW)
            figures[f"{kind} prune s"] = time.perf_counter() - began
            assert pruned["usage"] == rows, pruned
            began = time.perf_counter()
            async with db.engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                    text("VACUUM tool_usage")
                )
            figures[f"{kind} vacuum s"] = time.perf_counter() - began
        finally:
            await db.dispose()
    figures["rows"] = RETENTION_DAYS * RETENTION_ROWS_PER_DAY
    return figures


# ---- the run -------------------------------------------------------------------------------


def main() -> None:
    mode = "short" if SHORT else "full"
    print(f"   {mode}: {CHANGES} changes, {NODES} nodes", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="tooldeck-bench-fleet-") as temporary,
        postgres_server("bench", settings=DURABLE) as server,
    ):
        print(f"   {server.version} from {server.source}", flush=True)
        print(
            line(
                "change bus to change bus", asyncio.run(bus_to_bus(server.create_database("buses")))
            )
        )
        fleet_url = server.create_database("fleet")
        daemons = start_fleet(Path(temporary), fleet_url)
        try:
            idle = asyncio.run(connections_of(fleet_url))
            per_node = asyncio.run(node_to_node(daemons))
            busy = asyncio.run(connections_of(fleet_url))
            one_node = asyncio.run(call_rate(daemons[:1]))
            all_nodes = asyncio.run(call_rate(daemons))
        finally:
            for daemon in daemons:
                daemon.stop()
        local = per_node[1]
        print(line("API of B to a gateway client of B (baseline)", local))
        for index, samples in enumerate(per_node):
            if index != 1:
                print(line(f"API of B to a gateway client of node {index}", samples, local))
        print(
            f"   database connections of {NODES} nodes: {idle} after start,"
            f" {busy} after the changes",
            flush=True,
        )
        print(
            f"   gateway calls/s, {IN_FLIGHT} in flight a node: one node {one_node:,.0f},"
            f" {NODES} nodes at once {all_nodes:,.0f} (x{all_nodes / one_node:.2f})",
            flush=True,
        )
        figures = asyncio.run(retention(server))
        drop = figures["partitioned prune s"] + figures["partitioned vacuum s"]
        delete = figures["rows prune s"] + figures["rows vacuum s"]
        bare = figures["rows prune s"] / figures["partitioned prune s"]
        print(
            f"   retention of {figures['rows']:,.0f} rows over {RETENTION_DAYS} days:"
            f" drop partitions {figures['partitioned prune s']:.2f} s"
            f" (+ vacuum {figures['partitioned vacuum s']:.2f} s),"
            f" delete rows {figures['rows prune s']:.2f} s"
            f" (+ vacuum {figures['rows vacuum s']:.2f} s):"
            f" deleting costs x{bare:.0f}, x{delete / drop:.0f} with the vacuum",
            flush=True,
        )


if __name__ == "__main__":
    main()
