"""Pilot tests of the dashboard: every interaction of issue 5, driven by keys only."""

from __future__ import annotations

import io

from rich.console import Console
from textual.widgets import Input, Static

from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.screens.confirm import ConfirmScreen
from app.tui.screens.help import HelpScreen
from app.tui.screens.main import MainScreen
from app.tui.screens.server_form import ServerFormScreen
from tests.tui_helpers import FakeRuntime, add_servers, make_app, settle
from widgets.server_table import ServerTable
from widgets.status_bar import StatusBar


def main_screen(app: object) -> MainScreen:
    screen = app.screen  # type: ignore[attr-defined]
    assert isinstance(screen, MainScreen)
    return screen


def server_names(app: object) -> list[str]:
    table = main_screen(app).servers
    return [table.model(key).name for key in table.visible_keys]  # type: ignore[union-attr]


async def type_text(pilot: object, text: str) -> None:
    await pilot.press(*[{" ": "space"}.get(char, char) for char in text])  # type: ignore[attr-defined]


async def test_main_screen_lists_servers_and_period(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "alpha", "beta")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert server_names(app) == ["alpha", "beta"]
        status = app.screen.query_one(StatusBar).state
        assert status is not None and status.period == "24h" and status.total == 2


async def test_period_keys(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "alpha")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        for key, period in (("1", "1h"), ("3", "7d"), ("5", "90d"), ("2", "24h")):
            await pilot.press(key)
            await settle(pilot)
            assert app.period == period
            state = app.screen.query_one(StatusBar).state
            assert state is not None and state.period == period
            assert str(app.screen.query_one("#metrics-box").border_title).endswith(period)


async def test_create_server_through_the_form(settings: Settings, ops: LocalOperations) -> None:
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, ServerFormScreen)
        await type_text(pilot, "echo-server")
        app.screen.query_one("#command", Input).value = "python3"
        app.screen.query_one("#description", Input).value = "echoes"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        created = await ops.get_server("echo-server")
        assert created.command == "python3" and created.description == "echoes"
        assert created.created_by is not None and created.created_by.startswith("tui")
        assert "echo-server" in server_names(app)


async def test_bad_input_stays_in_the_form(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "taken")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        await type_text(pilot, "Bad Name")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form
        name_error = form.query_one("#error-name", Static)
        assert "lowercase" in str(name_error.render())
        # A stdio server without a command: the facade's cross-field rule, under its field.
        assert "command" in str(form.query_one("#error-command", Static).render())
        # A name the facade refuses (a duplicate) lands under the name as well.
        form.query_one("#name", Input).value = "taken"
        form.query_one("#command", Input).value = "true"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form
        assert "already exists" in str(form.query_one("#error-name", Static).render())
        # A filled form asks before esc throws it away; Discard it.
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("right", "enter")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        assert [server.name for server in await ops.list_servers()] == ["taken"]


async def test_edit_a_server(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "alpha", env={"TOKEN": "s3cret"})
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ServerFormScreen)
        assert form.query_one("#name", Input).value == "alpha"
        form.query_one("#description", Input).value = "changed"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        server = await ops.get_server("alpha", reveal=True)
        assert server.description == "changed"
        # The masked secret went back as the mask, which keeps the stored value.
        assert server.env == {"TOKEN": "s3cret"}


async def test_env_values_are_masked_until_revealed(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "alpha", env={"TOKEN": "s3cret"})
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        value = app.screen.query_one("#env .kv-value", Input)
        assert value.password and value.value != "s3cret"
        await pilot.press("ctrl+r")
        await settle(pilot)
        value = app.screen.query_one("#env .kv-value", Input)
        assert not value.password and value.value == "s3cret"


async def test_delete_cancel_then_confirm(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "alpha", "beta")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+d")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert "alpha" in str(dialog.query_one("#confirm-message", Static).render())
        await pilot.press("enter")  # Cancel has the focus
        await settle(pilot)
        assert len(await ops.list_servers()) == 2
        await pilot.press("ctrl+d")
        await settle(pilot)
        await pilot.press("right", "enter")
        await settle(pilot)
        assert [server.name for server in await ops.list_servers()] == ["beta"]
        assert server_names(app) == ["beta"]


