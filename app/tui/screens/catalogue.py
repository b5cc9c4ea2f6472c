"""What the tokens and profiles screens share: a table of named things over a status line and a
hint, whose changing actions hide in a read-only dashboard."""

from __future__ import annotations

from typing import ClassVar

from textual.widgets import DataTable, Label

from app.tui.base import DeckScreen
from widgets.status_bar import StatusBar, StatusState


class CatalogueScreen(DeckScreen[None]):
    # Filled in by each screen.
    TABLE_ID: ClassVar[str]
    HINT_ID: ClassVar[str]
    HINT: ClassVar[str]
    COLUMNS: ClassVar[tuple[tuple[str, int], ...]]
    MUTATING: ClassVar[frozenset[str]]

    def heading(self) -> str:
        raise NotImplementedError

    def load(self) -> object:
        raise NotImplementedError

    def on_mount(self) -> None:
        table = self.query_one(f"#{self.TABLE_ID}", DataTable)
        for label, width in self.COLUMNS:
            table.add_column(label, width=width, key=label)
        table.focus()
        self._status()
        self.load()

    def hidden_action(self, action: str) -> bool:
        return action in self.MUTATING and self.deck.read_only

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not self.hidden_action(action)

    def _status(self) -> None:
        self.query_one(StatusBar).show(
            StatusState(
                period=self.deck.period, read_only=self.deck.read_only, title=self.heading()
            )
        )
        self.query_one(f"#{self.HINT_ID}", Label).update(self.HINT)
