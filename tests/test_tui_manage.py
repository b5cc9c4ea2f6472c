"""Pilot tests of managing from the deck with keys alone: the trim screen, the alert rules
screen, and limits and run-as in the server form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from textual.widgets import DataTable, Static

from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.screens.confirm import ConfirmScreen
from app.tui.screens.trim import TrimScreen
from storage.models import ServerTool
from tests.tui_helpers import add_servers, make_app, notices, settle, text_of

LONG_AGO = datetime.now(UTC) - timedelta(days=60)


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
        await pilot.press("w")
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
        assert [row[0] for row in trim_rows(app)] == ["●", " ", "●"]
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
        await pilot.press("w")
        await settle(pilot)
        assert isinstance(app.screen, TrimScreen)
        assert app.screen.days == 30
        await pilot.press("d")
        await settle(pilot)
        # 90 days: discovered 60 days ago, it has not had the whole window, so it is left out.
        assert app.screen.days == 90 and trim_rows(app) == []
        await pilot.press("d")
        await settle(pilot)
        assert app.screen.days == 7 and len(trim_rows(app)) == 1
        await pilot.press("space", "minus")
        await settle(pilot)
        assert isinstance(app.screen, TrimScreen)
        assert (await ops.get_tool(ids["fetch"])).enabled