async def test_mark_three_and_restart(settings: Settings, ops: LocalOperations) -> None:
    ids = await add_servers(ops, "a1", "a2", "a3", "a4")
    runtime = FakeRuntime()
    ops.runtime = runtime  # type: ignore[assignment]
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("space", "space", "space")
        await settle(pilot)
        state = app.screen.query_one(StatusBar).state
        assert state is not None and state.marked == 3
        await pilot.press("r")
        await settle(pilot)
        assert sorted(server for verb, server in runtime.calls if verb == "restart") == sorted(
            ids[:3]
        )
        messages = [notification.message for notification in app._notifications]
        assert any("restarted 3" in message for message in messages)
        # Marks stay for the next action; esc clears them.
        assert len(main_screen(app).servers.marked) == 3
        await pilot.press("escape")
        assert not main_screen(app).servers.marked


async def test_bulk_failure_summary_names_the_failures(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "a1", "a2")
    app = make_app(settings, ops)  # no runtime: start is refused for each server
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("space", "space", "s")
        await settle(pilot)
        messages = [notification.message for notification in app._notifications]
        assert any("failed 2" in message and "a1:" in message for message in messages)


async def test_filter_and_escape(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "github", "gitlab", "slack")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await type_text(pilot, "git")
        await settle(pilot)
        assert server_names(app) == ["github", "gitlab"]
        await pilot.press("enter")  # keep the filter, back to the table
        await settle(pilot)
        assert isinstance(app.focused, ServerTable)
        assert server_names(app) == ["github", "gitlab"]
        await pilot.press("escape")
        await settle(pilot)
        assert server_names(app) == ["github", "gitlab", "slack"]


async def test_sort_by_shift_letter_and_reverse(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "bravo", "alpha", "charlie")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert server_names(app) == ["alpha", "bravo", "charlie"]
        await pilot.press("N")
        await settle(pilot)
        assert server_names(app) == ["alpha", "bravo", "charlie"]
        await pilot.press("N")
        await settle(pilot)
        assert server_names(app) == ["charlie", "bravo", "alpha"]


async def test_live_update_keeps_cursor_sort_filter_and_marks(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "web1", "web2", "web3", "web4", "db9")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await type_text(pilot, "web")
        await pilot.press("enter", "N", "N")  # reversed by name
        await pilot.press("g", "down", "space")  # mark web3; the cursor moves on to web2
        await settle(pilot)
        table = main_screen(app).servers
        assert server_names(app) == ["web4", "web3", "web2", "web1"]
        cursor = table.cursor_key
        await ops.disable_server("web1", actor="test")
        await ops.create_server({"name": "web5", "command": "true"}, actor="test")
        main_screen(app).reload()
        await settle(pilot)
        assert server_names(app) == ["web5", "web4", "web3", "web2", "web1"]
        assert table.cursor_key == cursor  # still web2, though its row moved down
        assert [table.model(key).name for key in table.marked] == ["web3"]  # type: ignore[union-attr]
        assert table.filter_text == "web"
        assert table.sort_column == "name" and table.sort_reverse


async def test_read_only_hides_every_action(settings: Settings, ops: LocalOperations) -> None:
    await add_servers(ops, "alpha")
    app = make_app(settings, ops, read_only=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        shown = {binding.binding.action for binding in app.screen.active_bindings.values()}
        for action in ("new_server", "edit_server", "delete", "restart", "start", "enable"):
            assert action not in shown
        assert "filter" in shown and "analytics" in shown
        await pilot.press("n", "e", "ctrl+d", "r")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        state = app.screen.query_one(StatusBar).state
        assert state is not None and state.read_only


async def test_ui_answers_keys_while_an_action_hangs(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "stuck")
    runtime = FakeRuntime(hang=True)
    ops.runtime = runtime  # type: ignore[assignment]
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await pilot.pause()
        assert runtime.calls == [("restart", (await ops.get_server("stuck")).id)]
        # The restart still hangs: were the keys waiting behind it, none of these would land.
        await pilot.press("3")
        await pilot.pause()
        assert app.period == "7d"
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        runtime.release.set()
        await settle(pilot)


async def test_help_lists_the_screen_keys(settings: Settings, ops: LocalOperations) -> None:
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(help_screen.render_help())
        text = console.export_text()
        for words in ("New", "Delete", "Mark", "Filter", "Period 7d", "Sort by name", "Quit"):
            assert words in text
