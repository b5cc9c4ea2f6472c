"""What the tokens and profiles screens share: a table of named things over a status line and a
hint, a pane below on the cursor row, and changing actions that hide in a read-only dashboard."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Label, Static

from app.tui.base import DeckScreen, row_key_at_cursor
from widgets.status_bar import StatusBar, StatusState


class CatalogueScreen(DeckScreen[None]):
    # Filled in by each screen.
    TABLE_ID: ClassVar[str]
    HINT_ID: ClassVar[str]
    # The pane below the table: `#<DETAIL_ID>` in a `#<DETAIL_ID>-box`.
    DETAIL_ID: ClassVar[str]
    HINT: ClassVar[str]
    COLUMNS: ClassVar[tuple[tuple[str, int], ...]]

    def heading(self) -> str:
        raise NotImplementedError

    def load(self) -> object:
        raise NotImplementedError

    def show_detail(self) -> None:
        """Fill the pane below with the cursor row's detail."""
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Label("", id=self.HINT_ID)
        table: DataTable[Text] = DataTable(id=self.TABLE_ID, cursor_type="row")
        yield table
        with VerticalScroll(id=f"{self.DETAIL_ID}-box", classes="pane"):
            yield Static("", id=self.DETAIL_ID)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one(f"#{self.TABLE_ID}", DataTable)
        for label, width in self.COLUMNS:
            table.add_column(label, width=width, key=label)
        table.focus()
        self._status()
        self.load()

    @property
    def cursor_key(self) -> str | None:
        return row_key_at_cursor(self.query_one(f"#{self.TABLE_ID}", DataTable))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def action_reload(self) -> None:
        self.load()

    def _status(self) -> None:
        self.query_one(StatusBar).show(
            StatusState(
                period=self.deck.period, read_only=self.deck.read_only, title=self.heading()
            )
        )
        self.query_one(f"#{self.HINT_ID}", Label).update(self.HINT)
