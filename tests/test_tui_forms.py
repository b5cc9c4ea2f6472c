"""Forms and import as a new user meets them: esc asks before losing work, a failed preview
leaves no stale one behind, choices read as words, and malformed URLs are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from textual.widgets import DataTable, Input, Select

from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.screens.confirm import ConfirmScreen
from app.tui.screens.import_config import ImportScreen
from app.tui.screens.main import MainScreen
from app.tui.screens.server_form import ServerFormScreen
from app.tui.screens.tool_call import ToolCallScreen
from storage.models import ServerTool
from tests.test_tui_import import FIXTURE, error_text, open_import
from tests.tui_helpers import add_servers, make_app, settle

BAD_URLS = (
    "http://exa mple.com/mcp",
    "http://localhost:abc/mcp",
    "http://127.0.0.1:99999/mcp",
    "http://-/x",
)


async def test_esc_asks_before_throwing_a_filled_form_away(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "alpha")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        # Untouched, new or edited: esc just leaves.
        for key in ("n", "e"):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, ServerFormScreen)
            await pilot.press("escape")
            await settle(pilot)
            assert isinstance(app.screen, MainScreen)
        await pilot.press("e")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ServerFormScreen)
        await pilot.press(*"Alpha")  # into the display name
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")  # Keep editing has the focus
        await settle(pilot)
        assert app.screen is form
        assert form.query_one("#display_name", Input).value == "Alpha"
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("right", "enter")  # Discard
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        assert (await ops.get_server("alpha")).display_name is None


async def test_a_failed_preview_leaves_no_stale_one(
    settings: Settings, ops: LocalOperations, tmp_path: Path
) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(FIXTURE.read_text())
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await open_import(pilot, config)
        await pilot.press("ctrl+r")
        await settle(pilot)
        table = app.screen.query_one("#import-table", DataTable)
        assert table.display and table.row_count == 3
        config.write_text("{ not json")  # the same path, now unreadable
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert isinstance(app.screen, ImportScreen)
        assert error_text(app)
        assert not table.display and table.row_count == 0
        assert "Preview" not in str(app.screen.query_one("#import-summary").render())


async def test_choices_read_as_words_not_json(settings: Settings, ops: LocalOperations) -> None:
    (server_id,) = await add_servers(ops, "alpha")
    schema = {
        "type": "object",
        "properties": {"level": {"enum": ["error", "warning", 3]}},
        "required": ["level"],
    }
    async with ops.db.session() as session:
        session.add(ServerTool(server_id=server_id, name="log", input_schema=schema))
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("tab", "c")
        await settle(pilot)
        assert isinstance(app.screen, ToolCallScreen)
        select = app.screen.query_one("#call-form Select", Select)
        labels = [str(prompt) for prompt, _value in select._options if _value is not Select.NULL]
        assert labels == ["error", "warning", "3"]


async def test_the_form_refuses_a_malformed_url(settings: Settings, ops: LocalOperations) -> None:
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ServerFormScreen)
        await pilot.press(*"remote")
        form.query_one("#transport", Select).value = "streamable_http"
        await settle(pilot)
        for url in BAD_URLS:
            form.query_one("#url", Input).value = url
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert app.screen is form
            assert str(form.query_one("#error-url").render()).strip(), url
        assert await ops.list_servers() == []


def test_the_cli_refuses_a_malformed_url_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "TOOLDECK_HOME": str(tmp_path / "home"), "MCP_SERVERS": "calculator"}
    for url in BAD_URLS:
        command = [sys.executable, "-m", "app", "server", "add", "remote"]
        added = subprocess.run(
            [*command, "--transport", "streamable_http", "--url", url],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert added.returncode == 1, (url, added.stdout, added.stderr)
        assert len(added.stderr.strip().splitlines()) == 1, added.stderr
        assert "url" in added.stderr and "Traceback" not in added.stderr
