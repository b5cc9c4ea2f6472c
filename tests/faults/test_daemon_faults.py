"""Daemon faults, 2: a `kill -9` of the daemon, and a server killed and restarted a hundred times.

`kill -9` leaves no chance to clean up: the kernel ends the servers themselves (their parent-death
signal); what they started is ended at the next start, with an event; statuses left `running` are
set right; every call the daemon answered is in the database after the restart (the usage
journal). Before: the server's child kept running with ppid 1, also after the restart, and 26 of
150 answered calls were gone.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psutil
import pytest

from app.ops.facade import LocalOperations
from tests.conftest import PYTHON, TEST_SERVERS
from tests.daemon_helpers import Daemon, alive, daemon_env, start_daemon, wait_for
from tests.faults.fault_helpers import group_members, ours, recorded_groups, statuses
from tests.faults.test_signals import with_servers
from tests.runtime_helpers import eventually, fast_supervisor

BARE = str(TEST_SERVERS / "bare.py")
ENV = {"MCP_ENABLED": "false"}


def usage_rows(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "tooldeck.db", timeout=30) as db:
        return int(db.execute("SELECT count(*) FROM tool_usage").fetchone()[0])


def events(data_dir: Path, kind: str) -> list[str]:
    with sqlite3.connect(data_dir / "tooldeck.db", timeout=30) as db:
        rows = db.execute("SELECT message FROM server_events WHERE kind = ?", (kind,)).fetchall()
    return [message for (message,) in rows]


def call(daemon: Daemon, server: str, tool: str) -> dict[str, object]:
    with daemon.client() as client:
        answer = client.post(
            f"/api/v1/toolservers/tools/{tool}/call", params={"server": server}, json={}
        )
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


async def test_after_kill_9_nothing_is_left_and_no_answered_call_is_lost(tmp_path: Path) -> None:
    args = ["-I", "-S", BARE, "--stubborn-child"]
    stubborn = {"name": "stubborn", "command": PYTHON, "args": args}
    home = await with_servers(tmp_path / "home", stubborn)
    daemon = start_daemon(home, env=daemon_env(home, **ENV))
    try:
        wait_for(lambda: statuses(home).get("stubborn") == "running", timeout_s=60)
        [(pgid, _name)] = recorded_groups(home).items()
        server_pid = int(str(call(daemon, "stubborn", "whoami")["content"][0]["text"]))  # type: ignore[index]
        [child] = [pid for pid in group_members(pgid) if pid != server_pid]
        answered = sum(1 for _ in range(150) if call(daemon, "stubborn", "whoami"))
        daemon.kill()  # SIGKILL, right after the last answer: the flush interval has not passed
    finally:
        daemon.kill()
    # The kernel ended the server with the daemon; the child it started ignores SIGTERM and
    # lives on, orphaned: only the next start can end it.
    wait_for(lambda: not alive(server_pid))
    assert psutil.Process(child).ppid() != server_pid
    restarted = start_daemon(home, env=daemon_env(home, **ENV))
    try:
        wait_for(lambda: not psutil.pid_exists(child) or not _live(child), timeout_s=30)
        [ended] = events(home, "leftovers_ended")
        assert f"pid {child}" in ended and "SIGKILL" in ended
        # Every call the killed daemon answered is in the database (plus the first one).
        wait_for(lambda: usage_rows(home) == answered + 1, timeout_s=30)
        wait_for(lambda: statuses(home).get("stubborn") == "running", timeout_s=60)
        # No process of ours but the new daemon and the servers it runs now.
        running_now = {pid for pgid in recorded_groups(home) for pid in group_members(pgid)}
        found = {p.pid for p in ours(home)}
        assert running_now and running_now <= found  # the servers are found as ours
        assert found - running_now - {restarted.pid} == set()
    finally:
        restarted.stop()


def _live(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# A hundred starts of a process, each seen stable before it is killed: over the default
# timeout on a loaded machine, though each cycle waits on events only.
@pytest.mark.timeout(360)
async def test_a_hundred_kills_of_a_server_leave_no_orphan_no_zombie_and_true_state(
    ops: LocalOperations,
) -> None:
    """Each kill is a crash the supervisor sees, ends the rest of the group of, counts, and
    recovers from; after a hundred of them the state is what one start would leave."""
    supervisor = fast_supervisor(ops, stable_after_s=0.05)
    spec = {
        "name": "phoenix",
        "command": PYTHON,
        "args": ["-I", "-S", BARE, "--spawn-child"],
        "max_failures": 10,
    }
    try:
        await ops.create_server(spec, actor="test")
        await ops.start_server("phoenix", actor="test")
        seen: set[int] = set()
        for _cycle in range(100):
            pid = await eventually(lambda: _running_pid(ops, seen), within=30)
            seen.add(pid)
            group = group_members(pid)
            assert len(group) == 2  # the server and its `sleep`
            psutil.Process(pid).kill()
            await eventually(lambda group=group: _all_gone(group), within=30)
        pid = await eventually(lambda: _running_pid(ops, seen), within=30)
        server = await ops.get_server("phoenix")
        assert server.status == "running" and server.enabled
        assert len(await ops.list_events("phoenix", kind="crashed", limit=1000)) == 100
        assert (await ops.call_tool("phoenix", "whoami", {}, source="cli")).content[0]["text"] == (
            str(pid)
        )
        # No zombie among our children, nothing of the hundred groups left but the last one.
        mine = psutil.Process().children(recursive=True)
        assert [p.pid for p in mine if p.status() == psutil.STATUS_ZOMBIE] == []
        assert set(recorded_groups(ops.settings.data_dir)) == {pid}
    finally:
        await supervisor.shutdown()
    assert recorded_groups(ops.settings.data_dir) == {}


async def _running_pid(ops: LocalOperations, seen: set[int]) -> int | None:
    """The pid of a new, running, stable instance of the server (its failures reset)."""
    info = await ops.runtime_info("phoenix")
    server = await ops.get_server("phoenix")
    if info.pid is None or info.pid in seen or info.status != "running":
        return None
    if server.consecutive_failures:
        return None
    return info.pid


async def _all_gone(pids: list[int]) -> bool:
    await asyncio.sleep(0)
    return not any(_live(pid) for pid in pids)
