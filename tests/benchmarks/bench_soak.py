"""Soak: gateway calls from 8 clients for minutes while a server is restarted again and again.

A daemon runs two stdio servers on the standard library alone (tests/servers/bare.py): `steady`,
left alone, and `phoenix`, restarted through the API every `BENCH_SOAK_RESTART_S` (2 s). Eight
MCP clients on the daemon's `/mcp` call `whoami` of each in turn, as fast as they are answered,
for `BENCH_SOAK_S` seconds (600; `BENCH_SOAK_S=30 make bench` for a short run).

Reported, beside the targets:
- calls lost: a call to `steady` that failed, or any call that got no answer at all (an
  exception other than a tool error, a timeout). Target 0. A call to `phoenix` while it
  restarts may fail, with a clear error: counted apart, as refused;
- the daemon's RSS and open file descriptors after a warm-up and at the end (growth: a leak);
- its child processes at the end (two servers, nothing left of the restarts);
- the usage rows written against the calls answered, after the daemon stopped.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import psutil
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.conftest import PYTHON, TEST_SERVERS
from tests.daemon_helpers import Daemon, daemon_env, start_daemon, wait_for

SOAK_S = float(os.environ.get("BENCH_SOAK_S", "600"))
RESTART_EVERY_S = float(os.environ.get("BENCH_SOAK_RESTART_S", "2"))
CLIENTS = 8
WARMUP_S = min(10.0, SOAK_S / 5)
CALL_TIMEOUT_S = 30.0
SERVERS = ("steady", "phoenix")
ARGS = ("--arg=-I", "--arg=-S", f"--arg={TEST_SERVERS / 'bare.py'}")


@dataclass
class Tally:
    answered: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # a clear error from the gateway
    lost: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)


def add_servers(home: Path) -> None:
    for name in SERVERS:
        subprocess.run(
            [sys.executable, "-m", "app", "server", "add", name, "--command", PYTHON, *ARGS],
            env=daemon_env(home, MCP_ENABLED="false"),
            check=True,
            capture_output=True,
        )


def footprint(pid: int) -> tuple[float, int, int]:
    """RSS (MiB), open descriptors and live children of the daemon."""
    process = psutil.Process(pid)
    children = [c for c in process.children() if c.status() != psutil.STATUS_ZOMBIE]
    return process.memory_info().rss / 2**20, process.num_fds(), len(children)


async def client(daemon: Daemon, tally: Tally, until: float) -> None:
    headers = {"Authorization": f"Bearer {daemon.token}"} if daemon.token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(CALL_TIMEOUT_S)) as http,
        streamable_http_client(f"{daemon.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        await session.list_tools()
        turn = 0
        while time.monotonic() < until:
            server = SERVERS[turn % 2]
            turn += 1
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    result = await session.call_tool(f"{server}__whoami", {})
            except MCPError as exc:
                outcome, reason = ("refused" if server == "phoenix" else "lost"), str(exc)
            except Exception as exc:
                outcome, reason = "lost", f"{type(exc).__name__}: {exc}"
            else:
                if not result.is_error:
                    tally.answered[server] += 1
                    continue
                text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
                outcome, reason = ("refused" if server == "phoenix" else "lost"), str(text)
            getattr(tally, outcome)[server] += 1
            tally.reasons[f"{server}: {reason[:100]}"] += 1


async def restarter(daemon: Daemon, until: float) -> int:
    restarts = 0
    headers = daemon.headers()
    async with httpx2.AsyncClient(base_url=daemon.url, headers=headers, timeout=60) as http:
        while time.monotonic() < until:
            await asyncio.sleep(RESTART_EVERY_S)
            answer = await http.post("/api/v1/toolservers/servers/phoenix/restart")
            restarts += answer.status_code == 200
    return restarts


async def soak(daemon: Daemon) -> tuple[Tally, int, tuple[float, int, int], int]:
    """The soak's tally, the restarts, the footprint after the warm-up, and the warm-up's calls."""
    tally, warmup = Tally(), Tally()
    warm = time.monotonic() + WARMUP_S
    await asyncio.gather(*(client(daemon, warmup, warm) for _ in range(CLIENTS)))
    before = footprint(daemon.pid)
    until = time.monotonic() + SOAK_S
    _, restarts = await asyncio.gather(
        asyncio.gather(*(client(daemon, tally, until) for _ in range(CLIENTS))),
        restarter(daemon, until),
    )
    warm_calls = sum(sum(c.values()) for c in (warmup.answered, warmup.refused, warmup.lost))
    return tally, restarts, before, warm_calls


def usage_rows(home: Path) -> int:
    with sqlite3.connect(home / "tooldeck.db", timeout=30) as db:
        return int(db.execute("SELECT count(*) FROM tool_usage").fetchone()[0])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tooldeck-soak-") as scratch:
        home = Path(scratch) / "home"
        home.mkdir()
        add_servers(home)
        daemon = start_daemon(home, env=daemon_env(home, MCP_ENABLED="false"))
        try:
            wait_for(lambda: footprint(daemon.pid)[2] == 2, timeout_s=60)
            rows_before = usage_rows(home)
            tally, restarts, before, warm_calls = asyncio.run(soak(daemon))
            after = footprint(daemon.pid)
        finally:
            daemon.stop()
        recorded = usage_rows(home) - rows_before - warm_calls
    answered = sum(tally.answered.values())
    print(
        f"   {SOAK_S:.0f} s, {CLIENTS} clients, {restarts} restarts of phoenix: "
        f"{answered} calls answered ({answered / SOAK_S:.0f}/s), "
        f"{sum(tally.refused.values())} refused while phoenix restarted"
    )
    lost = sum(tally.lost.values())
    print(f"   calls lost: {lost} (target 0)")
    for reason, count in tally.reasons.most_common(5):
        print(f"     {count} x {reason}")
    print(
        f"   daemon RSS {before[0]:.1f} -> {after[0]:.1f} MiB ({after[0] - before[0]:+.1f}); "
        f"open fds {before[1]} -> {after[1]}; children {before[2]} -> {after[2]} (target 2)"
    )
    print(
        f"   usage rows written: {recorded} for {answered + sum(tally.refused.values())} calls "
        "answered or refused (rows include refused calls)"
    )
