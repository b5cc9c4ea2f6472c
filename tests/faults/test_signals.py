"""Daemon faults, 1: a stop signal to any face ends it cleanly.

SIGTERM (systemd, `kill`, an MCP client stopping its server), SIGINT (Ctrl+C) and SIGHUP (the
terminal or SSH session gone) to the daemon, `gateway --stdio`, the dashboard or a one-shot CLI
call: the servers it runs are stopped with their whole process groups, their statuses say
`stopped`, and no process of ours is left. Before, SIGTERM and SIGHUP killed the gateway, the
dashboard and the CLI where they stood: statuses said `running` and children were orphaned.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from app.core.settings import load_settings
from app.ops.bootstrap import open_operations
from tests.conftest import PYTHON, TEST_SERVERS
from tests.daemon_helpers import daemon_env, launch, wait_for
from tests.faults.fault_helpers import (
    Dashboard,
    ours,
    recorded_groups,
    spawn,
    statuses,
)

BARE = str(TEST_SERVERS / "bare.py")


async def with_servers(data_dir: Path, *specs: dict[str, object]) -> Path:
    settings = load_settings(data_dir, {"data_dir": data_dir})
    settings.mcp_enabled = False
    ops = await open_operations(settings)
    try:
        for spec in specs:
            await ops.create_server(spec, actor="test")
    finally:
        await ops.db.dispose()
    return data_dir


@pytest.fixture
async def home(tmp_path: Path) -> Path:
    """A data dir with one auto-start server that runs a child of its own, and no built-ins."""
    family = {"name": "family", "command": PYTHON, "args": ["-I", "-S", BARE, "--spawn-child"]}
    return await with_servers(tmp_path / "home", family)


def running(home: Path) -> bool:
    return statuses(home).get("family") == "running" and "family" in recorded_groups(home).values()


def assert_nothing_left(home: Path) -> None:
    assert set(statuses(home).values()) == {"stopped"}
    assert recorded_groups(home) == {}
    wait_for(lambda: not ours(home), timeout_s=10)


ENV = {"MCP_ENABLED": "false"}


def test_the_daemon_stops_cleanly_on_sighup(home: Path) -> None:
    process, _stderr = launch(home, "--port", "0", env=daemon_env(home, **ENV))
    try:
        wait_for(lambda: running(home), timeout_s=60)
        process.send_signal(signal.SIGHUP)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
    assert_nothing_left(home)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_the_stdio_gateway_stops_cleanly(home: Path, signum: signal.Signals) -> None:
    process = spawn(home, "gateway", "--stdio", **ENV)
    try:
        wait_for(lambda: running(home), timeout_s=60)
        process.send_signal(signum)
        # A client stopping its server is a normal end.
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
    assert_nothing_left(home)


@pytest.mark.parametrize("how", ["SIGTERM", "hang-up"])
def test_the_dashboard_stops_cleanly(home: Path, how: str) -> None:
    dashboard = Dashboard(home, **ENV)
    try:
        wait_for(lambda: running(home), timeout_s=60)
        if how == "hang-up":
            dashboard.hang_up()
        else:
            dashboard.signal(getattr(signal, how))
        assert dashboard.wait() == 0
    finally:
        dashboard.kill()
    assert_nothing_left(home)


async def test_a_one_shot_call_stops_cleanly_and_is_recorded(tmp_path: Path) -> None:
    """SIGTERM during `tooldeck tool call` without a daemon: the server it started for the
    call is stopped, the call is recorded as failed, and the exit code says why."""
    slow = {"name": "slow", "command": PYTHON, "args": [str(TEST_SERVERS / "scripted.py")]}
    home = await with_servers(tmp_path / "home", slow)
    process = spawn(home, "tool", "call", "slow", "sleep", "--args", '{"seconds": 600}', **ENV)
    try:
        wait_for(lambda: statuses(home).get("slow") == "running", timeout_s=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
        assert b"stopped by SIGTERM" in process.stderr.read()  # type: ignore[union-attr]
    finally:
        process.kill()
        process.wait()
    assert_nothing_left(home)
    with sqlite3.connect(home / "tooldeck.db") as db:
        rows = db.execute("SELECT tool_name, success, error_message FROM tool_usage").fetchall()
    assert rows == [("sleep", 0, "cancelled before a result came back")]
