"""`u`: the audit trail: who changed what and when, with the before and after of each change.

Secrets arrive masked from the facade; a changed secret is only named.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Label, Select, Static

from app.core.schemas import AuditEntry
from app.tui.base import DeckScreen, columns_with_message, set_server_options
from app.tui.messages import CoreReady
from widgets import formatting as fmt
from widgets.event_log import KIND_STYLES
from widgets.live_table import KeyTable
from widgets.status_bar import StatusBar, StatusState

AUDIT_LIMIT = 500
VALUE_WIDTH = 60
COLUMNS: tuple[tuple[str, int, str], ...] = (
    ("When", 12, "at"),
    ("Who", 14, "actor"),
    ("What", 14, "kind"),
    ("Server", 12, "server"),
    ("Changed", 22, "fields"),
)
MIN_MESSAGE = 24


def value_text(value: Any) -> str:
    """One field's value on one line: JSON for structures, `-` for nothing."""
    if value is None:
        return fmt.DASH
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


def changed_fields(entry: AuditEntry) -> list[str]:
    names = list(entry.after or {})
    names += [name for name in entry.before or {} if name not in names]
    names += [name for name in entry.secrets_changed if name not in names]
    return names


def changes_table(entry: AuditEntry) -> Table | Text:
    """field · before → after, one row per changed field."""
    names = changed_fields(entry)
    if not names:
        return Text("no field changes recorded for this entry", style="dim italic")
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    before, after = entry.before or {}, entry.after or {}
    for name in names:
        secret = " (secret changed)" if name in entry.secrets_changed else ""
        table.add_row(
            name + secret,
            Text(fmt.truncate(value_text(before.get(name)), VALUE_WIDTH), style="red"),
            Text("→", style="dim"),
            Text(fmt.truncate(value_text(after.get(name)), VALUE_WIDTH), style="green"),
        )
    return table


class AuditScreen(DeckScreen[None]):
    HELP_TITLE = "audit trail"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="audit-back"),
        Binding("s", "focus_server", "Server filter", id="audit-server"),
        Binding("r", "reload", "Reload", id="audit-reload"),
    ]

    def __init__(self, server: str | None = None) -> None:
        super().__init__()
        self.server = server
        self._entries: dict[str, AuditEntry] = {}
        self._shown: tuple[int, ...] | None = None
        self._message_width = MIN_MESSAGE

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="audit-filters"):
            yield Label("server", classes="filter-label")
            yield Select[str]([], prompt="all servers", id="audit-server-filter", compact=True)
        table: DataTable[Text] = KeyTable(id="audit-table", cursor_type="row")
        yield table
        with Vertical(id="audit-changes-box", classes="pane"):
            yield Static("", id="audit-changes")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self._columns()
        self.query_one("#audit-table", DataTable).focus()
        self.query_one("#audit-changes-box").border_title = "Before → after"
        self._status()
        self.set_interval(self.deck.refresh_interval, self._tick, name="audit-refresh")
        self.load_servers()
        self.load()

    def _columns(self) -> None:
        table = self.query_one("#audit-table", DataTable)
        self._message_width = columns_with_message(table, COLUMNS, self.size.width, MIN_MESSAGE)

    def on_resize(self) -> None:
        self._shown = None
        self.show_entries(list(self._entries.values()))

    def _status(self) -> None:
        parts = ["Audit trail"]
        if self.server:
            parts.append(self.server)
        parts.append(f"{len(self._entries)} entries")
        self.query_one(StatusBar).show(
            StatusState(
                period=self.deck.period, read_only=self.deck.read_only, title=" · ".join(parts)
            )
        )

    def on_core_ready(self, _message: CoreReady) -> None:
        self.load_servers()
        self.load()

    def _tick(self) -> None:
        if self.is_active:
            self.load()

    @work(exclusive=True, group="audit-servers", exit_on_error=False)
    async def load_servers(self) -> None:
        data = self.deck.data
        if data is None:
            return
        servers = await data.reads.list_servers()
        set_server_options(self.query_one("#audit-server-filter", Select), servers, self.server)

    @work(exclusive=True, group="audit", exit_on_error=False)
    async def load(self) -> None:
        data = self.deck.data
        if data is None:
            return
        entries = await data.reads.list_audit(self.server, limit=AUDIT_LIMIT)
        self.show_entries(entries)

    def show_entries(self, entries: list[AuditEntry]) -> None:
        self._entries = {str(entry.id): entry for entry in entries}
        shown = tuple(entry.id for entry in entries)
        if shown != self._shown:
            self._shown = shown
            self._fill(entries)
        self._status()
        self._show_changes()

    def _fill(self, entries: list[AuditEntry]) -> None:
        now = self.deck.clock()
        table = self.query_one("#audit-table", DataTable)
        row = table.cursor_row
        with self.app.batch_update():
            self._columns()
            for entry in entries:
                fields = ", ".join(changed_fields(entry))
                table.add_row(
                    Text(fmt.clock_time(entry.at, now), style="dim"),
                    Text(entry.actor or fmt.DASH, style="bold"),
                    Text(entry.kind, style=KIND_STYLES.get(entry.kind, "")),
                    Text(entry.server_name or fmt.DASH),
                    Text(
                        fmt.truncate(fields, COLUMNS[-1][1]) or fmt.DASH,
                        style="cyan" if fields else "dim",
                    ),
                    Text(fmt.truncate(entry.message, self._message_width)),
                    key=str(entry.id),
                )
            if entries:
                table.move_cursor(row=min(row, len(entries) - 1), animate=False, scroll=False)

    @property
    def cursor_entry(self) -> AuditEntry | None:
        table = self.query_one("#audit-table", DataTable)
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # no row under the cursor
            return None
        return self._entries.get(key or "")

    def _show_changes(self) -> None:
        entry = self.cursor_entry
        box = self.query_one("#audit-changes-box")
        changes = self.query_one("#audit-changes", Static)
        if entry is None:
            box.border_subtitle = ""
            changes.update(Text("no audit entries", style="dim italic"))
            return
        now = self.deck.clock()
        box.border_subtitle = (
            f"{entry.actor or 'unknown'} · {entry.kind} · {fmt.clock_time(entry.at, now)}"
        )
        changes.update(changes_table(entry))

    @on(DataTable.RowHighlighted, "#audit-table")
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_changes()

    @on(Select.Changed, "#audit-server-filter")
    def _server_changed(self, event: Select.Changed) -> None:
        self.server = event.value if isinstance(event.value, str) else None
        self.load()

    def action_focus_server(self) -> None:
        self.query_one("#audit-server-filter", Select).focus()

    def action_reload(self) -> None:
        self._shown = None
        self.load()
