"""A yes/no question that names what will happen; Cancel has the focus, so enter is safe."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Label, Static

from app.tui.base import DeckModal


class ConfirmScreen(DeckModal[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="cancel"),
        Binding("left,h", "focus_cancel", "Cancel button", id="focus-cancel", show=False),
        Binding("right,l", "focus_confirm", "Confirm button", id="focus-confirm", show=False),
    ]

    def __init__(
        self, title: str, message: str, *, confirm_label: str = "OK", cancel_label: str = "Cancel"
    ) -> None:
        super().__init__()
        self._title = title
        self._message = message
        self._confirm_label = confirm_label
        self._cancel_label = cancel_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Static(self._message, id="confirm-message", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(self._cancel_label, id="cancel", variant="primary")
                yield Button(self._confirm_label, id="confirm", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        self.dismiss(True)

    def action_focus_cancel(self) -> None:
        self.query_one("#cancel", Button).focus()

    def action_focus_confirm(self) -> None:
        self.query_one("#confirm", Button).focus()
