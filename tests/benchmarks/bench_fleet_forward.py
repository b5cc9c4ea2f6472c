"""A gateway call forwarded to the node that runs the server, against the same call made on that
node: 3 `tooldeck --headless` nodes on one PostgreSQL, 60 servers placed on them in turn.

An MCP client on node one's `/mcp` and another on node two's call `whoami` of one server placed
on node one, one call at a time, the two clients taking turns (so both see the same moments of
a shared machine). The call through node one is the baseline; through node two it crosses one
more HTTP hop (node two's link to node one's per-server endpoint). Figures: p50 and p95 of each,
and the added p50.

TOOLDECK_BENCH_SHORT=1 runs 12 servers and fewer calls.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.daemon_helpers import Daemon, start_daemon, wait_for
from tests.fleet_helpers import node_env, servers_of, tagged_server
from tests.gateway_helpers import RecordingClient, over_http
from tests.pg_server import postgres_server

SHORT = os.environ.get("TOOLDECK_BENCH_SHORT") == "1"
SERVERS = 12 if SHORT else 60
CALLS = 200 if SHORT else 1000
WARM_UP = 20
NODES = ("one", "two", "three")
SETTLE_TIMEOUT_S = 180.0


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[round(0.95 * (len(ordered) - 1))]


async def turns(owner: Daemon, other: Daemon, tool: str) -> tuple[list[float], list[float]]:
    """Milliseconds of each call through the owner and through the other node, in turns."""
    local: list[float] = []
    forwarded: list[float] = []
    async with (
        over_http(f"{owner.url}/mcp", RecordingClient(name="bench-local"), owner.token) as near,
        over_http(f"{other.url}/mcp", RecordingClient(name="bench-forwarded"), other.token) as far,
    ):
        for session in (near, far):
            listed = await session.list_tools()
            # Every server's tool, whichever node runs it.
            assert len(listed.tools) == SERVERS, len(listed.tools)
        for n in range(WARM_UP + CALLS):
            for session, samples in ((near, local), (far, forwarded)):
                began = time.perf_counter()
                result = await session.call_tool(tool, {})
                elapsed = (time.perf_counter() - began) * 1000
                assert not result.is_error, result
                if n >= WARM_UP:
                    samples.append(elapsed)
    return local, forwarded


def main() -> None:
    mode = "short" if SHORT else "full"
    print(f"   {mode}: {len(NODES)} nodes, {SERVERS} servers, {CALLS} calls each way", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="tooldeck-bench-forward-") as temporary,
        postgres_server("bench") as server,
    ):
        url = server.create_database("fleet")
        root = Path(temporary)
        nodes: dict[str, Daemon] = {}
        try:
            for name in NODES:
                nodes[name] = start_daemon(root / name, env=node_env(root / name, url, name))
            one, two = nodes["one"], nodes["two"]
            names = [f"s{index:02d}" for index in range(SERVERS)]
            with one.client() as client:
                for index, name in enumerate(names):
                    spec = tagged_server(name, NODES[index % len(NODES)])
                    client.post("/api/v1/toolservers/servers", json=spec).raise_for_status()
            wait_for(
                lambda: all(s["status"] == "running" for s in servers_of(two).values()),
                timeout_s=SETTLE_TIMEOUT_S,
            )
            local, forwarded = asyncio.run(turns(one, two, f"{names[0]}__whoami"))
        finally:
            for node in nodes.values():
                node.stop()
    local_p50, local_p95 = percentiles(local)
    far_p50, far_p95 = percentiles(forwarded)
    print(f"   through the owner (baseline)   p50 {local_p50:6.2f} ms   p95 {local_p95:6.2f} ms")
    print(f"   through another node           p50 {far_p50:6.2f} ms   p95 {far_p95:6.2f} ms")
    print(
        f"   forwarding adds {far_p50 - local_p50:.2f} ms at p50 (x{far_p50 / local_p50:.2f})",
        flush=True,
    )


if __name__ == "__main__":
    main()
