"""The dashboard attaches to a running daemon and shows its servers, live (Pilot)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.settings import load_settings
from app.ops.remote import RemoteOperations
from tests.conftest import stdio_server_spec
from tests.daemon_helpers import start_daemon

SERVERS = "/api/v1/toolservers/servers"


async def until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the dashboard")
        await asyncio.sleep(0.05)


async def test_dashboard_attaches_to_the_daemon_and_follows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.tui.app import TooldeckApp
    from widgets.server_table import ServerTable

    home = tmp_path / "home"
    daemon = start_daemon(home)
    try:
        with daemon.client() as http:
            created = http.post(SERVERS, json=stdio_server_spec("daemon-only", "tiny"))
            assert created.status_code == 201
        monkeypatch.setenv("TOOLDECK_HOME", str(home))
        app = TooldeckApp(load_settings(home), refresh_interval=0.2, cursor_blink=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(lambda: app.ops is not None)
            assert isinstance(app.ops, RemoteOperations)
            table = app.screen.query_one("#servers", ServerTable)

            def status_of(name: str) -> str | None:
                rows = [row for row in table.models if row.name == name]
                return rows[0].status if rows else None

            await until(lambda: status_of("daemon-only") == "running")
            # A change made in the daemon by someone else shows up without a key press.
            with daemon.client() as http:
                assert http.post(f"{SERVERS}/daemon-only/stop").status_code == 200
            await until(lambda: status_of("daemon-only") == "stopped")
            await pilot.press("q")
        # Quitting an attached dashboard stops nothing in the daemon.
        with daemon.client() as http:
            assert http.get(f"{SERVERS}/calculator").json()["status"] == "running"
    finally:
        assert daemon.stop() == 0
