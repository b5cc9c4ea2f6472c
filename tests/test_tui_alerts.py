"""Pilot tests of the alerts and audit screens and the open-alert count (issue 9)."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from rich.console import Console
from textual.widgets import DataTable, Select, Static

from app.core.schemas import AlertResponse
from app.core.settings import Settings
from app.ops.facade import LocalOperations
from app.tui.commands import OperationsProvider
from app.tui.screens.alerts import AlertsScreen
from app.tui.screens.audit import AuditScreen
from app.tui.screens.help import HelpScreen
from app.tui.screens.main import MainScreen
from storage.models import Alert
from tests.tui_helpers import FIXED_NOW, add_servers, make_app, palette_search, settle
from widgets.status_bar import StatusBar, status_text


async def add_alert(
    ops: LocalOperations,
    server_id: str,
    *,
    rule: str = "server_down",
    message: str = "alpha has been down for 12 min (limit 10 min)",
    severity: str = "critical",
    status: str = "open",
) -> int:
    async with ops.db.session() as session:
        alert = Alert(
            rule=rule,
            subject=f"server:{server_id}",
            server_id=server_id,
            severity=severity,
            message=message,
            status=status,
            count=2,
            first_seen=FIXED_NOW - timedelta(minutes=12),
            last_seen=FIXED_NOW - timedelta(minutes=1),
            resolved_at=FIXED_NOW if status == "resolved" else None,
        )
        session.add(alert)
        await session.flush()
        return alert.id


def table_keys(app: Any, selector: str) -> list[str]:
    table = app.screen.query_one(selector, DataTable)
    return [str(row.key.value) for row in table.ordered_rows]


def rendered(widget: Static) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(widget.content)  # type: ignore[arg-type]
    return console.export_text()


def status_line(app: Any) -> str:
    bar = app.screen.query_one(StatusBar)
    assert bar.state is not None
    return status_text(bar.state, alerts=bar.alerts).plain


async def test_status_bar_counts_open_alerts_on_every_screen(
    settings: Settings, ops: LocalOperations
) -> None:
    (alpha,) = await add_servers(ops, "alpha")
    await add_alert(ops, alpha)
    await add_alert(ops, alpha, rule="error_rate", severity="warning", message="errors")
    await add_alert(ops, alpha, rule="p95_latency", status="resolved", message="slow")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert "⚠ 2 alerts" in status_line(app)
        await pilot.press("v")
        await settle(pilot)
        assert "⚠ 2 alerts" in status_line(app)


async def test_alerts_screen_lists_and_acknowledges(
    settings: Settings, ops: LocalOperations
) -> None:
    (alpha,) = await add_servers(ops, "alpha")
    first = await add_alert(ops, alpha)
    resolved = await add_alert(ops, alpha, rule="p95_latency", status="resolved", message="slow")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await settle(pilot)
        assert "⚠ 1 alert" in status_line(app)
        await pilot.press("exclamation_mark")
        await settle(pilot)
        assert isinstance(app.screen, AlertsScreen)
        assert table_keys(app, "#alerts-table") == [str(first)]
        await pilot.press("t")
        await settle(pilot)
        assert set(table_keys(app, "#alerts-table")) == {str(first), str(resolved)}
        await pilot.press("t")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        (alert,) = await ops.list_alerts()
        assert alert.acknowledged_by is not None and alert.acknowledged_by.startswith("tui")
        detail = rendered(app.screen.query_one("#alert-detail", Static))
        assert "acknowledged by tui" in detail
        audit = await ops.list_audit()
        assert audit[0].kind == "alert_acked"
        # Acknowledged: still open on this screen, but no longer waiting on the top line.
        assert table_keys(app, "#alerts-table") == [str(first)]
        assert "alert" not in status_line(app)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        assert "alert" not in status_line(app)


async def test_read_only_hides_acknowledge(settings: Settings, ops: LocalOperations) -> None:
    (alpha,) = await add_servers(ops, "alpha")
    await add_alert(ops, alpha)
    app = make_app(settings, ops, read_only=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("exclamation_mark")
        await settle(pilot)
        assert isinstance(app.screen, AlertsScreen)
        assert "acknowledge" not in {
            binding.binding.action for binding in app.active_bindings.values()
        }
        await pilot.press("a")
        await settle(pilot)
        (alert,) = await ops.list_alerts()
        assert alert.acknowledged_by is None
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        assert isinstance(app.screen, HelpScreen)
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(app.screen.render_help())
        help_text = console.export_text()
        assert "Show resolved" in help_text and "Acknowledge" not in help_text


async def test_new_alert_is_announced(settings: Settings, ops: LocalOperations) -> None:
    (alpha,) = await add_servers(ops, "alpha")
    listeners: list[Callable[[AlertResponse], None]] = []

    class Engine:
        def subscribe(self, listener: Callable[[AlertResponse], None]) -> Callable[[], None]:
            listeners.append(listener)
            return lambda: None

        def unstored(self) -> list[AlertResponse]:
            return []

    ops.alerts = Engine()  # type: ignore[assignment]
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await settle(pilot)
        assert app.alert_badge is not None and app.alert_badge.count == 0
        assert listeners
        # From the engine, in-process:
        alert_id = await add_alert(ops, alpha, message="alpha is down")
        (alert,) = await ops.list_alerts()
        listeners[0](alert)
        await settle(pilot)
        # From the refresh tick's read (attached to a daemon, there is no engine):
        await add_alert(ops, alpha, rule="error_rate", message="alpha fails", severity="warning")
        app.read_alerts()
        await settle(pilot)
        messages = [notification.message for notification in app._notifications]
        assert messages.count("alpha is down") == 1 and "alpha fails" in messages
        assert app.alert_badge is not None and app.alert_badge.count == 2
        assert alert.id == alert_id


async def test_audit_screen_shows_changes_and_filters(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "alpha", "beta")
    await ops.update_server("alpha", {"description": "the first"}, actor="cli:ann")
    app = make_app(settings, ops)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("u")
        await settle(pilot)
        assert isinstance(app.screen, AuditScreen)
        screen = app.screen
        assert len(table_keys(app, "#audit-table")) == 3
        changes = rendered(screen.query_one("#audit-changes", Static))
        assert "description" in changes and "the first" in changes
        screen.query_one("#audit-server-filter", Select).value = "beta"
        await settle(pilot)
        (only,) = screen._entries.values()
        assert only.server_name == "beta" and only.kind == "created"


async def test_palette_and_help_offer_alerts_and_audit(
    settings: Settings, ops: LocalOperations
) -> None:
    await add_servers(ops, "alpha")
    app = make_app(settings, ops, read_only=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        provider = OperationsProvider(app.screen)
        discovered = [hit.text async for hit in provider.discover()]
        assert "Alerts" in discovered and "Audit trail" in discovered
        hits = [hit.text async for hit in provider.search("audit")]
        assert "Audit trail" in hits
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(app.screen.render_help())
        help_text = console.export_text()
        assert "Alerts" in help_text and "Audit trail" in help_text
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        assert await palette_search(pilot, "audit") == "Audit trail"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, AuditScreen)
