"""Gateway overhead against a direct connection, with usage recording on.

Upstream: the `echo` tool of server-everything (npm, installed by the benchmark itself), which
answers fast enough not to hide our own cost. Client: the SDK's `ClientSession`. Load: 1000
sequential calls (p50), then 2000 calls at 8 in flight (throughput). Each round measures every
path once, interleaved; added latency and throughput ratio are paired per round (path minus,
over, direct of the same round) and the median over rounds is printed, beside the targets:

- stdio face (`gateway --stdio`, in-process and bridged to a daemon): at most +0.35 ms at p50,
  at least 0.55 of direct throughput;
- HTTP face (the daemon's `/mcp`): at most +1.2 ms at p50, at least 0.25 of direct;
- per-server and profile endpoints: the same as the aggregated one.

`BENCH_GATEWAY_ROUNDS` (3), `BENCH_GATEWAY_CALLS` (1000) and `BENCH_GATEWAY_PATHS` (a comma list
of the paths below) tune a run. The slow-tool check reports echo's
p50 while 8 calls of a 1 s tool are in flight on the same session (BENCH_GATEWAY_SLOW=1).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.daemon_helpers import Daemon, daemon_env, start_daemon
from tests.npm_peers import install_server_everything

ROUNDS = int(os.environ.get("BENCH_GATEWAY_ROUNDS", "3"))
CALLS = int(os.environ.get("BENCH_GATEWAY_CALLS", "1000"))
CONCURRENT_CALLS = 2 * CALLS
IN_FLIGHT = 8
WARMUP = 50
ALL_PATHS = ("direct", "stdio", "stdio-server", "bridge", "http", "http-server", "http-profile")
PATHS = tuple(p for p in os.environ.get("BENCH_GATEWAY_PATHS", ",".join(ALL_PATHS)).split(",") if p)
# (added p50 ms at most, throughput ratio at least) by face
TARGETS = {"stdio": (0.35, 0.55), "http": (1.2, 0.25)}


@dataclass
class Figures:
    p50_ms: float
    per_s: float


@dataclass
class Fleet:
    entry: Path
    solo: Path  # no daemon: `gateway --stdio` runs the server in-process
    daemon: Daemon


def env_of(home: Path) -> dict[str, str]:
    return daemon_env(home, MCP_ENABLED="false")


def add_everything(home: Path, entry: Path) -> None:
    for args in (
        ["server", "add", "everything", "--command", "node", "--arg", str(entry), "--arg", "stdio"],
        ["profile", "add", "echo-only", "--server", "everything", "--tool", "echo"],
    ):
        subprocess.run(
            [sys.executable, "-m", "app", *args], env=env_of(home), check=True, capture_output=True
        )


@asynccontextmanager
async def over_stdio(params: StdioServerParameters) -> AsyncIterator[ClientSession]:
    with open(os.devnull, "w") as errlog:  # noqa: ASYNC230 (opening /dev/null does not block)
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


@asynccontextmanager
async def over_http(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120))
        )
        read, write = await stack.enter_async_context(streamable_http_client(url, http_client=http))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        yield session


def gateway(home: Path, *args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "app", "gateway", "--stdio", *args], env=env_of(home)
    )


def connect(fleet: Fleet, path: str) -> tuple[AbstractAsyncContextManager[ClientSession], str]:
    """A session on `path` and the name echo has there."""
    url, token = fleet.daemon.url, fleet.daemon.token
    match path:
        case "direct":
            params = StdioServerParameters(command="node", args=[str(fleet.entry), "stdio"])
            return over_stdio(params), "echo"
        case "stdio":
            return over_stdio(gateway(fleet.solo)), "everything__echo"
        case "stdio-server":
            return over_stdio(gateway(fleet.solo, "--server", "everything")), "echo"
        case "bridge":
            return over_stdio(gateway(fleet.daemon.data_dir)), "everything__echo"
        case "http":
            return over_http(f"{url}/mcp", token), "everything__echo"
        case "http-server":
            return over_http(f"{url}/mcp/servers/everything", token), "echo"
        case "http-profile":
            return over_http(f"{url}/mcp/profiles/echo-only", token), "everything__echo"
    raise ValueError(path)


async def measure(session: ClientSession, echo: str) -> Figures:
    await session.list_tools()  # the SDK lists before calling a tool it has not seen
    for _ in range(WARMUP):
        await session.call_tool(echo, {"message": "warm"})
    latencies: list[float] = []
    for _ in range(CALLS):
        began = time.perf_counter()
        await session.call_tool(echo, {"message": "hello"})
        latencies.append((time.perf_counter() - began) * 1000)
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> None:
        async with limit:
            result = await session.call_tool(echo, {"message": "hello"})
            assert not result.is_error, result

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(CONCURRENT_CALLS)))
    return Figures(statistics.median(latencies), CONCURRENT_CALLS / (time.perf_counter() - began))


async def slow_tool(session: ClientSession, echo: str, slow: str) -> tuple[float, float]:
    """echo's p50 alone, then while 8 calls of a 1 s tool are in flight."""

    async def p50(count: int) -> float:
        latencies = []
        for _ in range(count):
            began = time.perf_counter()
            await session.call_tool(echo, {"message": "x"})
            latencies.append((time.perf_counter() - began) * 1000)
        return statistics.median(latencies)

    await session.list_tools()
    quiet = await p50(200)
    busy = [
        asyncio.ensure_future(session.call_tool(slow, {"duration": 1, "steps": 1}))
        for _ in range(IN_FLIGHT)
    ]
    await asyncio.sleep(0.05)
    during = await p50(200)
    await asyncio.gather(*busy)
    return quiet, during


