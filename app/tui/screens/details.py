"""`enter` on a server: its whole definition, its process, its tools and its recent events."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from app.core.schemas import ServerEventResponse, ToolServerResponse
from app.tui.base import DeckScreen
from app.tui.data import ServerDetail, event_row, server_target
from app.tui.messages import CoreReady
from app.tui.screens.log import LogScreen
from app.tui.screens.server_form import ServerFormScreen
from widgets import formatting as fmt
from widgets.event_log import event_lines
from widgets.health_pane import health_renderable
from widgets.status_bar import StatusBar, StatusState

DETAIL_EVENTS = 15


def definition_table(server: ToolServerResponse) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("name", Text(server.name, style="bold"))
    if server.display_name:
        grid.add_row("display name", server.display_name)
    if server.description:
        grid.add_row("description", server.description)
    grid.add_row("transport", server.transport)
    grid.add_row("target", server_target(server))
    if server.cwd:
        grid.add_row("working dir", server.cwd)
    for label, mapping in (("env", server.env), ("headers", server.headers)):
        if mapping:
            grid.add_row(label, "\n".join(f"{key}={value}" for key, value in mapping.items()))
    intent = [
        f"enabled {fmt.yes_no(server.enabled)}",
        f"auto-start {fmt.yes_no(server.auto_start)}",
        f"auto-update {fmt.yes_no(server.auto_update)}",
    ]
    grid.add_row("intent", ", ".join(intent))
    grid.add_row(
        "limits",
        f"max failures {server.max_failures}, start timeout {server.startup_timeout_s:g}s, "
        f"call timeout {server.call_timeout_s:g}s",
    )
    grid.add_row("built in", fmt.yes_no(server.is_builtin))
    grid.add_row("created by", server.created_by or fmt.DASH)
    return grid


class ServerDetailsScreen(DeckScreen[None]):
    HELP_TITLE = "server details"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="back"),
        Binding("e", "edit", "Edit", id="details-edit"),
        Binding("l", "log", "Log", id="details-log"),
    ]

    def __init__(self, server_id: str) -> None:
        super().__init__()
        self.server_id = server_id
        self._name = ""

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with VerticalScroll(id="details-body"):
            yield Static("Loading…", id="details-definition", classes="pane")
            yield Static("", id="details-health", classes="pane")
            yield Static("", id="details-runtime", classes="pane")
            yield Static("", id="details-events", classes="pane")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        titles = {
            "#details-definition": "Definition",
            "#details-health": "Health",
            "#details-runtime": "Process",
            "#details-events": "Recent events",
        }
        for selector, title in titles.items():
            self.query_one(selector).border_title = title
        self._status("Server details")
        self.load()

    def hidden_action(self, action: str) -> bool:
        return action == "edit" and self.deck.read_only

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not self.hidden_action(action)

    def on_core_ready(self, _message: CoreReady) -> None:
        self.load()

    @work(exclusive=True, group="details", exit_on_error=False)
    async def load(self) -> None:
        data, ops = self.deck.data, self.deck.ops
        if data is None or ops is None:
            return
        detail = await data.detail(self.server_id, self.deck.period)
        events = await data.reads.list_events(self.server_id, limit=DETAIL_EVENTS)
        self.show(detail, events)

    def show(self, detail: ServerDetail, events: list[ServerEventResponse]) -> None:
        server = detail.server
        self._name = server.name
        now = self.deck.clock()
        self.query_one("#details-definition", Static).update(definition_table(server))
        self.query_one("#details-health", Static).update(
            health_renderable(detail.health, now, stderr_lines=12)
        )
        runtime = detail.runtime
        process = Table.grid(padding=(0, 2))
        process.add_column(style="dim", no_wrap=True)
        process.add_column()
        if runtime is None:
            process.add_row(
                "", Text("no supervisor in reach: process figures unknown", style="dim")
            )
        else:
            process.add_row("implementation", runtime.implementation or fmt.DASH)
            process.add_row("protocol", runtime.protocol_version or fmt.DASH)
            process.add_row("processes", str(runtime.processes))
            process.add_row("uptime", fmt.duration(runtime.uptime_s))
            process.add_row("log file", runtime.log_path or fmt.DASH)
        tools = Text(
            f"{server.enabled_tools_count} of {server.tools_count} tools enabled: "
            + ", ".join(tool.name for tool in detail.tools),
            overflow="fold",
        )
        self.query_one("#details-runtime", Static).update(Group(process, Text(""), tools))
        rows = [event_row(event) for event in events]
        self.query_one("#details-events", Static).update(
            event_lines(rows, now) if rows else Text("No events.", style="dim")
        )
        self._status(f"Server details · {server.name}")

    def _status(self, title: str) -> None:
        self.query_one(StatusBar).show(
            StatusState(period=self.deck.period, read_only=self.deck.read_only, title=title)
        )

    def action_edit(self) -> None:
        def saved(result: ToolServerResponse | None) -> None:
            if result is not None:
                self.load()

        self.app.push_screen(ServerFormScreen(self.server_id), saved)

    def action_log(self) -> None:
        self.app.push_screen(LogScreen(self.server_id, self._name or self.server_id))
