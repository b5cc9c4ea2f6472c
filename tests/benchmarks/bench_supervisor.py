"""Supervisor figures: 50 stdio servers (tests/servers/tiny.py, the SDK's low-level Server).

Measures the time until all 50 run when started at once, the supervisor's own memory per
managed server, the wall time of one health sweep over all of them, the time to notice a
killed child, and the time to stop them all. Targets (issue 3): sweep < 1 s, kill noticed
< 1 s, < 1 MB of supervisor memory per server.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil

from app.core.settings import load_settings
from app.ops.bootstrap import open_database
from app.ops.facade import LocalOperations
from app.runtime.supervisor import Supervisor
from tests.conftest import PYTHON, TEST_SERVERS

SERVERS = 50
KILLS = 5


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


async def bench(data_dir: Path) -> dict[str, float]:
    os.environ["MCP_ENABLED"] = "false"
    settings = load_settings(data_dir, {"start_concurrency": SERVERS})
    db = await open_database(settings)
    ops = LocalOperations(db, settings)
    for index in range(SERVERS):
        await ops.create_server(
            {
                "name": f"tiny-{index:02d}",
                "command": PYTHON,
                "args": [str(TEST_SERVERS / "tiny.py")],
            },
            actor="bench",
        )
    supervisor = Supervisor(db, settings, changes=ops.changes)
    ops.runtime = supervisor
    ids = [server.id for server in await ops.list_servers()]
    # Warm the code paths (imports, SQL compilation) so the baseline holds them already.
    await ops.check_health(ids[0])
    before = rss()
    threads_before = threading.active_count()

    began = time.monotonic()
    await supervisor.startup()
    await supervisor.wait_autostart()
    start_all = time.monotonic() - began
    running = len(await ops.list_servers(status="running"))
    assert running == SERVERS, f"only {running} of {SERVERS} running"

    sweep_began = time.monotonic()
    results = await supervisor.check_all(ids)
    sweep = time.monotonic() - sweep_began
    assert all(result.is_responsive for result in results)
    second = time.monotonic()
    await supervisor.check_all(ids)
    sweep_again = time.monotonic() - second

    after = rss()
    threads_after = threading.active_count()
    children_rss = sum(
        child.memory_info().rss for child in psutil.Process().children(recursive=True)
    )

    notices: list[float] = []
    for server_id in ids[:KILLS]:
        info = await supervisor.runtime_info(server_id)
        assert info.pid is not None
        os.kill(info.pid, signal.SIGKILL)
        killed = time.monotonic()
        # Polled every millisecond from outside, as a person (or the dashboard) would see it.
        while supervisor.connection(server_id) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        notices.append(time.monotonic() - killed)

    stop_began = time.monotonic()
    await supervisor.shutdown()
    stop_all = time.monotonic() - stop_began
    left = psutil.Process().children(recursive=True)
    await db.dispose()
    return {
        "start_all_s": start_all,
        "sweep_s": sweep,
        "sweep_again_s": sweep_again,
        "rss_per_server_kb": (after - before) / SERVERS / 1024,
        "threads_added": threads_after - threads_before,
        "child_rss_mb": children_rss / SERVERS / 1024 / 1024,
        "notice_median_ms": statistics.median(notices) * 1000,
        "notice_max_ms": max(notices) * 1000,
        "stop_all_s": stop_all,
        "children_left": len(left),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tooldeck-bench-") as tmp:
        figures = asyncio.run(bench(Path(tmp)))
    cpus = os.cpu_count()
    print(f"   {SERVERS} stdio servers (low-level SDK Server), {cpus} CPUs")
    print(f"   start all at once, until all running   {figures['start_all_s']:7.2f} s")
    print(
        f"   one health sweep over all {SERVERS}          {figures['sweep_s'] * 1000:7.0f} ms"
        f"   (again: {figures['sweep_again_s'] * 1000:.0f} ms; target < 1000 ms)"
    )
    print(
        f"   supervisor RSS per managed server      {figures['rss_per_server_kb']:7.0f} KB"
        "   (target < 1024 KB)"
    )
    print(f"   threads added by {SERVERS} running servers    {figures['threads_added']:7.0f}")
    print(f"   each server process's own RSS          {figures['child_rss_mb']:7.1f} MB")
    print(
        f"   killed child noticed after             {figures['notice_median_ms']:7.1f} ms"
        f"   (median of {KILLS}, max {figures['notice_max_ms']:.1f} ms; target < 1000 ms)"
    )
    print(f"   stop all {SERVERS}                            {figures['stop_all_s']:7.2f} s")
    print(f"   child processes left after shutdown    {figures['children_left']:7d}")


if __name__ == "__main__":
    main()
