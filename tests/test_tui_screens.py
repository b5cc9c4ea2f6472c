"""Pilot tests of the dashboard's other screens: tools, the call screen (on the real calculator
under the real supervisor), the log viewer, events, analytics, details and the palette."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from sqlalchemy import select
from textual.widgets import DataTable, Input, RichLog, Static

from app.core.settings import Settings
from app.ops.bootstrap import running_core
from app.ops.facade import LocalOperations
from app.tui.commands import OperationsProvider
from app.tui.screens.analytics import AnalyticsScreen
from app.tui.screens.details import ServerDetailsScreen
from app.tui.screens.events import EventsScreen
from app.tui.screens.log import LogScreen
from app.tui.screens.main import MainScreen
from app.tui.screens.tool_call import ToolCallScreen
from storage.db import Database
from storage.models import ServerTool, ToolUsage
from tests.conftest import PYTHON, TEST_SERVERS
from tests.runtime_helpers import eventually
from tests.tui_helpers import (
    FIXED_NOW,
    FakeRuntime,
    add_servers,
    make_app,
    palette_search,
    settle,
)
from widgets.tool_table import ToolTable


async def add_tools(ops: LocalOperations, server: str, *names: str) -> None:
    server_id = (await ops.get_server(server)).id
    async with ops.db.session() as session:
        for name in names:
            session.add(
                ServerTool(
                    server_id=server_id,
                    name=name,
                    input_schema={"type": "object", "properties": {"x": {"type": "number"}}},
                )
            )


def rendered(renderable: Any, width: int = 120) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


async def test_tool_enable_and_bypass_toggles(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "alpha")
    await add_tools(ops, "alpha", "one", "two")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("t")  # the server table has focus: a tool key does nothing
        await settle(pilot)
        assert all(tool.enabled for tool in await ops.list_tools("alpha"))
        await pilot.press("tab")
        assert isinstance(app.focused, ToolTable)
        await pilot.press("t")
        await settle(pilot)
        tools = {tool.name: tool for tool in await ops.list_tools("alpha")}
        assert not tools["one"].enabled and tools["two"].enabled
        await pilot.press("b")
        await settle(pilot)
        tools = {tool.name: tool for tool in await ops.list_tools("alpha")}
        assert tools["one"].bypass_when_unavailable
        table = app.screen.query_one(ToolTable)
        row = table.model(table.cursor_key or "")
        assert row is not None and row.name == "one" and not row.enabled and row.bypass


async def test_call_a_tool_through_the_call_screen(settings: Settings) -> None:
    """The real calculator under the real supervisor; the call is recorded with source tui."""
    app = make_app(settings, None, core=running_core)  # type: ignore[arg-type]
    async with app.run_test(size=(120, 36)) as pilot:

        async def calculator_running() -> bool:
            ops = app.ops
            return ops is not None and (await ops.get_server("calculator")).status == "running"

        await eventually(calculator_running, within=30)
        assert app.ops is not None
        main = app.screen
        assert isinstance(main, MainScreen)
        main.reload()
        await settle(pilot)
        await pilot.press("tab")
        table = main.query_one(ToolTable)
        names = [table.model(key).name for key in table.visible_keys]  # type: ignore[union-attr]
        assert "add" in names
        table.move_cursor(row=names.index("add"))
        await pilot.press("c")
        await settle(pilot)
        call = app.screen
        assert isinstance(call, ToolCallScreen)
        await pilot.press("2", "tab", "3")
        await pilot.press("ctrl+r")
        await settle(pilot)  # the call runs in a worker
        text = rendered(call.query_one("#call-result", Static).content)
        assert "✔ ok" in text and "5" in text, text
        # Raw JSON mode carries the form's values and calls the same way.
        await pilot.press("ctrl+j")
        assert '"a": 2' in call.query_one("#call-json").text  # type: ignore[attr-defined]
        await pilot.press("escape")
        await app.action_quit()
    db = Database(settings.effective_database_url)
    try:
        async with db.session() as session:
            rows = (await session.execute(select(ToolUsage))).scalars().all()
        assert [(row.tool_name, row.source, row.success) for row in rows] == [("add", "tui", True)]
    finally:
        await db.dispose()


async def test_log_viewer_follow_and_search(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "alpha")
    log_file = settings.logs_dir / "alpha.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("starting\nerror: boom\nready\n")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, LogScreen) and screen.following
        log = screen.query_one(RichLog)
        assert len(log.lines) == 3
        with log_file.open("a") as handle:
            handle.write("later line\n")
        screen.load()
        await settle(pilot)
        assert len(log.lines) == 4
        await pilot.press("f")
        assert not screen.following
        await pilot.press("slash", "e", "r", "r", "enter")
        await settle(pilot)
        assert screen.needle == "err" and len(log.lines) == 1
        await pilot.press("escape")  # clears the search
        assert screen.needle == "" and len(log.lines) == 4
        await pilot.press("escape")  # back
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)


async def test_events_screen_filters(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "alpha", "beta")
    await ops.disable_server("beta", actor="test")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, EventsScreen)
        table = screen.query_one("#events-table", DataTable)
        assert table.row_count == 3  # two created, one disabled
        screen.kind = "disabled"
        screen.load()
        await settle(pilot)
        assert table.row_count == 1
        screen.kind, screen.server = None, "alpha"
        screen.load()
        await settle(pilot)
        assert table.row_count == 1
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_analytics_and_details_screens_open(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "alpha")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, AnalyticsScreen)
        await pilot.press("4")
        await settle(pilot)
        assert app.period == "30d"
        totals = rendered(app.screen.query_one("#analytics-totals", Static).content)
        assert "calls 0" in totals
        await pilot.press("escape", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ServerDetailsScreen)
        text = rendered(app.screen.query_one("#details-definition", Static).content)
        assert "alpha" in text and "true" in text


async def test_palette_offers_operations_by_name(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "alpha")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        provider = OperationsProvider(app.screen)
        hits = [hit.text async for hit in provider.search("restart")]
        assert "Restart servers" in hits
        # alpha is stopped: the palette offers to start it, not to stop or restart it.
        hits = [hit.text async for hit in provider.search("start alpha")]
        assert "Start alpha" in hits and "Restart alpha" not in hits
        assert not [hit async for hit in provider.search("stop alpha") if hit.text == "Stop alpha"]
        discovered = [hit.text async for hit in provider.discover()]
        assert "New server" in discovered and "Analytics" in discovered
        await pilot.press("ctrl+p")
        await settle(pilot)
        assert await palette_search(pilot, "new server") == "New server"
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.query_one("#name", Input) is not None


async def test_read_only_palette_offers_nothing_that_changes(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "alpha")
    app = make_app(settings, ops, read_only=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        provider = OperationsProvider(app.screen)
        hits = [hit.text async for hit in provider.search("alpha")]
        assert "Log of alpha" in hits and "Details of alpha" in hits
        assert not any(hit.startswith(("Restart", "Stop", "Edit")) for hit in hits)
        discovered = [hit.text async for hit in provider.discover()]
        assert "New server" not in discovered and "Delete servers" not in discovered


def test_fixed_clock_is_the_demo_clock() -> None:
    from tests.demo_data import DEMO_NOW

    assert FIXED_NOW == DEMO_NOW


async def test_test_connection_runs_the_probe(settings: Settings, ops: LocalOperations) -> None:
    """The form's Test connection starts the real server once and shows what it offers."""
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        form.query_one("#name", Input).value = "tiny"
        form.query_one("#command", Input).value = PYTHON
        form.query_one("#args").text = str(TEST_SERVERS / "tiny.py")  # type: ignore[attr-defined]
        await pilot.press("ctrl+t")
        await settle(pilot)  # the probe runs in a worker
        text = rendered(form.query_one("#probe-result", Static).content)
        assert "✔" in text and "1 tools: ping" in text, text
        assert [server.name for server in await ops.list_servers()] == []  # nothing saved


async def test_health_check_now_reports_per_server(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "alpha", "beta")
    runtime = FakeRuntime()
    ops.runtime = runtime  # type: ignore[assignment]
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("space", "space", "h")
        await settle(pilot)
        assert sorted(verb for verb, _ in runtime.calls) == ["health", "health"]
        messages = [notification.message for notification in app._notifications]
        assert any("2 responsive, 0 not" in message for message in messages)


async def test_palette_finds_tools_to_call(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "calc")
    await add_tools(ops, "calc", "divide", "add")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        assert await palette_search(pilot, "call div") == "Call divide on calc"
        await pilot.press("enter")
        await settle(pilot)
        call = app.screen
        assert isinstance(call, ToolCallScreen) and call.tool.name == "divide"
