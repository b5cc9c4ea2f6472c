"""Pilot tests of managing from the deck with keys alone: the trim screen, the alert rules
screen, and limits and run-as in the server form."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from textual.widgets import DataTable, Input, Label, Select, Static

from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.screens.alert_rules import AlertRulesScreen
from app.tui.screens.confirm import ConfirmScreen
from app.tui.screens.server_form import ServerFormScreen
from app.tui.screens.trim import TrimScreen
from storage.models import ServerTool
from tests.test_tui_import import help_text
from tests.tui_helpers import (
    FIXED_NOW,
    add_servers,
    error_of,
    make_app,
    notices,
    palette_search,
    settle,
    text_of,
    type_into,
)
from widgets.live_table import MARK_GLYPH

# The dashboard's fixed clock looks back from FIXED_NOW.
LONG_AGO = FIXED_NOW - timedelta(days=60)


async def add_old_tools(ops: LocalOperations, server_id: str, *names: str) -> dict[str, str]:
    """Tools discovered 60 days ago and never called: each a trim suggestion."""
    ids = {}
    async with ops.db.session() as session:
        for name in names:
            tool = ServerTool(
                server_id=server_id,
                name=name,
                description=f"the {name} tool " + "with a long description " * len(name),
                input_schema={"type": "object", "properties": {"path": {"type": "string"}}},
                is_available=True,
                discovered_at=LONG_AGO,
            )
            session.add(tool)
            await session.flush()
            ids[name] = tool.id
    return ids


def trim_rows(app: Any) -> list[list[str]]:
    table = app.screen.query_one("#trim-table", DataTable)
    return [[str(cell) for cell in table.get_row(row.key)] for row in table.ordered_rows]


async def test_trim_lists_costs_and_disables_the_marked_after_asking(
    settings: Settings, ops: LocalOperations
) -> None:
    (alpha,) = await add_servers(ops, "alpha")
    ids = await add_old_tools(ops, alpha, "fetch", "grep", "write_everything")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("z")
        await settle(pilot)
        assert isinstance(app.screen, TrimScreen)
        shown = trim_rows(app)
        assert [row[2] for row in shown] == ["fetch", "grep", "write_everything"]
        costs = [int(row[4].replace(",", "")) for row in shown]
        # A longer description costs more context; every tool costs something.
        assert 0 < costs[0] < costs[2]
        status = text_of(app.screen.query_one("#trim-result", Static))
        assert "1 chosen" in status and f"~{costs[0]:,} tokens" in status

        # Two marked: the first and the third.
        await pilot.press("space", "down", "space")
        await settle(pilot)
        assert [row[0] for row in trim_rows(app)] == [MARK_GLYPH, " ", MARK_GLYPH]
        assert f"~{costs[0] + costs[2]:,} tokens" in text_of(
            app.screen.query_one("#trim-result", Static)
        )

        # The confirmation names them; Cancel has the focus, so enter disables nothing.
        await pilot.press("minus")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        question = text_of(app.screen.query_one("#confirm-message", Static))
        assert "alpha/fetch" in question and "alpha/write_everything" in question
        assert "alpha/grep" not in question
        await pilot.press("enter")
        await settle(pilot)
        assert [(await ops.get_tool(tool_id)).enabled for tool_id in ids.values()] == [True] * 3

        await pilot.press("minus")
        await settle(pilot)
        await pilot.press("right", "enter")
        await settle(pilot)
        assert isinstance(app.screen, TrimScreen)
        assert not (await ops.get_tool(ids["fetch"])).enabled
        assert not (await ops.get_tool(ids["write_everything"])).enabled
        assert (await ops.get_tool(ids["grep"])).enabled
        assert [row[2] for row in trim_rows(app)] == ["grep"]
        result = text_of(app.screen.query_one("#trim-result", Static))
        assert "disabled 2 tools" in result and f"~{costs[0] + costs[2]:,} tokens freed" in result
        assert any("Disabled 2 tools" in notice for notice in notices(app))
        audit = await ops.list_audit(alpha)
        assert any(entry.actor == app.actor for entry in audit)


async def test_trim_window_changes_and_read_only_hides_disabling(
    settings: Settings, ops: LocalOperations
) -> None:
    (alpha,) = await add_servers(ops, "alpha")
    ids = await add_old_tools(ops, alpha, "fetch")
    app = make_app(settings, ops, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("z")
        await settle(pilot)
        assert isinstance(app.screen, TrimScreen)
        assert app.screen.days == 30
        await pilot.press("d")
        await settle(pilot)
        # 90 days: discovered 60 days ago, it has not had the whole window, so it is left out.
        assert app.screen.days == 90 and trim_rows(app) == []
        await pilot.press("d", "d")
        await settle(pilot)
        assert app.screen.days == 7 and len(trim_rows(app)) == 1
        await pilot.press("space", "minus")
        await settle(pilot)
        assert isinstance(app.screen, TrimScreen)
        assert (await ops.get_tool(ids["fetch"])).enabled
        keys = help_text(app.screen)
        assert "Window" in keys and "Disable" not in keys and "Mark" not in keys
        main = app.screen_stack[0]
        assert "Trim unused tools" in help_text(main) and "Alert rules" in help_text(main)
        await pilot.press("escape", "ctrl+p")
        await settle(pilot)
        assert await palette_search(pilot, "alert rul") == "Alert rules"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, AlertRulesScreen)


async def test_limits_and_run_as_are_checked_inline_and_saved_with_the_server(
    settings: Settings, ops: LocalOperations
) -> None:
    (alpha,) = await add_servers(ops, "alpha")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, ServerFormScreen)
        await type_into(pilot, "max_rss_mb", "0")
        await type_into(pilot, "run_as_user", "no-such-account")
        await type_into(pilot, "display_name", "Alpha")
        await pilot.press("ctrl+s")
        await settle(pilot)
        # Beside each field, and nothing saved: neither the limits nor the rest of the form.
        assert isinstance(app.screen, ServerFormScreen)
        assert "greater than 0" in error_of(app, "max_rss_mb")
        assert "no user 'no-such-account'" in error_of(app, "run_as_user")
        await type_into(pilot, "max_rss_mb", "512")
        await type_into(pilot, "run_as_user", "root")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "may not run as root" in error_of(app, "run_as_user")
        assert (await ops.get_server_limits(alpha)).max_rss_mb is None
        assert (await ops.get_server(alpha)).display_name is None

        await type_into(pilot, "run_as_user", "")
        await type_into(pilot, "max_concurrent_calls", "4")
        await type_into(pilot, "max_queued_calls", "16")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, ServerFormScreen)
        limits = await ops.get_server_limits(alpha)
        assert (limits.max_rss_mb, limits.max_concurrent_calls, limits.max_queued_calls) == (
            512,
            4,
            16,
        )
        assert (await ops.get_server(alpha)).display_name == "Alpha"

        # Opened again, the form shows what is stored; an emptied field switches a limit off.
        await pilot.press("e")
        await settle(pilot)
        assert app.screen.query_one("#max_rss_mb", Input).value == "512"
        assert app.screen.query_one("#max_concurrent_calls", Input).value == "4"
        await type_into(pilot, "max_rss_mb", "")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert (await ops.get_server_limits(alpha)).max_rss_mb is None


async def test_an_http_server_has_call_limits_but_no_process_limits(
    settings: Settings, ops: LocalOperations
) -> None:
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        await type_into(pilot, "name", "remote")
        app.screen.query_one("#transport", Select).value = "streamable_http"
        await settle(pilot)
        assert not app.screen.query_one("#local-limits").display
        await type_into(pilot, "url", "http://127.0.0.1:9/mcp")
        await type_into(pilot, "max_concurrent_calls", "2")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, ServerFormScreen)
        (server,) = await ops.list_servers()
        limits = await ops.get_server_limits(server.id)
        assert (limits.max_concurrent_calls, limits.max_rss_mb) == (2, None)


async def test_alert_rules_are_checked_as_typed_and_saved_to_the_config_file(
    settings: Settings, ops: LocalOperations
) -> None:
    app = make_app(settings, ops)
    config = settings.data_dir / "config.toml"
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        assert isinstance(app.screen, AlertRulesScreen)
        hint = str(app.screen.query_one("#rules-hint", Label).render())
        assert "config.toml in the data dir" in hint
        assert "default" in str(app.screen.query_one("#unit-alert_p95_ms", Label).render())
        assert app.screen.query_one("#alert_p95_ms", Input).value == "5000"

        await type_into(pilot, "alert_p95_ms", "0")
        assert "milliseconds > 0" in error_of(app, "alert_p95_ms")
        await type_into(pilot, "alert_webhook_url", "hooks.example.com/x")
        assert "http(s) URL" in error_of(app, "alert_webhook_url")
        await type_into(pilot, "alert_command", "no-such-notifier --to ops")
        assert "no program 'no-such-notifier'" in error_of(app, "alert_command")
        await pilot.press("ctrl+s")
        await settle(pilot)
        # Nothing saved while a field is wrong: not even the fields that are right.
        assert not config.exists() and settings.alert_p95_ms == 5000.0

        await type_into(pilot, "alert_p95_ms", "1500")
        await type_into(pilot, "alert_webhook_url", "https://hooks.example.com/T0/secret-path")
        await type_into(pilot, "alert_command", "")
        assert error_of(app, "alert_p95_ms") == "" and error_of(app, "alert_webhook_url") == ""
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert settings.alert_p95_ms == 1500.0
        assert settings.alert_webhook_url == "https://hooks.example.com/T0/secret-path"
        assert "alert_p95_ms = 1500.0" in config.read_text()
        # Shown back masked: the path of a webhook is often its key.
        shown = app.screen.query_one("#alert_webhook_url", Input).value
        assert "secret-path" not in shown
        assert any(f"to {config}" in notice for notice in notices(app))
        assert "config.toml" in str(app.screen.query_one("#unit-alert_p95_ms", Label).render())

        # The alerts screen leads here too.
        await pilot.press("escape", "exclamation_mark")
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, AlertRulesScreen)
        assert app.screen.query_one("#alert_p95_ms", Input).value == "1500"


async def test_alert_rules_read_only_and_set_by_the_environment(
    settings: Settings, ops: LocalOperations, monkeypatch: Any
) -> None:
    monkeypatch.setenv("TOOLDECK_ALERT_MIN_CALLS", "50")
    settings.alert_min_calls = 50
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        assert app.screen.query_one("#alert_min_calls", Input).disabled
        unit = str(app.screen.query_one("#unit-alert_min_calls", Label).render())
        assert "TOOLDECK_ALERT_MIN_CALLS" in unit
        assert not app.screen.query_one("#alert_p95_ms", Input).disabled
    app = make_app(settings, ops, read_only=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        assert isinstance(app.screen, AlertRulesScreen)
        assert app.screen.query_one("#alert_p95_ms", Input).disabled
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not (settings.data_dir / "config.toml").exists()
