"""Pilot tests of the gateway clients screen in a dashboard that runs no gateway: the figures
come from the usage rows, the screen says where the sessions would come from, and `enter`
opens one client with the tools it calls most. (A real client through a real daemon's gateway
is tests/test_gateway_clients.py's.)"""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

from rich.console import Console
from textual.widgets import DataTable, Label

from app.core.settings import Settings
from app.core.usage_record import UsageRecord
from app.ops.facade import LocalOperations
from app.runtime.usage import UsageRecorder
from app.tui.screens.clients import NO_GATEWAY, ClientDetailScreen, ClientsScreen
from app.tui.screens.help import HelpScreen
from app.tui.screens.main import MainScreen
from tests.conftest import stdio_server_spec
from tests.tui_helpers import FIXED_NOW, make_app, settle


def rows(app: Any, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(f"#{table_id}", DataTable)
    return [[str(cell) for cell in table.get_row(row.key)] for row in table.ordered_rows]


async def _calls(ops: LocalOperations, server_id: str, *calls: tuple[str, str, bool]) -> None:
    async with UsageRecorder(ops.db, ops.settings) as recorder:
        for minutes, (client, tool, ok) in enumerate(calls, start=1):
            recorder.record(
                UsageRecord(
                    server_id=server_id,
                    tool_id=None,
                    tool_name=tool,
                    called_at=FIXED_NOW - timedelta(minutes=minutes),
                    response_time_ms=12.0,
                    success=ok,
                    error_message=None if ok else "boom",
                    source="gateway",
                    client_name=client,
                )
            )


async def test_clients_and_one_clients_tools_without_a_gateway(
    settings: Settings, ops: LocalOperations
) -> None:
    server = await ops.create_server(stdio_server_spec("tiny", "tiny"), actor="test")
    await _calls(
        ops,
        server.id,
        ("agent-a", "ping", True),
        ("agent-a", "ping", True),
        ("agent-a", "echo", False),
        ("agent-b", "ping", True),
    )
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)
        assert isinstance(app.screen, ClientsScreen)
        assert str(app.screen.query_one("#clients-hint", Label).content) == NO_GATEWAY
        assert rows(app, "clients-sessions") == []
        figures = rows(app, "clients-figures")
        assert [row[:4] for row in figures] == [
            ["agent-a", "-", "3", "1"],
            ["agent-b", "-", "1", "0"],
        ]
        assert figures[0][4] == "33.3%" and figures[0][5] == "12ms"

        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ClientDetailScreen)
        assert app.screen.client_name == "agent-b"
        assert [row[:4] for row in rows(app, "client-tools")] == [["ping", "tiny", "1", "0"]]
        await pilot.press("escape", "up", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ClientDetailScreen)
        assert [row[:4] for row in rows(app, "client-tools")] == [
            ["ping", "tiny", "2", "0"],
            ["echo", "tiny", "1", "1"],
        ]
        await pilot.press("escape", "escape")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)


async def test_the_key_is_on_the_main_screen_and_in_its_help(
    settings: Settings, ops: LocalOperations
) -> None:
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(app.screen.render_help())
        assert "Gateway clients" in console.export_text()
        await pilot.press("escape", "w")
        await settle(pilot)
        assert isinstance(app.screen, ClientsScreen)
        assert rows(app, "clients-figures") == []
