"""Pilot tests of the API tokens screen: the list (never a value), a form checked as typed, the
value shown once, a revoke that asks first, and read-only mode."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable, Input, Select

from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.runtime.access_tokens import hash_token
from app.tui.screens.confirm import ConfirmScreen
from app.tui.screens.tokens import TokenFormScreen, TokenShownScreen, TokensScreen
from storage.models import ApiToken
from tests.tui_helpers import error_of, make_app, settle, type_into


def rows(app: Any) -> list[list[str]]:
    table = app.screen.query_one("#tokens-table", DataTable)
    return [[str(cell) for cell in table.get_row(row.key)] for row in table.ordered_rows]


async def test_a_token_is_made_shown_once_and_revoked(
    settings: Settings, ops: LocalOperations
) -> None:
    await ops.create_profile({"name": "coding", "servers": ["*"]}, actor="test")
    await ops.add_token({"name": "grafana", "scope": "read"}, actor="cli:alice")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, TokensScreen)
        assert [row[:3] for row in rows(app)] == [["admin", "admin", "-"], ["grafana", "read", "-"]]
        assert rows(app)[1][3] == "never" and rows(app)[1][5] == "cli:alice"

        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, TokenFormScreen)
        await type_into(pilot, "name", "Agent")
        assert "lowercase" in error_of(app, "name")
        await type_into(pilot, "name", "agent")
        await type_into(pilot, "profile", "coding")
        # A profile binds only a gateway token: said under the field before saving.
        assert "only a gateway token" in error_of(app, "profile")
        app.screen.query_one("#scope", Select).value = "gateway"
        await settle(pilot)
        assert error_of(app, "profile") == ""
        await pilot.press("ctrl+s")
        await settle(pilot)

        assert isinstance(app.screen, TokenShownScreen)
        value = app.screen.query_one("#token-value", Input).value
        assert value.startswith("tdk_")
        made = {token.name: token for token in await ops.list_tokens()}
        assert (made["agent"].scope, made["agent"].profile) == ("gateway", "coding")
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TokensScreen)
        names = [row[0] for row in rows(app)]
        assert names == ["admin", "agent", "grafana"]
        assert all(value not in " ".join(row) for row in rows(app))

        # Revoke asks first, and Cancel has the focus.
        await pilot.press("down")
        await pilot.press("ctrl+d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")
        await settle(pilot)
        assert [token.name for token in await ops.list_tokens()] == ["agent", "grafana"]
        await pilot.press("ctrl+d")
        await settle(pilot)
        await pilot.press("right", "enter")
        await settle(pilot)
        assert [token.name for token in await ops.list_tokens()] == ["grafana"]
        assert [row[0] for row in rows(app)] == ["admin", "grafana"]

        # The token file's token is not revoked from here.
        await pilot.press("home", "ctrl+d")
        await settle(pilot)
        assert isinstance(app.screen, TokensScreen)
    async with ops.db.read() as session:
        hashes = [row.token_hash for row in (await session.execute(ApiToken.__table__.select()))]
    assert hash_token(value) not in hashes


async def test_a_duplicate_name_is_refused_in_the_form(
    settings: Settings, ops: LocalOperations
) -> None:
    await ops.add_token({"name": "grafana", "scope": "read"}, actor="test")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("o", "n")
        await settle(pilot)
        await type_into(pilot, "name", "grafana")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, TokenFormScreen)
        assert "already exists" in error_of(app, "name")


async def test_read_only_hides_new_and_revoke(settings: Settings, ops: LocalOperations) -> None:
    await ops.add_token({"name": "grafana", "scope": "read"}, actor="test")
    app = make_app(settings, ops, read_only=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, TokensScreen)
        await pilot.press("n", "down", "ctrl+d")
        await settle(pilot)
        assert isinstance(app.screen, TokensScreen)
        assert [token.name for token in await ops.list_tokens()] == ["grafana"]
