"""The nodes of the fleet on this database: which are alive, how many servers each runs, when
each last beat. One node on SQLite. Read only: placement is a server's field (`e`)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Label

from app.core.schemas import NodeResponse
from app.tui.screens.catalogue import CatalogueScreen
from widgets import formatting as fmt
from widgets.status_bar import StatusBar

# Heartbeats come every lease/4 seconds: a refresh as often shows a node going down promptly.
REFRESH_S = 2.0


class NodesScreen(CatalogueScreen):
    TABLE_ID = "nodes-table"
    HINT_ID = "nodes-hint"
    HINT = "a server placed on a node runs there only · `any` servers run where their lease is"
    COLUMNS = (
        ("Node", 20),
        ("State", 6),
        ("Servers", 7),
        ("Heartbeat", 10),
        ("Up", 8),
        ("Version", 8),
        ("Address", 28),
    )
    MUTATING = frozenset()
    HELP_TITLE = "nodes"
    DEFAULT_CSS = """
    NodesScreen #nodes-table { height: 1fr; min-height: 5; }
    NodesScreen #nodes-hint { color: $foreground-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="nodes-back"),
        Binding("r", "reload", "Reload", id="nodes-reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._fleet_nodes: list[NodeResponse] = []

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Label("", id="nodes-hint")
        table: DataTable[Text] = DataTable(id="nodes-table", cursor_type="row")
        yield table
        yield Footer(show_command_palette=False)

    def _on_mount(self) -> None:
        # The catalogue's own on_mount (columns, first load) runs too: Textual calls each
        # class's handler.
        self.set_interval(REFRESH_S, self.load)

    def heading(self) -> str:
        alive = sum(1 for node in self._fleet_nodes if node.alive)
        return f"Nodes · {alive} of {len(self._fleet_nodes)} alive"

    def show_detail(self) -> None:
        """No pane below: a node's row says all there is."""

    @work(exclusive=True, group="nodes-screen", exit_on_error=False)
    async def load(self) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        self._fleet_nodes = await ops.list_nodes()
        self._fill()

    def _fill(self) -> None:
        now = self.deck.clock()
        table = self.query_one("#nodes-table", DataTable)
        row = table.cursor_row
        with self.app.batch_update():
            table.clear()
            for node in self._fleet_nodes:
                name = Text(node.name, style="bold")
                if node.this_node:
                    name.append(" *", style="dim")
                table.add_row(
                    name,
                    Text("alive", style="green") if node.alive else Text("down", style="red"),
                    Text(str(node.servers)),
                    Text(f"{fmt.age_minutes(node.heartbeat_at, now)} ago", style="dim"),
                    Text(fmt.age_minutes(node.started_at, now), style="dim"),
                    Text(node.version or fmt.DASH, style="dim"),
                    Text(node.advertise_url or fmt.DASH, style="dim"),
                    key=node.name,
                )
            if self._fleet_nodes:
                table.move_cursor(row=min(row, len(self._fleet_nodes) - 1), animate=False)
        self._status()
