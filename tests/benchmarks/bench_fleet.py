"""Failover in a fleet: 3 `tooldeck --headless` nodes on one PostgreSQL, 60 `any` servers.

Measured, with the default lease time (TOOLDECK_LEASE_S, 8 s) unless TOOLDECK_BENCH_LEASE_S
says otherwise:
- failover: from `kill -9` of a node until every server it ran runs on another node, as the
  API of a surviving node reports it (then again after a second node is killed: 2 -> 1);
- a move: from a server's placement changed to another node until it runs there;
- start: how long these servers take to start, from their event rows (the failover target,
  under 15 s, is for a server that starts in 1 s).

The target is failover < lease time + heartbeat + start time. TOOLDECK_BENCH_SHORT=1 runs
12 servers instead of 60.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.daemon_helpers import Daemon, start_daemon, wait_for
from tests.fleet_helpers import node_env, servers_of, tagged_server
from tests.pg_server import postgres_server

SHORT = os.environ.get("TOOLDECK_BENCH_SHORT") == "1"
SERVERS = 12 if SHORT else 60
LEASE_S = os.environ.get("TOOLDECK_BENCH_LEASE_S", "8")
NODES = ("one", "two", "three")
SETTLE_TIMEOUT_S = 180.0


def start_node(root: Path, url: str, name: str) -> Daemon:
    env = node_env(root / name, url, name)
    env["TOOLDECK_LEASE_S"] = LEASE_S
    return start_daemon(root / name, env=env)


def runs_everywhere(node: Daemon, names: list[str], avoid: set[str]) -> dict | None:
    servers = servers_of(node)
    placed = {name: servers[name] for name in names}
    if all(
        s["status"] == "running" and s["node"] and s["node"] not in avoid for s in placed.values()
    ):
        return placed
    return None


def failover(nodes: dict[str, Daemon], victim: str, names: list[str], dead: set[str]) -> float:
    watcher = next(node for name, node in nodes.items() if name not in dead | {victim})
    before = runs_everywhere(watcher, names, dead)
    assert before is not None
    lost = [name for name, server in before.items() if server["node"] == victim]
    began = time.monotonic()
    nodes[victim].kill()
    wait_for(
        lambda: runs_everywhere(watcher, lost, dead | {victim}),
        timeout_s=SETTLE_TIMEOUT_S,
        interval_s=0.05,
    )
    took = time.monotonic() - began
    print(f"   failover of {len(lost)} servers after kill -9 of {victim}: {took:.2f} s")
    return took


def start_times(node: Daemon) -> list[float]:
    with node.client() as client:
        events = client.get("/api/v1/toolservers/events", params={"kind": "started", "limit": 1000})
    times = []
    for event in events.json() if events.status_code == 200 else []:
        found = re.search(r"started in (\d+) ms", event["message"])
        if found:
            times.append(int(found.group(1)) / 1000)
    return times


def main() -> None:
    with postgres_server("fleet_bench") as pg, tempfile.TemporaryDirectory() as home:
        root = Path(home)
        url = pg.create_database("fleet")
        # The first node migrates the database; the others join a migrated one.
        nodes = {NODES[0]: start_node(root, url, NODES[0])}
        try:
            for name in NODES[1:]:
                nodes[name] = start_node(root, url, name)
            first = nodes[NODES[0]]
            names = [f"float-{index:02d}" for index in range(SERVERS)]
            with first.client() as client:
                for name in names:
                    answer = client.post(
                        "/api/v1/toolservers/servers", json=tagged_server(name, "any")
                    )
                    assert answer.status_code == 201, answer.text
            began = time.monotonic()
            placed = wait_for(
                lambda: runs_everywhere(first, names, set()), timeout_s=SETTLE_TIMEOUT_S
            )
            spread = Counter(server["node"] for server in placed.values())
            print(
                f"   {SERVERS} servers placed on {len(NODES)} nodes in "
                f"{time.monotonic() - began:.2f} s: {dict(sorted(spread.items()))}"
            )
            starts = start_times(first)
            if starts:
                print(
                    f"   server start: median {statistics.median(starts):.2f} s, "
                    f"max {max(starts):.2f} s (lease {LEASE_S} s)"
                )
            # A placement change reaches the node it names at its next heartbeat.
            moved = names[0]
            target = next(name for name in NODES[1:] if name != placed[moved]["node"])
            began = time.monotonic()
            with first.client() as client:
                answer = client.put(
                    f"/api/v1/toolservers/servers/{moved}", json={"placement": target}
                )
                assert answer.status_code == 200, answer.text
            wait_for(
                lambda: (
                    (s := servers_of(first)[moved])["node"] == target and s["status"] == "running"
                ),
                timeout_s=SETTLE_TIMEOUT_S,
            )
            print(f"   move of one server to node {target}: {time.monotonic() - began:.2f} s")
            floating = names[1:]
            failover(nodes, NODES[2], floating, set())
            failover(nodes, NODES[1], floating, {NODES[2]})
        finally:
            for node in nodes.values():
                node.kill()


if __name__ == "__main__":
    main()
