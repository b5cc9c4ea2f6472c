"""What stands behind the dashboard, said on every top line: its own supervisor, a daemon, or
only the stored state (read-only, or another process supervises). It decides what `q` does."""

from __future__ import annotations

from app.core.settings import Settings
from app.faces.http.ops_socket import serve_operations
from app.ops.attach import remote_operations
from app.runtime.lock import read_lock
from app.tui.app import TooldeckApp
from tests.runtime_helpers import event_kinds, eventually
from tests.tui_helpers import settle
from widgets.status_bar import StatusBar


def top_line(app: TooldeckApp) -> str:
    return str(app.screen.query_one(StatusBar).render())


async def test_a_read_only_dashboard_starts_no_server(settings: Settings) -> None:
    """Without a daemon, `--read-only` watches the stored state: no supervisor, no lock, no
    operations socket (as `tooldeck --read-only` asks for one), and the auto-start built-in
    stays stopped."""
    app = TooldeckApp(
        settings,
        read_only=True,
        serve=serve_operations,
        cursor_blink=False,
        refresh_interval=3600,
    )
    async with app.run_test(size=(120, 36)) as pilot:

        async def opened() -> bool:
            await settle(pilot)
            return app.ops is not None

        await eventually(opened, within=30)
        ops = app.ops
        assert ops is not None and not ops.supervised
        assert app.link.mode == "stored"
        assert read_lock(settings.data_dir) is None
        calculator = await ops.get_server("calculator")
        assert calculator.auto_start and calculator.status == "stopped"
        assert "starting" not in await event_kinds(ops, "calculator")  # type: ignore[arg-type]
        line = top_line(app)
        assert "no supervisor" in line and "READ-ONLY" in line


async def test_a_supervising_dashboard_says_so_and_q_stops_its_servers(
    settings: Settings,
) -> None:
    app = TooldeckApp(settings, serve=serve_operations, cursor_blink=False, refresh_interval=3600)
    async with app.run_test(size=(120, 36)) as pilot:

        async def running() -> bool:
            ops = app.ops
            return ops is not None and (await ops.get_server("calculator")).status == "running"

        await eventually(running, within=30)
        await settle(pilot)
        assert app.link.mode == "supervising"
        lock = read_lock(settings.data_dir)
        assert lock is not None and lock.kind == "dashboard"
        # It serves its operations to the CLI beside it.
        async with remote_operations(settings, lock) as cli_side:
            assert "calculator" in [server.name for server in await cli_side.list_servers()]
        assert "supervising" in top_line(app)
        ops = app.ops
        assert ops is not None
        await pilot.press("q")
    assert (await ops.get_server("calculator")).status == "stopped"
