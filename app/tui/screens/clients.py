"""`w`: who uses the gateway: the client sessions connected now, and each client's calls,
errors and p95 over the period; `enter` opens one client with the tools it calls most.

The sessions are the gateway's that runs with the operations the dashboard uses: the daemon's
when attached to one, this process's otherwise (a dashboard runs none of its own, so then only
the figures show, from the usage rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Label, Static

from app.core.clients import ClientDetail, ClientFigures, ClientsReport, GatewaySession
from app.tui.base import DeckScreen, row_key_at_cursor
from app.tui.messages import CoreReady
from widgets import formatting as fmt
from widgets.status_bar import StatusBar, StatusState

NO_GATEWAY = (
    "no gateway runs with this dashboard: attach it to `tooldeck --headless` to see the "
    "sessions connected now · the figures below are the usage rows'"
)
# What tells sessions apart first: at 80 columns the versions are what scrolls out of sight.
SESSION_COLUMNS: tuple[tuple[str, int], ...] = (
    ("Client", 16),
    ("Endpoint", 16),
    ("Token", 13),
    ("For", 6),
    ("Calls", 5),
    ("Errors", 6),
    ("Via", 6),
    ("Version", 8),
    ("Protocol", 10),
)
CLIENT_COLUMNS: tuple[tuple[str, int], ...] = (
    ("Client", 22),
    ("Now", 4),
    ("Calls", 7),
    ("Errors", 7),
    ("Err %", 7),
    ("p95", 7),
    ("Last call", 10),
)
# Within 80 columns, borders included.
TOOL_COLUMNS: tuple[tuple[str, int], ...] = (
    ("Tool", 20),
    ("Server", 14),
    ("Calls", 6),
    ("Errors", 6),
    ("p95", 6),
    ("Last call", 9),
)


def _columns(table: DataTable[Text], columns: Sequence[tuple[str, int]]) -> None:
    for label, width in columns:
        table.add_column(label, width=width, key=label)


def _errors(value: int) -> Text:
    return Text(fmt.count(value), style="red" if value else "dim")


def _session_row(session: GatewaySession, now: datetime) -> list[Text]:
    return [
        Text(session.client_name or "(unnamed)", style="bold"),
        Text(session.endpoint, style="cyan"),
        Text(session.token_name or fmt.DASH, style="" if session.token_name else "dim"),
        Text(fmt.age_minutes(session.since, now), style="dim"),
        Text(fmt.count(session.calls)),
        _errors(session.errors),
        Text(session.transport),
        Text(session.client_version or fmt.DASH, style="dim"),
        Text(session.protocol_version or fmt.DASH, style="dim"),
    ]


def _fill_sessions(table: DataTable[Text], sessions: list[GatewaySession], now: datetime) -> None:
    key = row_key_at_cursor(table)
    table.clear()
    for session in sessions:
        table.add_row(*_session_row(session, now), key=session.id)
    keys = [session.id for session in sessions]
    if key in keys:
        table.move_cursor(row=keys.index(key), animate=False, scroll=False)


class _LiveScreen(DeckScreen[None]):
    """Reads again on every refresh while it is the screen shown; says what it is on top."""

    READ_GROUP: ClassVar[str]

    def start_refreshing(self, name: str) -> None:
        self._status()
        self.set_interval(self.deck.refresh_interval, self._tick, name=name)
        self.load()

    def on_core_ready(self, _message: CoreReady) -> None:
        self.load()

    def _tick(self) -> None:
        # A read over a long period can outlast the interval; a new one would cancel it (the
        # workers are exclusive), and on a busy gateway no answer would ever arrive.
        if self.is_active and not self._reading():
            self.load()

    def _reading(self) -> bool:
        return any(
            worker.node is self and worker.group == self.READ_GROUP and worker.is_running
            for worker in self.workers
        )

    def load(self) -> object:
        raise NotImplementedError

    def heading(self) -> str:
        raise NotImplementedError

    def _status(self) -> None:
        self.query_one(StatusBar).show(
            StatusState(
                period=self.deck.period, read_only=self.deck.read_only, title=self.heading()
            )
        )

    def action_reload(self) -> None:
        self.load()


class ClientsScreen(_LiveScreen):
    HELP_TITLE = "gateway clients"
    READ_GROUP = "clients-screen"
    DEFAULT_CSS = """
    ClientsScreen #clients-hint { color: $foreground-muted; padding: 0 1; }
    ClientsScreen #clients-sessions-box { height: auto; max-height: 10; }
    ClientsScreen #clients-sessions { height: auto; max-height: 8; }
    ClientsScreen #clients-figures-box { height: 1fr; min-height: 5; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="clients-back"),
        # A priority binding: the tables would take enter for their own row selection.
        Binding("enter", "open_client", "Client", id="clients-open", priority=True),
        Binding("r", "reload", "Reload", id="clients-reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report: ClientsReport | None = None

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Label("", id="clients-hint")
        with Vertical(id="clients-sessions-box", classes="pane"):
            yield DataTable[Text](id="clients-sessions", cursor_type="row")
        with Vertical(id="clients-figures-box", classes="pane"):
            yield DataTable[Text](id="clients-figures", cursor_type="row")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        sessions = self.query_one("#clients-sessions", DataTable)
        figures = self.query_one("#clients-figures", DataTable)
        _columns(sessions, SESSION_COLUMNS)
        _columns(figures, CLIENT_COLUMNS)
        self.query_one("#clients-sessions-box").border_title = "Connected now"
        self.query_one("#clients-figures-box").border_title = f"Clients over {self.deck.period}"
        figures.focus()
        self.start_refreshing("clients-refresh")

    @work(exclusive=True, group=READ_GROUP, exit_on_error=False)
    async def load(self) -> None:
        ops, data = self.deck.ops, self.deck.data
        if ops is None or data is None:
            return
        self.show(await ops.clients(**data.window(self.deck.period)))

    def show(self, report: ClientsReport) -> None:
        self.report = report
        now = self.deck.clock()
        with self.app.batch_update():
            _fill_sessions(self.query_one("#clients-sessions", DataTable), report.sessions, now)
            self._fill_figures(report.clients, now)
        self._status()

    def _fill_figures(self, clients: list[ClientFigures], now: datetime) -> None:
        table = self.query_one("#clients-figures", DataTable)
        key = row_key_at_cursor(table)
        table.clear()
        for client in clients:
            table.add_row(
                Text(client.client_name, style="bold"),
                Text(str(client.sessions) if client.sessions else fmt.DASH, style="green"),
                Text(fmt.count(client.calls)),
                _errors(client.errors),
                Text(fmt.percent(client.error_rate), style="red" if client.errors else "dim"),
                Text(fmt.millis(client.p95_response_time_ms)),
                Text(fmt.age_minutes(client.last_called, now), style="dim"),
                key=client.client_name,
            )
        names = [client.client_name for client in clients]
        if key in names:
            table.move_cursor(row=names.index(key), animate=False, scroll=False)

    def heading(self) -> str:
        report = self.report
        if report is None:
            return "Gateway clients"
        return f"Gateway clients · {len(report.sessions)} connected"

    def _status(self) -> None:
        super()._status()
        report = self.report
        hint = self.query_one("#clients-hint", Label)
        if report is not None and not report.gateway_running:
            hint.update(NO_GATEWAY)
        elif report is not None and not report.sessions:
            hint.update("no client is connected to the gateway now")
        else:
            hint.update(
                "enter: a client's sessions and the tools it calls most · tab: the other table"
            )

    def action_open_client(self) -> None:
        name = self.cursor_client
        if name is None:
            self.notify("No client under the cursor.", severity="warning")
            return
        self.app.push_screen(ClientDetailScreen(name))

    @property
    def cursor_client(self) -> str | None:
        focused = self.focused
        if focused is not None and focused.id == "clients-sessions" and self.report is not None:
            key = row_key_at_cursor(self.query_one("#clients-sessions", DataTable))
            return next((s.client_name for s in self.report.sessions if s.id == key), None)
        return row_key_at_cursor(self.query_one("#clients-figures", DataTable))


class ClientDetailScreen(_LiveScreen):
    """One client: its figures, its sessions now and the tools it calls most."""

    HELP_TITLE = "a gateway client"
    READ_GROUP = "client-detail"
    DEFAULT_CSS = """
    ClientDetailScreen #client-figures { padding: 0 1; height: auto; }
    ClientDetailScreen #client-sessions-box { height: auto; max-height: 8; }
    ClientDetailScreen #client-sessions { height: auto; max-height: 6; }
    ClientDetailScreen #client-tools-box { height: 1fr; min-height: 5; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="client-back"),
        Binding("r", "reload", "Reload", id="client-reload"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.client_name = name
        self.detail: ClientDetail | None = None

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static("", id="client-figures")
        with Vertical(id="client-sessions-box", classes="pane"):
            yield DataTable[Text](id="client-sessions", cursor_type="row")
        with Vertical(id="client-tools-box", classes="pane"):
            yield DataTable[Text](id="client-tools", cursor_type="row")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        sessions = self.query_one("#client-sessions", DataTable)
        tools = self.query_one("#client-tools", DataTable)
        _columns(sessions, SESSION_COLUMNS)
        _columns(tools, TOOL_COLUMNS)
        self.query_one("#client-sessions-box").border_title = "Connected now"
        self.query_one(
            "#client-tools-box"
        ).border_title = f"Tools it calls most, over {self.deck.period}"
        tools.focus()
        self.start_refreshing("client-refresh")

    def heading(self) -> str:
        return f"Gateway client {self.client_name}"

    @work(exclusive=True, group=READ_GROUP, exit_on_error=False)
    async def load(self) -> None:
        ops, data = self.deck.ops, self.deck.data
        if ops is None or data is None:
            return
        self.show(await ops.client_detail(self.client_name, **data.window(self.deck.period)))

    def show(self, detail: ClientDetail) -> None:
        self.detail = detail
        now = self.deck.clock()
        figures = detail.figures
        text = Text()
        text.append(f"{fmt.count(figures.calls)} calls", style="bold")
        text.append(" · ")
        text.append(f"{fmt.count(figures.errors)} errors", style="red" if figures.errors else "")
        text.append(f" ({fmt.percent(figures.error_rate)})")
        text.append(f" · {fmt.count(figures.refused)} refused · p95 ")
        text.append(fmt.millis(figures.p95_response_time_ms), style="bold")
        text.append(f" · last call {fmt.clock_time(figures.last_called, now)}", style="dim")
        if not detail.sessions:
            text.append(
                "\nnot connected now" if detail.gateway_running else f"\n{NO_GATEWAY}",
                style="dim",
            )
        with self.app.batch_update():
            self.query_one("#client-figures", Static).update(text)
            _fill_sessions(self.query_one("#client-sessions", DataTable), detail.sessions, now)
            self.query_one("#client-sessions-box").display = bool(detail.sessions)
            self._fill_tools(detail, now)

    def _fill_tools(self, detail: ClientDetail, now: datetime) -> None:
        table = self.query_one("#client-tools", DataTable)
        table.clear()
        for index, tool in enumerate(detail.tools):
            table.add_row(
                Text(tool.tool_name, style="bold"),
                Text(tool.server_name or "(deleted)", style="" if tool.server_name else "dim"),
                Text(fmt.count(tool.calls)),
                _errors(tool.errors),
                Text(fmt.millis(tool.p95_response_time_ms)),
                Text(fmt.age_minutes(tool.last_called, now), style="dim"),
                key=str(index),
            )
