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


async def test_a_daemon_that_dies_is_one_lasting_state_until_it_answers_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No notification per failed refresh: the top line says the daemon does not answer, the
    figures are greyed, and the dashboard picks up again when the daemon is back."""
    from app.tui.app import TooldeckApp
    from tests.runtime_helpers import free_port
    from widgets.status_bar import StatusBar

    home = tmp_path / "home"
    port = str(free_port())
    daemon = start_daemon(home, port=port)
    try:
        monkeypatch.setenv("TOOLDECK_HOME", str(home))
        app = TooldeckApp(load_settings(home), refresh_interval=0.2, cursor_blink=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(lambda: app.ops is not None and app.link.mode == "attached")
            bar = app.screen.query_one(StatusBar)
            await until(lambda: "attached to daemon" in str(bar.render()))
            failures = 0
            lost = app.daemon_unreachable

            def counted(error: object) -> None:
                nonlocal failures
                failures += 1
                lost(error)  # type: ignore[arg-type]

            monkeypatch.setattr(app, "daemon_unreachable", counted)
            daemon.kill()
            await until(lambda: failures >= 6)  # several refreshes have failed since
            await pilot.pause()
            assert app.link.unreachable and app.screen.has_class("-stale")
            assert "daemon unreachable" in str(bar.render())
            assert not list(app._notifications)
            # Back at the same address: the next refresh finds it.
            daemon = start_daemon(home, port=port)
            await until(lambda: not app.link.unreachable, timeout_s=60)
            await pilot.pause()
            assert not app.screen.has_class("-stale")
            assert "attached to daemon" in str(bar.render())
            await pilot.press("q")
    finally:
        daemon.kill()
