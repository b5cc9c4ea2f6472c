"""Gateway overhead: the same SDK client calls a tiny stdio server directly, then through
`tooldeck gateway --stdio` (which runs the supervisor, routes through the facade's call path and
records usage), at 1 and 8 concurrent calls.

Reports p50/p99 latency and throughput for both and the difference. Targets (issue 7): under
1 ms added at p50, at least 70% of the direct throughput. `BENCH_GATEWAY_CALLS` sets the number
of calls per measurement (default 600). `BENCH_GATEWAY_PROFILE=1` also writes a cProfile of the
gateway process to gateway.prof in the working directory and prints its top functions.
"""

from __future__ import annotations

import asyncio
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.conftest import PYTHON, TEST_SERVERS

CALLS = int(os.environ.get("BENCH_GATEWAY_CALLS", "600"))
WARMUP = 50
PROFILE = os.environ.get("BENCH_GATEWAY_PROFILE") == "1"


@asynccontextmanager
async def session_for(params: StdioServerParameters) -> Any:
    with open(os.devnull, "w") as errlog:  # noqa: ASYNC230 (opening /dev/null does not block)
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


async def measure(session: ClientSession, tool: str, concurrency: int) -> dict[str, float]:
    await session.list_tools()  # the SDK re-lists before each call of a tool it has not seen
    for _ in range(WARMUP):
        await session.call_tool(tool, {})
    latencies: list[float] = []
    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            began = time.perf_counter()
            result = await session.call_tool(tool, {})
            latencies.append((time.perf_counter() - began) * 1000)
            assert not result.is_error, result

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(CALLS)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "per_s": CALLS / elapsed,
    }


def prepare_home(home: Path) -> None:
    env = {**os.environ, "TOOLDECK_HOME": str(home), "MCP_ENABLED": "false"}
    subprocess.run(
        [sys.executable, "-m", "app", "server", "add", "tiny", "--command", PYTHON,
         "--arg", str(TEST_SERVERS / "tiny.py")],
        env=env, check=True, capture_output=True,
    )  # fmt: skip


async def bench(home: Path) -> dict[str, dict[str, float]]:
    direct = StdioServerParameters(command=PYTHON, args=[str(TEST_SERVERS / "tiny.py")])
    gateway_args = ["-m", "app", "gateway", "--stdio"]
    if PROFILE:
        gateway_args = ["-m", "cProfile", "-o", "gateway.prof", *gateway_args]
    via_gateway = StdioServerParameters(
        command=sys.executable,
        args=gateway_args,
        env={"TOOLDECK_HOME": str(home), "MCP_ENABLED": "false", "PATH": os.environ["PATH"]},
    )
    results: dict[str, dict[str, float]] = {}
    async with session_for(direct) as session:
        for concurrency in (1, 8):
            results[f"direct x{concurrency}"] = await measure(session, "ping", concurrency)
    async with session_for(via_gateway) as session:
        for concurrency in (1, 8):
            results[f"gateway x{concurrency}"] = await measure(session, "tiny__ping", concurrency)
    return results


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        prepare_home(home)
        results = asyncio.run(bench(home))
    print(f"   {CALLS} calls per row, usage tracking on, stdio both ways")
    for name, row in results.items():
        print(
            f"   {name:12} p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
            f"{row['per_s']:7.0f} calls/s"
        )
    for concurrency in (1, 8):
        direct, gateway = results[f"direct x{concurrency}"], results[f"gateway x{concurrency}"]
        print(
            f"   x{concurrency}: added p50 {gateway['p50_ms'] - direct['p50_ms']:.2f} ms, "
            f"added p99 {gateway['p99_ms'] - direct['p99_ms']:.2f} ms, "
            f"throughput {100 * gateway['per_s'] / direct['per_s']:.0f}% of direct "
            "(targets: < 1 ms at p50, >= 70%)"
        )
    if PROFILE and Path("gateway.prof").exists():
        pstats.Stats("gateway.prof").sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
