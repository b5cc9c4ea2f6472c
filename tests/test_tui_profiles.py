"""Pilot tests of the gateway profiles screen: list, a form checked as typed with its tools
previewed, edit, and a delete that asks first."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable, Static

from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.screens.confirm import ConfirmScreen
from app.tui.screens.profiles import ProfileFormScreen, ProfilesScreen
from storage.models import ServerTool
from tests.tui_helpers import add_servers, error_of, make_app, settle, text_of, type_into


async def add_tools(ops: LocalOperations, server_id: str, *names: str) -> None:
    async with ops.db.session() as session:
        for name in names:
            session.add(
                ServerTool(
                    server_id=server_id,
                    name=name,
                    description=f"the {name} tool",
                    input_schema={"type": "object"},
                    is_available=True,
                )
            )


def rows(app: Any) -> list[str]:
    table = app.screen.query_one("#profiles-table", DataTable)
    return [str(row.key.value) for row in table.ordered_rows]


async def test_profiles_are_made_checked_previewed_edited_and_deleted(
    settings: Settings, ops: LocalOperations
) -> None:
    alpha, beta = await add_servers(ops, "alpha", "beta")
    await add_tools(ops, alpha, "read_file", "write_file")
    await add_tools(ops, beta, "search")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, ProfilesScreen)
        assert rows(app) == []
        assert "no profiles yet" in text_of(app.screen.query_one("#profile-preview", Static))

        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, ProfileFormScreen)
        # Checked as typed: the name, then a bad pattern, each under its own field.
        await type_into(pilot, "name", "Bad Name")
        assert "lowercase" in error_of(app, "name")
        await type_into(pilot, "servers", "al pha!?x y z/")
        assert "is not a server name or glob" in error_of(app, "servers")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ProfileFormScreen)  # nothing saved with errors shown
        await type_into(pilot, "name", "reader")
        await type_into(pilot, "servers", "a*")
        await type_into(pilot, "tools", "read_* !*/write_*")
        assert error_of(app, "name") == error_of(app, "servers") == ""
        preview = text_of(app.screen.query_one("#profile-form-preview", Static))
        assert "1 tools" in preview and "alpha__read_file" in preview
        assert "tokens" in preview and "estimate" in preview
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ProfilesScreen)
        await settle(pilot)
        assert rows(app) == ["reader"]
        assert "alpha__read_file" in text_of(app.screen.query_one("#profile-preview", Static))

        # A duplicate name is refused by the facade, under the field, with the form open.
        await pilot.press("n")
        await settle(pilot)
        await type_into(pilot, "name", "reader")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "already exists" in error_of(app, "name")
        await pilot.press("escape")
        await settle(pilot)

        # Edit: every tool of every server.
        await pilot.press("e")
        await settle(pilot)
        await type_into(pilot, "servers", "*")
        await type_into(pilot, "tools", "")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert (await ops.preview_profile("reader")).tool_count == 3

        # Delete asks first, and Cancel is the default.
        await pilot.press("ctrl+d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")
        await settle(pilot)
        assert [p.name for p in await ops.list_profiles()] == ["reader"]
        await pilot.press("ctrl+d")
        await settle(pilot)
        await pilot.press("right", "enter")
        await settle(pilot)
        assert await ops.list_profiles() == []
        await settle(pilot)
        assert rows(app) == []
