"""`!`: the open alerts (resolved ones too with `t`), newest first; `a` acknowledges one."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Label, Static

from app.core.schemas import AlertResponse
from app.tui.base import DeckScreen, columns_with_message, row_key_at_cursor
from app.tui.messages import CoreReady
from app.tui.screens.alert_rules import AlertRulesScreen
from widgets import formatting as fmt
from widgets.live_table import KeyTable
from widgets.status_bar import StatusBar, StatusState

ALERTS_LIMIT = 500
SEVERITY_STYLES = {"critical": "bold red", "warning": "yellow"}
MUTATING = frozenset({"acknowledge"})
COLUMNS: tuple[tuple[str, int, str], ...] = (
    ("Sev", 8, "severity"),
    ("Rule", 20, "rule"),
    ("Subject", 16, "subject"),
    ("Count", 5, "count"),
    ("First seen", 10, "first"),
    ("Last seen", 10, "last"),
    ("Ack by", 10, "ack"),
)
MIN_MESSAGE = 24


def subject_label(alert: AlertResponse, names: dict[str, str]) -> str:
    """The subject in a person's words: the server's name, and whether a tool of it."""
    server = names.get(alert.server_id or "", "") if alert.server_id else ""
    if alert.subject.startswith("tool:"):
        return f"{server} (tool)" if server else alert.subject
    return server or alert.subject


class AlertsScreen(DeckScreen[None]):
    HELP_TITLE = "alerts"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="alerts-back"),
        Binding("a", "acknowledge", "Acknowledge", id="alerts-ack"),
        Binding("t", "toggle_resolved", "Show resolved", id="alerts-resolved"),
        Binding("r", "reload", "Reload", id="alerts-reload"),
        Binding("e", "rules", "Alert rules", id="alerts-rules"),
    ]

    def __init__(self, *, include_resolved: bool = False) -> None:
        super().__init__()
        self.include_resolved = include_resolved
        self._alerts: dict[str, AlertResponse] = {}
        self._shown: tuple[tuple[int, int, str | None, str], ...] | None = None
        self._names: dict[str, str] = {}
        self._message_width = MIN_MESSAGE

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Label("", id="alerts-hint")
        table: DataTable[Text] = KeyTable(id="alerts-table", cursor_type="row")
        yield table
        with Vertical(id="alert-detail-box", classes="pane"):
            yield Static("", id="alert-detail")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self._columns()
        self.query_one("#alerts-table", DataTable).focus()
        self._status()
        self.set_interval(self.deck.refresh_interval, self._tick, name="alerts-screen-refresh")
        self.load()

    def _columns(self) -> None:
        table = self.query_one("#alerts-table", DataTable)
        self._message_width = columns_with_message(table, COLUMNS, self.size.width, MIN_MESSAGE)

    def on_resize(self) -> None:
        self._shown = None
        self.show_alerts(list(self._alerts.values()))

    # ---- which actions show ---------------------------------------------------------------

    def hidden_action(self, action: str) -> bool:
        return action in MUTATING and self.deck.read_only

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.hidden_action(action):
            return False
        return True

    # ---- reading ---------------------------------------------------------------------------

    def _status(self) -> None:
        open_count = sum(1 for alert in self._alerts.values() if alert.status == "open")
        parts = ["Alerts", f"{open_count} open"]
        if self.include_resolved:
            parts.append(f"{len(self._alerts) - open_count} resolved")
        self.query_one(StatusBar).show(
            StatusState(
                period=self.deck.period, read_only=self.deck.read_only, title=" · ".join(parts)
            )
        )
        hint = "open and resolved alerts" if self.include_resolved else "open alerts"
        ack = "" if self.deck.read_only else " · a acknowledges the cursor row"
        self.query_one("#alerts-hint", Label).update(
            f"{hint}, newest first · t {'hides' if self.include_resolved else 'shows'} "
            f"resolved ones{ack}"
        )

    def on_core_ready(self, _message: CoreReady) -> None:
        self.refresh_bindings()
        self.load()

    def _tick(self) -> None:
        if self.is_active:
            self.load()

    @work(exclusive=True, group="alerts-screen", exit_on_error=False)
    async def load(self) -> None:
        data = self.deck.data
        if data is None:
            return
        alerts = await data.reads.list_alerts(
            include_resolved=self.include_resolved, limit=ALERTS_LIMIT
        )
        if not self._names or any(
            alert.server_id and alert.server_id not in self._names for alert in alerts
        ):
            servers = await data.reads.list_servers()
            self._names = {server.id: server.name for server in servers}
        self.show_alerts(alerts)

    def show_alerts(self, alerts: list[AlertResponse]) -> None:
        self._alerts = {str(alert.id): alert for alert in alerts}
        shown = tuple(
            (alert.id, alert.count, alert.acknowledged_by, alert.status) for alert in alerts
        )
        if shown != self._shown:
            self._shown = shown
            self._fill(alerts)
        self._status()

    def _fill(self, alerts: list[AlertResponse]) -> None:
        now = self.deck.clock()
        table = self.query_one("#alerts-table", DataTable)
        key = self.cursor_key
        with self.app.batch_update():
            self._columns()
            for alert in alerts:
                resolved = alert.status != "open"
                severity = "resolved" if resolved else alert.severity
                style = "dim" if resolved else ""
                table.add_row(
                    Text(severity, style="dim" if resolved else SEVERITY_STYLES.get(severity, "")),
                    Text(alert.rule, style=style or "bold"),
                    Text(subject_label(alert, self._names), style=style),
                    Text(str(alert.count), style=style, justify="right"),
                    Text(f"{fmt.age_minutes(alert.first_seen, now)} ago", style="dim"),
                    Text(f"{fmt.age_minutes(alert.last_seen, now)} ago", style="dim"),
                    Text(
                        alert.acknowledged_by or fmt.DASH,
                        style="green" if alert.acknowledged_by else "dim",
                    ),
                    Text(fmt.truncate(alert.message, self._message_width), style=style),
                    key=str(alert.id),
                )
            keys = [str(alert.id) for alert in alerts]
            if key in keys:
                table.move_cursor(row=keys.index(key), animate=False, scroll=False)
        self._show_detail()

    def _show_detail(self) -> None:
        """The cursor row in full: the message, when, who acknowledged it, the figures."""
        alert = self.cursor_alert
        box = self.query_one("#alert-detail-box")
        detail = self.query_one("#alert-detail", Static)
        if alert is None:
            box.border_title = "Alert"
            detail.update(Text("no alerts", style="dim italic"))
            return
        now = self.deck.clock()
        box.border_title = f"Alert {alert.id} · {alert.rule} · {alert.status}"
        text = Text()
        text.append(alert.message, style="bold")
        text.append(
            f"\nseen {alert.count}× · first {fmt.clock_time(alert.first_seen, now)}"
            f" · last {fmt.clock_time(alert.last_seen, now)}",
            style="dim",
        )
        if alert.resolved_at is not None:
            text.append(f" · resolved {fmt.clock_time(alert.resolved_at, now)}", style="dim")
        if alert.acknowledged_by:
            text.append(
                f"\nacknowledged by {alert.acknowledged_by} "
                f"at {fmt.clock_time(alert.acknowledged_at, now)}",
                style="green",
            )
        if alert.details:
            figures = ", ".join(f"{name}: {value}" for name, value in alert.details.items())
            text.append(f"\n{figures}", style="dim")
        detail.update(text)

    @on(DataTable.RowHighlighted, "#alerts-table")
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    @property
    def cursor_key(self) -> str | None:
        return row_key_at_cursor(self.query_one("#alerts-table", DataTable))

    @property
    def cursor_alert(self) -> AlertResponse | None:
        key = self.cursor_key
        return self._alerts.get(key) if key else None

    # ---- actions ---------------------------------------------------------------------------

    def action_rules(self) -> None:
        self.app.push_screen(AlertRulesScreen())

    def action_toggle_resolved(self) -> None:
        self.include_resolved = not self.include_resolved
        self._status()
        self.load()

    def action_reload(self) -> None:
        self._shown = None
        self.load()

    def action_acknowledge(self) -> None:
        alert = self.cursor_alert
        if alert is None:
            self.notify("No alert under the cursor.", severity="warning")
            return
        if alert.acknowledged_by:
            self.notify(
                f"Already acknowledged by {alert.acknowledged_by}.", markup=False, timeout=4
            )
            return
        self.run_ack(alert.id)

    @work(group="alerts-actions", exit_on_error=False)
    async def run_ack(self, alert_id: int) -> Any:
        ops = self.deck.ops
        if ops is None:
            return None
        acked = await ops.ack_alert(alert_id, actor=self.deck.actor)
        self.notify(f"Acknowledged alert {acked.id} ({acked.rule}).", markup=False, timeout=4)
        self.load()
        self.deck.read_alerts()
        return acked
