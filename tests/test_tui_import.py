"""Pilot tests of the import screen (issue 8): preview, import, a bad file, read-only."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.widgets import DataTable, Input, Select, Static

from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.commands import OperationsProvider
from app.tui.screens.help import HelpScreen
from app.tui.screens.import_config import ImportScreen
from app.tui.screens.main import MainScreen
from tests.tui_helpers import add_servers, make_app, settle

FIXTURE = Path(__file__).parent / "fixtures" / "claude_desktop_config.json"
FIXTURE_NAMES = ["brave-search", "github", "sqlite"]


def table_rows(app: Any) -> list[list[str]]:
    table = app.screen.query_one("#import-table", DataTable)
    return [[str(cell) for cell in table.get_row(row.key)] for row in table.ordered_rows]


def help_text(screen: Any) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(HelpScreen(screen).render_help())
    return console.export_text()


def error_text(app: Any) -> str:
    return str(app.screen.query_one("#import-error", Static).content)


async def server_names(ops: LocalOperations) -> list[str]:
    return sorted(server.name for server in await ops.list_servers())


async def open_import(pilot: Any, path: Path | str) -> None:
    await pilot.press("i")
    await settle(pilot)
    app = pilot.app
    assert isinstance(app.screen, ImportScreen)
    app.screen.query_one("#import-path", Input).value = str(path)
    await pilot.pause()


async def test_preview_shows_the_servers_and_writes_nothing(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "github")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await open_import(pilot, FIXTURE)
        app.screen.query_one("#import-conflict", Select).value = "rename"
        await pilot.pause()
        await pilot.click("#import-preview-button")
        await settle(pilot)
        assert isinstance(app.screen, ImportScreen)
        rows = table_rows(app)
        assert [row[0] for row in rows] == ["Brave Search", "github", "sqlite"]
        assert rows[0][1:3] == ["brave-search", "create"]
        assert rows[1][1:3] == ["github-2", "rename"]
        assert rows[2][1:3] == ["sqlite", "create"]
        assert error_text(app) == ""
        assert await server_names(ops) == ["github"]


async def test_import_creates_the_servers(settings: Settings, ops: LocalOperations) -> None:
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await open_import(pilot, FIXTURE)
        await pilot.click("#import-button")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        assert await server_names(ops) == FIXTURE_NAMES
        github = await ops.get_server("github")
        assert github.command == "docker"
        assert any("created 3" in str(note.message) for note in app._notifications)
        assert (await ops.get_server("sqlite")).cwd == "/tmp"
        audit = await ops.list_audit(limit=20)
        assert audit and all(entry.actor == app.actor for entry in audit)
        assert app.actor.startswith("tui:")


async def test_a_bad_file_shows_the_error_and_creates_nothing(
    settings: Settings, ops: LocalOperations, tmp_path: Path
) -> None:
    not_json = tmp_path / "broken.json"
    not_json.write_text("{ not json")
    bad_entry = tmp_path / "bad_entry.json"
    bad_entry.write_text('{"mcpServers": {"good": {"command": "x"}, "broken": {"args": []}}}')
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await open_import(pilot, tmp_path / "missing.json")
        await pilot.click("#import-button")
        await settle(pilot)
        assert isinstance(app.screen, ImportScreen)
        assert "not found" in error_text(app)
        for path in (not_json, bad_entry):
            app.screen.query_one("#import-path", Input).value = str(path)
            await pilot.pause()
            await pilot.click("#import-button")
            await settle(pilot)
            assert isinstance(app.screen, ImportScreen)
            message = error_text(app)
            assert message and "\n" not in message
        assert "broken" in error_text(app)
        assert await server_names(ops) == []


async def test_read_only_hides_the_import_key(settings: Settings, ops: LocalOperations) -> None:
    app = make_app(settings, ops, read_only=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        shown = {binding.binding.action for binding in app.screen.active_bindings.values()}
        assert "import_config" not in shown
        await pilot.press("i")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        provider = OperationsProvider(app.screen)
        assert "Import configuration" not in [hit.text async for hit in provider.discover()]
        assert "Import configuration" not in help_text(app.screen)


async def test_import_is_in_help_and_the_palette(settings: Settings, ops: LocalOperations) -> None:
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        provider = OperationsProvider(app.screen)
        assert "Import configuration" in [hit.text async for hit in provider.discover()]
        assert "Import configuration" in help_text(app.screen)
