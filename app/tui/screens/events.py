"""`v`: every event, newest first, filtered by server and by kind; `enter` reads one whole."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Label, Select, Static

from app.core.events import EventKind
from app.tui.base import DeckModal, DeckScreen, columns_with_message, set_server_options
from app.tui.data import event_row
from app.tui.messages import CoreReady
from widgets import formatting as fmt
from widgets.event_log import KIND_STYLES, EventRow
from widgets.live_table import KeyTable
from widgets.status_bar import StatusBar, StatusState

EVENTS_LIMIT = 500
COLUMNS: tuple[tuple[str, int, str], ...] = (
    ("Time", 14, "time"),
    ("Server", 18, "server"),
    ("Kind", 14, "kind"),
    ("By", 14, "actor"),
)
MIN_MESSAGE = 24
ALL = "*"


class EventsScreen(DeckScreen[None]):
    HELP_TITLE = "events"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="events-back"),
        Binding("enter", "read", "Read whole", id="events-read"),
        Binding("s", "focus_server", "Server filter", id="events-server"),
        # Not k: k moves the cursor up, as in every table.
        Binding("t", "focus_kind", "Kind filter", id="events-kind"),
        Binding("r", "reload", "Reload", id="events-reload"),
    ]

    def __init__(self, server: str | None = None, kind: str | None = None) -> None:
        super().__init__()
        self.server = server
        self.kind = kind
        self._shown: tuple[int, ...] = ()
        self._events: dict[str, EventRow] = {}

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="events-filters"):
            yield Label("server", classes="filter-label")
            yield Select[str]([], prompt="all servers", id="events-server-filter", compact=True)
            yield Label("kind", classes="filter-label")
            yield Select[str](
                [(kind.value, kind.value) for kind in EventKind],
                prompt="all kinds",
                value=self.kind if self.kind else Select.NULL,
                id="events-kind-filter",
                compact=True,
            )
        table: DataTable[Text] = KeyTable(id="events-table", cursor_type="row")
        yield table
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self._columns()
        table = self.query_one("#events-table", DataTable)
        table.focus()
        self._status(0)
        self.set_interval(self.deck.refresh_interval, self._tick, name="events-refresh")
        self.load_servers()
        self.load()

    def _columns(self) -> None:
        # A width from the screen, not from the content: an auto-width column is measured on
        # the table's next idle, and a frame drawn before that showed it at its header's width.
        table = self.query_one("#events-table", DataTable)
        columns_with_message(table, COLUMNS, self.size.width, MIN_MESSAGE)

    def on_resize(self) -> None:
        self._columns()
        self._shown = ()
        self.load()

    def _status(self, count: int) -> None:
        parts = ["Events"]
        if self.server:
            parts.append(self.server)
        if self.kind:
            parts.append(self.kind)
        parts.append(f"{count} shown")
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

    @work(exclusive=True, group="events-servers", exit_on_error=False)
    async def load_servers(self) -> None:
        data = self.deck.data
        if data is None:
            return
        servers = await data.reads.list_servers()
        set_server_options(self.query_one("#events-server-filter", Select), servers, self.server)

    @work(exclusive=True, group="events", exit_on_error=False)
    async def load(self) -> None:
        data = self.deck.data
        if data is None:
            return
        events = await data.reads.list_events(self.server, kind=self.kind, limit=EVENTS_LIMIT)
        self.show([event_row(event) for event in events])

    def show(self, events: list[EventRow]) -> None:
        ids = tuple(event.id for event in events)
        if ids == self._shown:
            return
        self._shown = ids
        self._events = {str(event.id): event for event in events}
        table = self.query_one("#events-table", DataTable)
        row = table.cursor_row
        now = self.deck.clock()
        with self.app.batch_update():
            table.clear()
            for event in events:
                table.add_row(
                    Text(fmt.clock_time(event.at, now), style="dim"),
                    Text(event.server_name or fmt.DASH, style="bold"),
                    Text(event.kind, style=KIND_STYLES.get(event.kind, "")),
                    Text(event.actor or fmt.DASH, style="dim"),
                    Text(event.message, no_wrap=True, overflow="ellipsis"),
                    key=str(event.id),
                )
            if events:
                table.move_cursor(row=min(row, len(events) - 1), animate=False, scroll=False)
        self._status(len(events))

    @on(Select.Changed, "#events-server-filter")
    def _server_changed(self, event: Select.Changed) -> None:
        self.server = event.value if isinstance(event.value, str) else None
        self.load()

    @on(Select.Changed, "#events-kind-filter")
    def _kind_changed(self, event: Select.Changed) -> None:
        self.kind = event.value if isinstance(event.value, str) else None
        self.load()

    def action_focus_server(self) -> None:
        self.query_one("#events-server-filter", Select).focus()

    def action_focus_kind(self) -> None:
        self.query_one("#events-kind-filter", Select).focus()

    def action_reload(self) -> None:
        self._shown = ()
        self.load()

    @on(DataTable.RowSelected, "#events-table")
    def _selected(self, _event: DataTable.RowSelected) -> None:
        self.action_read()

    def action_read(self) -> None:
        """The cursor row's event in full: a message is often longer than its column."""
        table = self.query_one("#events-table", DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        event = self._events.get(key or "")
        if event is not None:
            self.app.push_screen(EventDetailScreen(event, self.deck.clock()))


def event_detail(event: EventRow, now: datetime) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("when", f"{fmt.clock_time(event.at, now)} ({fmt.ago(event.at, now)} ago)")
    grid.add_row("server", Text(event.server_name or fmt.DASH, style="bold"))
    grid.add_row("kind", Text(event.kind, style=KIND_STYLES.get(event.kind, "")))
    grid.add_row("by", event.actor or fmt.DASH)
    grid.add_row("message", Text(event.message))
    return grid


class EventDetailScreen(DeckModal[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,q", "close", "Close", id="event-close"),
    ]

    def __init__(self, event: EventRow, now: datetime) -> None:
        super().__init__()
        self.event = event
        self._now = now

    def compose(self) -> ComposeResult:
        with Vertical(id="event-dialog", classes="dialog"):
            yield Label(f"Event {self.event.id}", classes="dialog-title")
            with VerticalScroll(id="event-body"):
                yield Static(event_detail(self.event, self._now), id="event-detail")
            yield Label("esc closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
