"""Whichever face supervises a data dir (the dashboard, `gateway --stdio`, the daemon), every CLI
verb beside it works, through the operations it serves on its private unix socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from app.core.changes import Change
from app.core.settings import load_settings
from app.faces.http.ops_socket import ops_socket_path, serve_operations
from app.ops.attach import dashboard_facade
from app.ops.facade import LocalOperations
from app.runtime.api_token import token_path
from app.runtime.lock import read_lock
from tests.cli_runner import REPO_ROOT, one_line_error, tooldeck
from tests.conftest import PYTHON, TEST_SERVERS
from tests.daemon_helpers import start_daemon, wait_for

TINY = str(TEST_SERVERS / "tiny.py")


async def atooldeck(*args: str) -> subprocess.CompletedProcess[str]:
    """`tooldeck ARGS` in a subprocess without blocking this event loop (the dashboard's)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())


def published_socket(home: Path) -> str | None:
    info = read_lock(home)
    return None if info is None else info.socket


async def until(predicate: Callable[[], object], timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await _value(predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await asyncio.sleep(0.05)


async def _value(value: object) -> object:
    return await value if asyncio.iscoroutine(value) else value


async def test_every_verb_works_while_the_dashboard_supervises(tmp_path: Path) -> None:
    from app.tui.app import TooldeckApp

    home = Path(os.environ["TOOLDECK_HOME"])
    settings = load_settings(home)
    app = TooldeckApp(
        settings,
        core=partial(dashboard_facade, serve=serve_operations),
        refresh_interval=0.5,
        cursor_blink=False,
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: isinstance(app.ops, LocalOperations))
        ops = app.ops
        assert isinstance(ops, LocalOperations) and ops.runtime is not None
        await until(lambda: published_socket(home))
        socket = ops_socket_path(home)
        assert read_lock(home).socket == str(socket)  # type: ignore[union-attr]
        assert stat.S_IMODE(socket.stat().st_mode) == 0o600
        seen: list[tuple[Change, str | None]] = []
        ops.changes.subscribe(lambda change, server_id: seen.append((change, server_id)))

        added = await atooldeck("server", "add", "demo", "--command", PYTHON, "--arg", TINY)
        assert added.returncode == 0, added.stderr
        demo_id = added.stdout.split("(")[1].rstrip(")\n")
        # The dashboard's change bus heard the write at once, and auto-start started it.
        assert (Change.SERVERS, demo_id) in seen
        await until(lambda: _status(ops, "demo", "running"))

        stopped = await atooldeck("server", "stop", "demo")
        assert (stopped.returncode, stopped.stdout) == (0, "stopped demo: stopped\n")
        started = await atooldeck("server", "start", "demo")
        assert (started.returncode, started.stdout) == (0, "started demo: running\n")
        called = await atooldeck("tool", "call", "demo", "ping")
        assert (called.returncode, called.stdout) == (0, "pong\n"), called.stderr
        assert (await atooldeck("server", "disable", "demo")).returncode == 0
        await until(lambda: _status(ops, "demo", "stopped"))
        assert (await atooldeck("server", "enable", "demo")).returncode == 0
        await until(lambda: _status(ops, "demo", "running"))
        jobs = await atooldeck("jobs", "run", "health")
        assert jobs.returncode == 0 and jobs.stdout.startswith("health: "), jobs.stderr
        empty = await atooldeck("server", "show", "")
        assert one_line_error(empty) == "tooldeck: no server ''"
        await pilot.press("q")
    # Quitting withdrew the socket with the lock; the dashboard's servers stopped with it.
    assert read_lock(home) is None
    assert not ops_socket_path(home).exists()


async def _status(ops: LocalOperations, name: str, status: str) -> bool:
    return (await ops.get_server(name)).status == status


def test_every_verb_works_while_a_stdio_gateway_supervises() -> None:
    home = Path(os.environ["TOOLDECK_HOME"])
    gateway = subprocess.Popen(
        [sys.executable, "-m", "app", "gateway", "--stdio"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: published_socket(home), timeout_s=60)
        started = tooldeck("server", "start", "calculator")
        assert (started.returncode, started.stdout) == (0, "started calculator: running\n")
        called = tooldeck("tool", "call", "calculator", "add", "--args", '{"a": 2, "b": 3}')
        assert (called.returncode, called.stdout) == (0, "5\n"), called.stderr
        added = tooldeck("server", "add", "demo", "--command", PYTHON, "--arg", TINY)
        assert added.returncode == 0, added.stderr
        wait_for(lambda: _listed_status("demo") == "running")
        status = tooldeck("status")
        assert status.returncode == 3  # no daemon, but a supervisor the CLI works through
        assert "in-process: gateway (pid" in status.stdout
        assert f"cli socket {ops_socket_path(home)}" in status.stdout
    finally:
        assert gateway.stdin is not None
        gateway.stdin.close()  # the client went away: the gateway stops its servers and exits
        code = gateway.wait(timeout=30)
    assert code == 0, gateway.stderr.read() if gateway.stderr else ""
    assert not ops_socket_path(home).exists()


def _listed_status(name: str) -> str | None:
    listed = tooldeck("server", "list", "--json")
    return {server["name"]: server["status"] for server in json.loads(listed.stdout)}.get(name)


def test_the_cli_reaches_the_daemon_by_its_socket_without_the_token(tmp_path: Path) -> None:
    home = Path(os.environ["TOOLDECK_HOME"])
    daemon = start_daemon(home)
    try:
        info = read_lock(home)
        assert info is not None and info.socket == str(ops_socket_path(home)) and info.url
        # Without the token file the HTTP API would answer 401; the private socket needs none.
        token_path(home).unlink()
        restarted = tooldeck("server", "restart", "calculator")
        assert (restarted.returncode, restarted.stdout) == (0, "restarted calculator: running\n")
        assert one_line_error(tooldeck("server", "show", "")) == "tooldeck: no server ''"
    finally:
        assert daemon.stop(signal.SIGTERM) == 0
    assert not ops_socket_path(home).exists()


def test_a_data_dir_too_long_for_a_socket_gets_a_private_short_one(tmp_path: Path) -> None:
    from app.faces.http.ops_socket import _listening
    from app.runtime.socket_paths import MAX_SOCKET_PATH

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = ops_socket_path(deep)
    assert len(os.fsencode(path)) <= MAX_SOCKET_PATH
    assert path.parent.name == f"tooldeck-{os.getuid()}"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ops_socket_path(deep) == path != ops_socket_path(deep / "other")
    with _listening(path) as sock:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sock.getsockname()  # bound and listening
    assert not path.exists()
