"""A fleet of real `tooldeck --headless` nodes on one PostgreSQL database, and a watch on the
processes of their servers (found by a tag in their command line, their node by ancestry)."""

from __future__ import annotations

import os
import sys
import threading
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import func, select

from storage.db import Database
from storage.models import ToolUsage
from tests.daemon_helpers import Daemon, daemon_env, start_daemon

# Standard library only: it starts in tens of milliseconds, so many can start at once.
BARE = Path(__file__).resolve().parent / "servers" / "bare.py"
# Short leases keep failover quick in tests: renewals every 1.25 s, fence after 3.75 s without
# one (shorter, and a loaded CI machine stalls a node long enough to fence its own servers).
TEST_LEASE_S = "5"


def node_env(data_dir: Path, database_url: str, node: str) -> dict[str, str]:
    env = daemon_env(
        data_dir,
        TOOLDECK_DATABASE_URL=database_url,
        TOOLDECK_NODE=node,
        TOOLDECK_LEASE_S=TEST_LEASE_S,
    )
    # No built-ins: every server of these tests is one the test placed.
    env["MCP_SERVERS"] = ""
    return env


def start_node(root: Path, database_url: str, node: str) -> Daemon:
    data_dir = root / node
    return start_daemon(data_dir, env=node_env(data_dir, database_url, node))


# The tag names this test session too: another session on the machine (a second suite run
# alongside) starts servers of the same names, and their processes are not this session's copies.
TAG = f"fleet-tag={os.getpid()}:"


def tagged_server(name: str, placement: str) -> dict[str, Any]:
    """A small stdio server whose processes carry `fleet-tag=<session>:<name>` in their
    command line."""
    return {
        "name": name,
        "command": sys.executable,
        "args": ["-I", "-S", str(BARE), f"{TAG}{name}"],
        "placement": placement,
    }


def running_copies() -> dict[str, list[psutil.Process]]:
    """The live (not zombie) processes of every tagged server, by server name."""
    found: dict[str, list[psutil.Process]] = defaultdict(list)
    for process in psutil.process_iter(["cmdline", "status"]):
        with suppress(psutil.Error):
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            for part in process.info["cmdline"] or ():
                if part.startswith(TAG):
                    found[part.removeprefix(TAG)].append(process)
    return found


def runs_only_on(name: str, node: str, nodes: dict[str, Daemon]) -> bool:
    """Whether the server has exactly one live process, started by `node`."""
    return [node_of(process, nodes) for process in running_copies().get(name, [])] == [node]


def node_of(process: psutil.Process, nodes: dict[str, Daemon]) -> str | None:
    """Which node started a server's process: the daemon among its ancestors."""
    try:
        ancestors = {parent.pid for parent in process.parents()}
    except psutil.Error:
        return None
    return next((name for name, node in nodes.items() if node.pid in ancestors), None)


def servers_of(node: Daemon) -> dict[str, dict[str, Any]]:
    with node.client() as client:
        answer = client.get("/api/v1/toolservers/servers")
        answer.raise_for_status()
        return {server["name"]: server for server in answer.json()}


def nodes_seen_by(node: Daemon) -> dict[str, dict[str, Any]]:
    with node.client() as client:
        answer = client.get("/api/v1/nodes")
        answer.raise_for_status()
        return {entry["name"]: entry for entry in answer.json()}


@dataclass
class CopyWatch:
    """Samples the tagged servers' processes on a thread until stopped: the most copies of
    each server ever seen at one moment, and the nodes each ran on."""

    nodes: dict[str, Daemon]
    samples: int = 0
    most: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ran_on: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CopyWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, copies in running_copies().items():
                self.most[name] = max(self.most[name], len(copies))
                for process in copies:
                    node = node_of(process, self.nodes)
                    if node is not None:
                        self.ran_on[name].add(node)
            self.samples += 1
            # Not a wait for anything: the pace of sampling, gentle on a shared machine.
            self._stop.wait(0.02)


async def usage_rows(url: str) -> list[tuple[str | None, int]]:
    """(client name, calls) of every client in the fleet's tool_usage, sorted."""
    return [(name, count) for name, _source, count in await usage_by_source(url)]


async def usage_by_source(url: str) -> list[tuple[str | None, str, int]]:
    """(client name, source, calls) of every client and face in the fleet's tool_usage."""
    db = Database(url)
    try:
        async with db.read() as session:
            rows = await session.execute(
                select(ToolUsage.client_name, ToolUsage.source, func.count()).group_by(
                    ToolUsage.client_name, ToolUsage.source
                )
            )
            return sorted(((name, source, count) for name, source, count in rows), key=str)
    finally:
        await db.dispose()