async def run(fleet: Fleet) -> dict[str, list[Figures]]:
    results: dict[str, list[Figures]] = {path: [] for path in PATHS}
    for number in range(ROUNDS):
        for path in PATHS:
            opened, echo = connect(fleet, path)
            async with opened as session:
                results[path].append(await measure(session, echo))
        print(f"   round {number + 1} of {ROUNDS} done", flush=True)
    return results


def report(results: dict[str, list[Figures]]) -> None:
    direct = results.get("direct")
    print(f"   {CALLS} sequential calls (p50), {CONCURRENT_CALLS} at {IN_FLIGHT} in flight;")
    print(f"   medians over {ROUNDS} rounds of values paired with direct in the same round")
    print(f"   {'path':14} {'p50 ms':>8} {'calls/s':>9} {'+p50 ms':>8} {'ratio':>6}  target")
    for path, rounds in results.items():
        p50 = statistics.median(f.p50_ms for f in rounds)
        per_s = statistics.median(f.per_s for f in rounds)
        if direct is None or path == "direct":
            print(f"   {path:14} {p50:8.3f} {per_s:9.0f}")
            continue
        added = statistics.median(f.p50_ms - d.p50_ms for f, d in zip(rounds, direct, strict=True))
        ratio = statistics.median(f.per_s / d.per_s for f, d in zip(rounds, direct, strict=True))
        face = "http" if path.startswith("http") else "stdio"
        most, least = TARGETS[face]
        met = "met" if added <= most and ratio >= least else "MISSED"
        print(
            f"   {path:14} {p50:8.3f} {per_s:9.0f} {added:+8.3f} {ratio:6.2f}  "
            f"<= +{most} ms, >= {least}: {met}"
        )


def main() -> None:
    entry = install_server_everything()
    with tempfile.TemporaryDirectory(prefix="tooldeck-bench-") as scratch:
        solo, served = Path(scratch) / "solo", Path(scratch) / "daemon"
        for home in (solo, served):
            add_everything(home, entry)
        daemon = start_daemon(served, env=env_of(served))
        try:
            fleet = Fleet(entry, solo, daemon)
            results = asyncio.run(run(fleet))
            report(results)
            if os.environ.get("BENCH_GATEWAY_SLOW") == "1":
                asyncio.run(report_slow(fleet))
        finally:
            daemon.stop()


async def report_slow(fleet: Fleet) -> None:
    print("   echo p50 with 8 calls of a 1 s tool in flight on the same session (ms):")
    for path in ("direct", "stdio", "http"):
        opened, echo = connect(fleet, path)
        slow = echo.replace("echo", "trigger-long-running-operation")
        async with opened as session:
            quiet, during = await slow_tool(session, echo, slow)
        print(f"   {path:14} quiet {quiet:7.3f}  during {during:7.3f}")


if __name__ == "__main__":
    main()
