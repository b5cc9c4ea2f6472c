"""The main screen with a realistic fleet: long names, filters over marks, sorting, deleting
built-ins, and the cursor after a new server."""

from __future__ import annotations

from typing import Any

from textual.widgets import Input, Static

from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.screens.confirm import ConfirmScreen
from app.tui.screens.details import ServerDetailsScreen
from app.tui.screens.server_form import ServerFormScreen
from tests.test_tui_alerts import add_alert
from tests.test_tui_pilot import main_screen
from tests.test_tui_screens import add_tools
from tests.tui_helpers import FakeRuntime, add_servers, drawn_lines, make_app, notices, settle
from widgets.status_bar import StatusBar
from widgets.tool_table import ToolTable


def names(table: Any) -> list[str]:
    return [table.model(key).name for key in table.visible_keys]


async def test_marks_hidden_by_the_filter_are_never_acted_on_unseen(
    settings: Settings, ops: LocalOperations
) -> None:
    ids = await add_servers(ops, "live-1", "live-2", "live-3", "broken-1")
    runtime = FakeRuntime()
    ops.runtime = runtime  # type: ignore[assignment]
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await settle(pilot)
        main = main_screen(app)
        await pilot.press("slash", *"live", "enter", "ctrl+a")  # mark every live one
        await settle(pilot)
        assert len(main.servers.marked) == 3
        await pilot.press("slash", "ctrl+u", *"broken", "enter")
        await settle(pilot)
        assert names(main.servers) == ["broken-1"]
        state = main.query_one(StatusBar).state
        assert state is not None and state.marked == 3 and state.hidden_marked == 3
        await pilot.press("s")
        await settle(pilot)
        assert runtime.calls == []  # nothing in sight is marked: nothing is started
        assert any("hidden by the filter" in message for message in notices(app))
        # One marked row in sight: only it is started, and the notice counts the others.
        await pilot.press("slash", "ctrl+u", *"live-1", "enter", "s")
        await settle(pilot)
        assert runtime.calls == [("start", ids[0])]
        assert any("2 marked server(s) hidden" in message for message in notices(app))


async def test_mark_all_marks_what_is_in_sight_and_again_unmarks(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "a1", "a2", "b1")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        main = main_screen(app)
        await pilot.press("slash", "a", "enter", "ctrl+a")
        await settle(pilot)
        assert sorted(main.servers.model(key).name for key in main.servers.marked) == [  # type: ignore[union-attr]
            "a1",
            "a2",
        ]
        await pilot.press("ctrl+a")
        assert not main.servers.marked


async def test_long_names_take_the_width_and_are_cut_with_an_ellipsis(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "github-enterprise-production", "github-enterprise-staging", "x" * 64)
    await add_tools(ops, "github-enterprise-production", "get-annotated-message-history")
    app = make_app(settings, ops)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        main = main_screen(app)
        # Room enough: the names whole, and the 64-character one cut with an ellipsis.
        drawn = "\n".join(drawn_lines(main.servers))
        assert "github-enterprise-production" in drawn and "github-enterprise-staging" in drawn
        assert "x" * 20 in drawn and "…" in drawn
        assert "get-annotated-message-history" in "\n".join(drawn_lines(main.tools))
        for size in ((120, 36), (80, 24)):
            await pilot.resize_terminal(*size)
            await settle(pilot)
            rows = drawn_lines(main.servers)
            production = [row for row in rows if "…production" in row]
            staging = [row for row in rows if "…staging" in row]
            # Cut before the last word: the two stay apart, and the cut is shown.
            assert len(production) == 1 and len(staging) == 1, rows
            assert "…" in production[0] and "…" in staging[0]
            assert not any("github-enterpri " in row for row in rows)


async def test_a_long_server_name_leaves_the_alert_count_and_mode_on_the_top_line(
    settings: Settings, ops: LocalOperations
) -> None:
    name = "a-server-with-a-name-long-enough-to-fill-any-line-" + "z" * 13
    (server_id,) = await add_servers(ops, name)
    await add_alert(ops, server_id)
    app = make_app(settings, ops)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ServerDetailsScreen)
        line = str(app.screen.query_one(StatusBar).render())
        assert len(line) <= 80
        assert "⚠ 1 alert" in line and "no supervisor" in line and "…" in line


async def test_sorting_by_a_count_puts_the_largest_first(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "few", "many", "none")
    await add_tools(ops, "many", "t1", "t2", "t3")
    await add_tools(ops, "few", "t1")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        main = main_screen(app)
        await pilot.press("T")
        await settle(pilot)
        assert names(main.servers) == ["many", "few", "none"]
        await pilot.press("T")
        await settle(pilot)
        assert names(main.servers) == ["none", "few", "many"]


async def test_a_tools_filter_belongs_to_its_server(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "alpha", "beta")
    await add_tools(ops, "alpha", "read", "write")
    await add_tools(ops, "beta", "list", "delete")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        main = main_screen(app)
        await pilot.press("tab", "slash", *"read", "enter")
        await settle(pilot)
        assert isinstance(app.focused, ToolTable) and names(main.tools) == ["read"]
        await pilot.press("shift+tab", "down")
        await settle(pilot)
        assert main.tools.filter_text == "" and sorted(names(main.tools)) == ["delete", "list"]


async def test_deleting_a_built_in_is_refused_up_front(
    settings: Settings, ops: LocalOperations
) -> None:
    await ops.seed_builtin_servers()  # the calculator (MCP_SERVERS=calculator)
    await add_servers(ops, "mine")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+a", "ctrl+d")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        message = str(dialog.query_one("#confirm-message", Static).render())
        assert "Delete server: mine?" in message
        assert "cannot be deleted and are left as they are: calculator" in message
        assert "only ever disabled" not in message
        await pilot.press("right", "enter")
        await settle(pilot)
        assert [server.name for server in await ops.list_servers()] == ["calculator"]
        assert (await ops.get_server("calculator")).enabled
        assert not any("failed" in message for message in notices(app))


async def test_a_failure_names_its_server_once(settings: Settings, ops: LocalOperations) -> None:
    class Refusing(FakeRuntime):
        async def start(self, server_id: str, *, actor: str) -> None:
            from app.core.errors import StartFailed

            raise StartFailed("ghost: command not found: ghost")

    await add_servers(ops, "ghost")
    ops.runtime = Refusing()  # type: ignore[assignment]
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        (message,) = [text for text in notices(app) if "failed" in text]
        assert "• ghost: command not found: ghost" in message
        assert "ghost: ghost:" not in message


async def test_the_cursor_goes_to_a_new_server(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "alpha", "beta", "gamma")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ServerFormScreen)
        await pilot.press(*"delta")
        form.query_one("#command", Input).value = "true"
        await pilot.press("ctrl+s")
        await settle(pilot)
        main = main_screen(app)
        model = main.servers.model(main.servers.cursor_key or "")
        assert model is not None and model.name == "delta"


async def test_moving_in_an_empty_fleet_is_harmless(
    settings: Settings, ops: LocalOperations
) -> None:
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("k", "j", "up", "down")
        await settle(pilot)
        assert app.is_running and main_screen(app).query_one("#servers").row_count == 0
