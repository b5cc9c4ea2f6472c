"""Keys typed faster than the dashboard draws: none lost, none sent to the wrong widget."""

from __future__ import annotations

from textual.widgets import Input

from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.screens.main import MainScreen
from app.tui.screens.server_form import ServerFormScreen
from app.tui.screens.tool_call import ToolCallScreen
from tests.test_tui_screens import add_tools
from tests.tui_helpers import add_servers, make_app, settle, type_ahead
from widgets.tool_table import ToolTable


async def test_tab_typed_ahead_on_the_call_screen(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "alpha")
    await add_tools(ops, "alpha", "add")
    server_id = (await ops.get_server("alpha")).id
    async with ops.db.session() as session:
        from sqlalchemy import update

        from storage.models import ServerTool

        schema = {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        }
        await session.execute(
            update(ServerTool).where(ServerTool.server_id == server_id).values(input_schema=schema)
        )
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("tab", "c")
        await settle(pilot)
        assert isinstance(app.screen, ToolCallScreen)
        await type_ahead(pilot, "1", "tab", "0")
        values = [field.value for field in app.screen.query("#call-form Input").results(Input)]
        assert values == ["1", "0"]


async def test_shift_tab_typed_ahead_in_the_server_form(
    settings: Settings, ops: LocalOperations
) -> None:
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ServerFormScreen)
        await pilot.press("tab")  # to the display name
        await type_ahead(pilot, "D", "shift+tab", "n")
        assert form.query_one("#display_name", Input).value == "D"
        assert form.query_one("#name", Input).value == "n"


async def test_a_filter_typed_ahead_goes_into_the_filter(
    settings: Settings, ops: LocalOperations
) -> None:
    """`/live` typed at once: the letters after `/` are the filter's, not keys of the table
    (`l` opened the log before)."""
    await add_servers(ops, "live-one", "other")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await type_ahead(pilot, "slash", "l", "i", "v", "e", "enter")
        main = app.screen
        assert isinstance(main, MainScreen)
        assert main.servers.filter_text == "live"
        names = [main.servers.model(key).name for key in main.servers.visible_keys]  # type: ignore[union-attr]
        assert names == ["live-one"]


async def test_tab_after_a_filter_moves_between_the_panes(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "live-one", "live-two", "other")
    await add_tools(ops, "live-one", "echo")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"live", "enter")
        await settle(pilot)
        main = app.screen
        assert isinstance(main, MainScreen)
        assert main.servers.has_focus
        await pilot.press("tab")
        assert isinstance(app.focused, ToolTable)
        await pilot.press("x")  # a key of the panes, not a letter for the filter
        assert main.servers.filter_text == "live"
        await pilot.press("tab")
        assert main.servers.has_focus
