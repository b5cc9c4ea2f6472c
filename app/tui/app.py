"""The Tooldeck dashboard (first cut: the server list, read from the database)."""

from __future__ import annotations

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header

from app.bootstrap import open_operations
from app.config import Settings
from app.service import Operations

REFRESH_SECONDS = 2.0


class TooldeckApp(App[None]):
    TITLE = "Tooldeck"
    BINDINGS = [Binding("q", "quit", "Quit", id="quit")]

    def __init__(self, settings: Settings, *, read_only: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.read_only = read_only
        self.ops: Operations | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        table: DataTable[str] = DataTable(id="servers", cursor_type="row")
        table.add_columns("Name", "Status", "Enabled", "Transport", "Tools", "Note")
        yield table
        yield Footer()

    async def on_mount(self) -> None:
        self.ops = await open_operations(self.settings)
        self.sub_title = str(self.settings.data_dir)
        self.refresh_servers()
        self.set_interval(REFRESH_SECONDS, self.refresh_servers)

    @work(exclusive=True, group="refresh")
    async def refresh_servers(self) -> None:
        assert self.ops is not None
        servers = await self.ops.list_servers()
        table = self.query_one("#servers", DataTable)
        with self.batch_update():
            seen = set()
            for server in servers:
                seen.add(server.id)
                cells = (
                    server.name,
                    server.status,
                    "yes" if server.enabled else "no",
                    server.transport,
                    f"{server.enabled_tools_count}/{server.tools_count}",
                    server.disabled_reason or server.last_startup_error or "",
                )
                if server.id in table.rows:
                    for column, value in zip(table.columns, cells, strict=True):
                        if table.get_cell(server.id, column) != value:
                            table.update_cell(server.id, column, value)
                else:
                    table.add_row(*cells, key=server.id)
            for key in [key for key in table.rows if key.value not in seen]:
                table.remove_row(key)

    async def on_unmount(self) -> None:
        if self.ops is not None:
            await self.ops.db.dispose()
