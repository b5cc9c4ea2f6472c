"""Gateway overhead against a direct connection, with usage recording on (as always).

Upstream: the `echo` tool of server-everything (npm, installed by the benchmark itself), which
answers fast enough not to hide our own cost. Client: the SDK's `ClientSession`. Load: 1000
sequential calls (p50), then 2000 calls at 8 in flight (throughput). Each round measures every
path once, interleaved; added latency and throughput ratio are paired per round (path minus,
over, direct of the same round) and the median over rounds is printed, beside the targets:

- stdio face (`gateway --stdio` in-process, per server, per profile, and bridged to a daemon):
  at most +0.35 ms at p50, at least 0.55 of direct throughput;
- HTTP face (the daemon's `/mcp`, `/mcp/servers/<n>`, `/mcp/profiles/<n>`): at most +1.2 ms at
  p50, at least 0.25 of direct.
- `http-floor` has no target: the SDK's HTTP client against a stub that answers at once (no
  router, no upstream), i.e. what no HTTP gateway can go below on this machine;
  `http-floor-node` is the same stub written on node's `http` module (a second responder, so
  the floor does not rest on one Python stub's own cost). Their "CPU us/call" is the stub's.
- "client us/call" is this process's CPU time per call: the SDK client's own cost on each path.
  The client is one event loop, so about 1e6 / that figure is the most calls/s it can make.

Then:
- a slow tool: echo's p50 alone, then while 8 calls of a 1 s tool are in flight on the same
  session; the calls to echo must not slow down (at most 2x, for noise) and the slow calls must
  not wait for each other;
- memory: the daemon's RSS with 50 servers connected (a stdlib stub with 10 tools each), then
  with 8 HTTP clients that listed the 500 tools and made calls (the servers' own processes are
  not counted);
- the usage rows recorded, read back from each database after the run.

`BENCH_GATEWAY_SHORT=1` is a quick run (1 round of 200 calls, the slow tool with 50 calls, the
memory figures as in a full run). `BENCH_GATEWAY_ROUNDS`, `BENCH_GATEWAY_CALLS` and
`BENCH_GATEWAY_PATHS` (a comma list of the paths below) tune a run; `BENCH_GATEWAY_PARTS`
(`calls,slow,memory`) picks the parts.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    ExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass
from pathlib import Path

import httpx2
import psutil
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import PaginatedRequestParams

from tests.daemon_helpers import Daemon, daemon_env, start_daemon
from tests.npm_peers import install_server_everything

SHORT = os.environ.get("BENCH_GATEWAY_SHORT") == "1"
ROUNDS = int(os.environ.get("BENCH_GATEWAY_ROUNDS", "1" if SHORT else "3"))
CALLS = int(os.environ.get("BENCH_GATEWAY_CALLS", "200" if SHORT else "1000"))
CONCURRENT_CALLS = 2 * CALLS
SLOW_CALLS = 50 if SHORT else 200
IN_FLIGHT = 8
WARMUP = 50
ALL_PATHS = (
    "direct",
    "stdio",
    "stdio-server",
    "stdio-profile",
    "bridge",
    "http",
    "http-server",
    "http-profile",
    "http-floor",
    "http-floor-node",
)
PATHS = tuple(p for p in os.environ.get("BENCH_GATEWAY_PATHS", ",".join(ALL_PATHS)).split(",") if p)
PARTS = set(os.environ.get("BENCH_GATEWAY_PARTS", "calls,slow,memory").split(","))
# (added p50 ms at most, throughput ratio at least) by face
TARGETS = {"stdio": (0.35, 0.55), "http": (1.2, 0.25)}
MEMORY_SERVERS = 50
MEMORY_CLIENTS = 8
STUBS = Path(__file__).with_name("stub_servers.py")


@dataclass
class Figures:
    p50_ms: float
    per_s: float
    cpu_us: float | None  # the gateway's own processes' CPU time per call
    client_us: float  # the client's (this process's) CPU time per call


def gateway_processes(fleet: Fleet, path: str) -> list[psutil.Process]:
    """The processes a call passes through on `path`, other than the client and the server."""
    if path in fleet.floors:
        return [psutil.Process(fleet.floors[path][1])]
    if path == "direct":
        return []
    daemon = [psutil.Process(fleet.daemon.pid)]
    if path.startswith("http"):
        return daemon
    gateways = [
        child
        for child in psutil.Process().children(recursive=True)
        if "gateway" in child.cmdline() and "--stdio" in child.cmdline()
    ]
    return gateways + daemon if path == "bridge" else gateways


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in processes)


@dataclass
class Fleet:
    entry: Path
    solo: Path  # no daemon: `gateway --stdio` runs the server in-process
    daemon: Daemon
    floors: dict[str, tuple[str, int]]  # path: the stub's URL and process id


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
        case "stdio-profile":
            return over_stdio(gateway(fleet.solo, "--profile", "echo-only")), "everything__echo"
        case "bridge":
            return over_stdio(gateway(fleet.daemon.data_dir)), "everything__echo"
        case "http":
            return over_http(f"{url}/mcp", token), "everything__echo"
        case "http-server":
            return over_http(f"{url}/mcp/servers/everything", token), "echo"
        case "http-profile":
            return over_http(f"{url}/mcp/profiles/echo-only", token), "everything__echo"
        case "http-floor" | "http-floor-node":
            return over_http(f"{fleet.floors[path][0]}/mcp", None), "echo"
    raise ValueError(path)


async def tool_names(session: ClientSession) -> list[str]:
    names: list[str] = []
    cursor: str | None = None
    while True:
        page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
        names += [tool.name for tool in page.tools]
        cursor = page.next_cursor
        if not cursor:
            return names


async def listed(session: ClientSession, name: str) -> None:
    """Wait until `name` is listed (a daemon's server may still be starting)."""
    for _ in range(600):
        if name in await tool_names(session):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{name} was never listed")


async def measure(session: ClientSession, echo: str, processes: list[psutil.Process]) -> Figures:
    await listed(session, echo)  # the SDK also lists before calling a tool it has not seen
    for _ in range(WARMUP):
        await session.call_tool(echo, {"message": "warm"})
    client = [psutil.Process()]
    cpu_before, client_before = cpu_seconds(processes), cpu_seconds(client)
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
    per_s = CONCURRENT_CALLS / (time.perf_counter() - began)
    cpu = cpu_seconds(processes) - cpu_before
    cpu_us = cpu / (CALLS + CONCURRENT_CALLS) * 1e6 if processes else None
    client_us = (cpu_seconds(client) - client_before) / (CALLS + CONCURRENT_CALLS) * 1e6
    return Figures(statistics.median(latencies), per_s, cpu_us, client_us)


async def run(fleet: Fleet) -> dict[str, list[Figures]]:
    results: dict[str, list[Figures]] = {path: [] for path in PATHS}
    for number in range(ROUNDS):
        for path in PATHS:
            opened, echo = connect(fleet, path)
            async with opened as session:
                processes = gateway_processes(fleet, path)
                results[path].append(await measure(session, echo, processes))
        print(f"   round {number + 1} of {ROUNDS} done (load {os.getloadavg()[0]:.1f})", flush=True)
    return results


def report(results: dict[str, list[Figures]]) -> None:
    direct = results.get("direct")
    print(f"   {CALLS} sequential calls (p50), {CONCURRENT_CALLS} at {IN_FLIGHT} in flight;")
    print(f"   medians over {ROUNDS} rounds of values paired with direct in the same round")
    print("   CPU us/call: the gateway's own processes (the daemon, `gateway --stdio`, the")
    print("   bridge; for a floor, its stub), which the machine's load moves far less than the")
    print("   times; client us: this process's (the SDK client's) CPU time per call")
    header = f"   {'path':15} {'p50 ms':>8} {'calls/s':>9} {'CPU us/call':>11} {'client us':>9}"
    print(header + f" {'+p50 ms':>8} {'ratio':>6}  target")
    for path, rounds in results.items():
        p50 = statistics.median(f.p50_ms for f in rounds)
        per_s = statistics.median(f.per_s for f in rounds)
        cpus = [f.cpu_us for f in rounds if f.cpu_us is not None]
        cpu = f"{statistics.median(cpus):11.0f}" if cpus else f"{'':11}"
        cpu += f" {statistics.median(f.client_us for f in rounds):9.0f}"
        if direct is None or path == "direct":
            print(f"   {path:15} {p50:8.3f} {per_s:9.0f} {cpu}")
            continue
        added = statistics.median(f.p50_ms - d.p50_ms for f, d in zip(rounds, direct, strict=True))
        ratio = statistics.median(f.per_s / d.per_s for f, d in zip(rounds, direct, strict=True))
        figures = f"   {path:15} {p50:8.3f} {per_s:9.0f} {cpu} {added:+8.3f} {ratio:6.2f}  "
        if path in FLOOR_COMMANDS:
            print(figures + "(no target: the SDK's HTTP client alone)")
            continue
        most, least = TARGETS["http" if path.startswith("http") else "stdio"]
        met = "met" if added <= most and ratio >= least else "MISSED"
        print(figures + f"<= +{most} ms, >= {least}: {met}")


async def slow_tool(session: ClientSession, echo: str, slow: str) -> tuple[float, float, float]:
    """echo's p50 alone, then while 8 calls of a 1 s tool are in flight; the slowest of those."""

    async def p50(count: int) -> float:
        latencies = []
        for _ in range(count):
            began = time.perf_counter()
            await session.call_tool(echo, {"message": "x"})
            latencies.append((time.perf_counter() - began) * 1000)
        return statistics.median(latencies)

    async def timed_slow_call() -> float:
        began = time.perf_counter()
        result = await session.call_tool(slow, {"duration": 1, "steps": 1})
        assert not result.is_error, result
        return time.perf_counter() - began

    await listed(session, slow)
    quiet = await p50(SLOW_CALLS)
    busy = [asyncio.ensure_future(timed_slow_call()) for _ in range(IN_FLIGHT)]
    await asyncio.sleep(0.05)  # the slow calls are on their way
    during = await p50(min(SLOW_CALLS, 100))
    still_busy = not all(task.done() for task in busy)
    slowest = max(await asyncio.gather(*busy))
    if not still_busy:
        print("   (the echo calls outlasted the slow ones: fewer calls would measure better)")
    return quiet, during, slowest


async def report_slow(fleet: Fleet) -> None:
    print(f"   echo p50 alone, then with {IN_FLIGHT} calls of a 1 s tool in flight on the session:")
    for path in ("direct", "stdio", "bridge", "http"):
        opened, echo = connect(fleet, path)
        slow = echo.replace("echo", "trigger-long-running-operation")
        async with opened as session:
            quiet, during, slowest = await slow_tool(session, echo, slow)
        met = "met" if during <= 2 * quiet and slowest < 1.5 else "MISSED"
        print(
            f"   {path:14} alone {quiet:7.3f}  during {during:7.3f}  "
            f"slowest 1 s call {slowest:5.2f} s  not slowed: {met}"
        )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def memory(home: Path) -> None:
    """The daemon's RSS with 50 servers, then with 8 HTTP clients on top."""
    daemon = start_daemon(home, env=env_of(home))
    try:
        empty = rss_mb(daemon.pid)
        stub = {"command": sys.executable, "args": [str(STUBS), "stdio"]}
        document = {"mcpServers": {f"s{i}": stub for i in range(MEMORY_SERVERS)}}
        with daemon.client() as http:
            answer = http.post("/api/v1/toolservers/import", json={"document": document})
            answer.raise_for_status()
        tools = MEMORY_SERVERS * 10
        stop = asyncio.Event()
        ready: list[int] = []

        async def client() -> None:
            async with over_http(f"{daemon.url}/mcp", daemon.token) as session:
                await listed(session, f"s{MEMORY_SERVERS - 1}__tool8")
                names = await tool_names(session)
                assert len(names) >= tools, len(names)
                for name in names[:: len(names) // 20]:
                    await session.call_tool(name, {"message": "x"})
                ready.append(len(names))
                await stop.wait()

        async with over_http(f"{daemon.url}/mcp", daemon.token) as probe:
            await listed(probe, f"s{MEMORY_SERVERS - 1}__tool8")
        await asyncio.sleep(1)  # the catalogue's own work after the last start settles
        servers_only = rss_mb(daemon.pid)
        clients = [asyncio.ensure_future(client()) for _ in range(MEMORY_CLIENTS)]
        while len(ready) < MEMORY_CLIENTS:
            await asyncio.wait(clients, timeout=0.2)
            for task in clients:
                if task.done() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        loaded = rss_mb(daemon.pid)
        stop.set()
        await asyncio.gather(*clients)
    finally:
        daemon.stop()
    print(
        f"   daemon RSS: {empty:.1f} MB empty, {servers_only:.1f} MB with {MEMORY_SERVERS} servers "
        f"({tools} tools), {loaded:.1f} MB with {MEMORY_CLIENTS} HTTP clients connected "
        "(listed, called)"
    )


def usage_rows(home: Path) -> int:
    with sqlite3.connect(home / "tooldeck.db") as db:
        return int(db.execute("SELECT count(*) FROM tool_usage").fetchone()[0])


# The floor stub on node's `http` module: answers as stub_servers.py's does, one JSON body each.
NODE_FLOOR = """
const http = require("http");
const tools = [{name: "echo", description: "Echo.",
  inputSchema: {type: "object", properties: {message: {type: "string"}}}}];
const server = http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const text = Buffer.concat(chunks).toString();
    const message = text ? JSON.parse(text) : {};
    if (request.method !== "POST" || !("id" in message && "method" in message)) {
      response.writeHead(request.method === "POST" ? 202 : 200, {"content-length": 0});
      response.end();
      return;
    }
    let result = {};
    if (message.method === "initialize") {
      result = {protocolVersion: "2025-11-25", capabilities: {tools: {listChanged: true}},
        serverInfo: {name: "stub", version: "0"}};
    } else if (message.method === "tools/list") {
      result = {tools};
    } else if (message.method === "tools/call") {
      result = {content: [{type: "text",
        text: "Echo: " + ((message.params.arguments || {}).message || "")}]};
    }
    const out = JSON.stringify({jsonrpc: "2.0", id: message.id, result});
    response.writeHead(200, {"content-type": "application/json", "mcp-session-id": "s",
      "content-length": Buffer.byteLength(out)});
    response.end(out);
  });
});
server.keepAliveTimeout = 120000;
server.listen(Number(process.argv[1]), "127.0.0.1", () => console.log("ready"));
"""
FLOOR_COMMANDS = {
    "http-floor": [sys.executable, str(STUBS), "http"],
    "http-floor-node": ["node", "-e", NODE_FLOOR],
}


@contextmanager
def floor_server(command: list[str]) -> Iterator[tuple[str, int]]:
    """A floor stub on a free port: its URL and process id."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([*command, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    entry = install_server_everything()
    print(f"   load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="tooldeck-bench-") as scratch:
        solo, served = Path(scratch) / "solo", Path(scratch) / "daemon"
        if PARTS & {"calls", "slow"}:
            for home in (solo, served):
                add_everything(home, entry)
            daemon = start_daemon(served, env=env_of(served))
            try:
                with ExitStack() as floors:
                    fleet = Fleet(entry, solo, daemon, {
                        path: floors.enter_context(floor_server(command))
                        for path, command in FLOOR_COMMANDS.items() if path in PATHS
                    })  # fmt: skip
                    if "calls" in PARTS:
                        report(asyncio.run(run(fleet)))
                    if "slow" in PARTS:
                        asyncio.run(report_slow(fleet))
            finally:
                daemon.stop()
            print(f"   usage rows recorded: {usage_rows(solo)} by `gateway --stdio`, "
                  f"{usage_rows(served)} by the daemon")  # fmt: skip
        if "memory" in PARTS:
            asyncio.run(memory(Path(scratch) / "memory"))


if __name__ == "__main__":
    main()
