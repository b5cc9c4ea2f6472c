"""The dashboard (issue 5) over 1,000 servers and 20,000 tools with usage flowing.

A fresh data dir gets 1,000 servers (through the facade), 20 tools each and a day of usage
(through the recorder, so rollups exist); while the dashboard runs headless at 120x36, a feeder
records calls at a steady rate, as a busy gateway would. It measures:
- main-thread time per refresh tick: CPU time of the event loop's thread while one refresh
  (statuses, events, usage figures) is read and applied (target < 50 ms); usage figures are
  read every 10 s, so ticks in between reuse them, and both kinds are measured;
- wall time of a tick with its usage figures, reads included (target < 300 ms);
- key-press-to-repaint latency: a cursor move, pressed and drawn (target < 100 ms), also while a
  refresh is being read;
- memory: the RSS of the process running the dashboard, with everything loaded (target < 300
  MB); the fleet is built by a child process first, so what building it leaves in the
  allocator's arenas is not counted as the dashboard's;
- cold start to first paint: from creating the app to the fleet on screen (target < 1.5 s).

TOOLDECK_BENCH_SERVERS changes the fleet size (tools stay 20 per server).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import insert, select, update

from app.core.settings import Settings, load_settings
from app.core.usage_record import UsageRecord
from app.ops.bootstrap import open_operations
from app.ops.facade import LocalOperations
from app.runtime.usage import UsageRecorder
from app.tui.app import TooldeckApp
from storage.models import ServerTool, ToolServer
from tests.tui_helpers import settle

SERVERS = int(os.environ.get("TOOLDECK_BENCH_SERVERS", "1000"))
TOOLS_PER_SERVER = 20
USAGE_ROWS = 100_000
FEED_PER_SECOND = 200
# Ticks of each kind: twenty, so that the p95 is the 19th of 20 rather than the slowest of 10
# (a pause of the garbage collector lands in one tick of a run or so; the max shows it).
TICKS = 20
KEY_PRESSES = 30
STATUSES = ("running",) * 14 + ("degraded", "error", "stopped", "starting", "stopping")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the ⌈fraction·n⌉-th smallest value."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered), math.ceil(fraction * len(ordered))) - 1)]


async def build_fleet(settings: Settings) -> None:
    rng = random.Random(11)
    ops = await open_operations(settings)
    began = time.monotonic()
    for index in range(SERVERS):
        await ops.create_server(
            {"name": f"srv-{index:04d}", "command": "true", "description": f"bench server {index}"},
            actor="bench",
        )
    servers = [server.id for server in await ops.list_servers()]
    tools: list[tuple[str, str, str]] = []
    async with ops.db.session() as session:
        rows = [
            {"server_id": server_id, "name": f"tool_{number:02d}", "is_available": True}
            for server_id in servers
            for number in range(TOOLS_PER_SERVER)
        ]
        await session.execute(insert(ServerTool), rows)
        for server_id in servers:
            await session.execute(
                update(ToolServer)
                .where(ToolServer.id == server_id)
                .values(
                    status=rng.choice(STATUSES),
                    last_health_check=datetime.now(UTC) - timedelta(seconds=rng.randint(1, 300)),
                    last_startup_success=datetime.now(UTC) - timedelta(hours=rng.randint(1, 90)),
                )
            )
        found = await session.execute(select(ServerTool.server_id, ServerTool.id, ServerTool.name))
        tools = [(server_id, tool_id, name) for server_id, tool_id, name in found]
    now = datetime.now(UTC)
    async with UsageRecorder(ops.db, settings) as recorder:
        for _ in range(USAGE_ROWS):
            server_id, tool_id, name = rng.choice(tools)
            recorder.record(
                usage(rng, server_id, tool_id, name, now - timedelta(hours=24 * rng.random()))
            )
            if recorder.stats().queued > 20_000:
                await recorder.flush()
    print(
        f"   fleet: {SERVERS} servers, {len(tools)} tools, {USAGE_ROWS} calls "
        f"({time.monotonic() - began:.1f} s to build)"
    )
    await ops.db.dispose()


def usage(rng: random.Random, server_id: str, tool_id: str, name: str, at: datetime) -> UsageRecord:
    ok = rng.random() > 0.03
    return UsageRecord(
        server_id=server_id,
        tool_id=tool_id,
        tool_name=name,
        called_at=at,
        response_time_ms=rng.lognormvariate(3, 0.8),
        success=ok,
        error_message=None if ok else "boom",
        source="gateway",
    )


def flowing_core(ops: LocalOperations, settings: Settings) -> Any:
    """The facade with a recorder fed at a steady rate while the dashboard runs."""

    @asynccontextmanager
    async def core(_settings: Settings) -> AsyncIterator[LocalOperations]:
        rng = random.Random(3)
        async with ops.db.session() as session:
            found = await session.execute(
                select(ServerTool.server_id, ServerTool.id, ServerTool.name).limit(5000)
            )
            tools = list(found)
        recorder = UsageRecorder(ops.db, settings)
        await recorder.start()
        ops.recorder = recorder

        async def feed() -> None:
            while True:
                for _ in range(FEED_PER_SECOND // 10):
                    server_id, tool_id, name = rng.choice(tools)
                    recorder.record(usage(rng, server_id, tool_id, name, datetime.now(UTC)))
                await asyncio.sleep(0.1)

        feeder = asyncio.create_task(feed())
        try:
            yield ops
        finally:
            feeder.cancel()
            await recorder.stop()
            ops.recorder = None

    return core


async def measure(settings: Settings, ops: LocalOperations) -> dict[str, Any]:
    from app.tui.screens.main import MainScreen

    results: dict[str, Any] = {}
    began = time.perf_counter()
    app = TooldeckApp(
        settings, core=flowing_core(ops, settings), refresh_interval=3600.0, cursor_blink=False
    )
    async with app.run_test(size=(120, 36)) as pilot:
        ready = time.perf_counter()
        while not (isinstance(app.screen, MainScreen) and app.screen.servers.row_count):  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        results["first_paint_s"] = time.perf_counter() - began
        while not app.screen.loaded:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        results["figures_s"] = time.perf_counter() - began
        results["app_ready_s"] = ready - began
        screen = app.screen
        assert isinstance(screen, MainScreen)
        await settle(pilot)

        tick_cpu: list[float] = []
        tick_wall: list[float] = []
        apply_cpu: list[float] = []
        show_overview = screen.show_overview

        def timed_show(overview: Any) -> None:
            began_apply = time.thread_time()
            show_overview(overview)
            apply_cpu.append((time.thread_time() - began_apply) * 1000)

        screen.show_overview = timed_show  # type: ignore[method-assign]
        light_cpu: list[float] = []
        for index in range(TICKS * 2):
            await asyncio.sleep(0.3)  # let usage flow between ticks
            assert app.data is not None
            full = index % 2 == 0
            if full:
                app.data.invalidate()  # this tick reads the usage figures too
            cpu, wall = time.thread_time(), time.perf_counter()
            screen._tick()
            worker = screen._overview_worker
            if worker is not None:
                await worker.wait()
            if screen._detail_worker is not None:
                await screen._detail_worker.wait()
            spent = (time.thread_time() - cpu) * 1000
            if full:
                tick_cpu.append(spent)
                tick_wall.append((time.perf_counter() - wall) * 1000)
            else:
                light_cpu.append(spent)
        results["light_cpu_ms"] = light_cpu
        results["tick_cpu_ms"] = tick_cpu
        results["tick_wall_ms"] = tick_wall
        results["apply_cpu_ms"] = apply_cpu

        presses: list[float] = []
        busy_presses: list[float] = []
        for index in range(KEY_PRESSES):
            busy = index % 2 == 1
            if busy:
                screen.reload()  # a refresh is being read while the key arrives
                await asyncio.sleep(0.05)
            key = "down" if index % 4 < 2 else "up"
            (busy_presses if busy else presses).append(await key_to_repaint(app, screen, key))
            await settle(pilot, rounds=1)
        results["key_ms"] = presses
        results["key_busy_ms"] = busy_presses
        results["rss_mb"] = psutil.Process().memory_info().rss / 2**20
        results["rows"] = screen.servers.row_count
        await app.action_quit()
    return results


async def key_to_repaint(app: TooldeckApp, screen: Any, key: str) -> float:
    """Milliseconds from a key arriving to the frame that shows its effect.

    Pilot.press waits until the whole process is idle, reader thread included, which is not
    what a user waits for: here the clock stops when the cursor has moved and the screen has
    been redrawn after it.
    """
    table = screen.servers
    before = table.cursor_row
    painted = asyncio.Event()
    began = time.perf_counter()
    app.simulate_key(key)
    while table.cursor_row == before:  # noqa: ASYNC110 - polling the widget is the measurement
        await asyncio.sleep(0)
    app.call_after_refresh(painted.set)
    await painted.wait()
    return (time.perf_counter() - began) * 1000


def report(results: dict[str, Any]) -> None:
    def line(label: str, values: list[float], target: float) -> None:
        p50, p95 = statistics.median(values), percentile(values, 0.95)
        verdict = "ok" if p95 < target else "OVER"
        print(
            f"   {label:<34} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  max {max(values):7.1f} ms  "
            f"(target < {target:.0f}) {verdict}"
        )

    print(f"   rows shown: {results['rows']}")
    line("refresh tick, main-thread CPU", results["tick_cpu_ms"], 50)
    line("  a tick on cached usage figures", results["light_cpu_ms"], 50)
    line("  of which the table diff", results["apply_cpu_ms"], 50)
    line("refresh tick, wall (reads included)", results["tick_wall_ms"], 300)
    line("key press to repaint", results["key_ms"], 100)
    line("key press during a refresh", results["key_busy_ms"], 100)
    rss = results["rss_mb"]
    verdict = "ok" if rss < 300 else "OVER"
    print(f"   {'memory (RSS)':<34} {rss:7.1f} MB  (target < 300) {verdict}")
    first = results["first_paint_s"]
    verdict = "ok" if first < 1.5 else "OVER"
    print(
        f"   {'cold start to first paint':<34} {first:7.2f} s   "
        f"(app ready {results['app_ready_s']:.2f} s, usage figures {results['figures_s']:.2f} s;"
        f" target < 1.5) {verdict}"
    )


def bench_settings(home: Path) -> Settings:
    return load_settings(home, {"mcp_enabled": False})


async def run(home: Path) -> None:
    settings = bench_settings(home)
    ops = await open_operations(settings)
    try:
        report(await measure(settings, ops))
    finally:
        await ops.db.dispose()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tooldeck-bench-dashboard-") as home:
        # The fleet is built in a child process: the hundred thousand records it makes would
        # stay in this process's arenas and be counted as the dashboard's memory.
        subprocess.run(
            [sys.executable, "-m", "tests.benchmarks.bench_dashboard", "--build", home],
            check=True,
        )
        asyncio.run(run(Path(home)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--build"]:
        asyncio.run(build_fleet(bench_settings(Path(sys.argv[2]))))
    else:
        main()
