"""Rows of KEY = value for environment variables and HTTP headers, values masked by default.

Masked values are typed into password inputs; `reveal()` shows them (the form asks the facade
for the real values first, since it hands out masked ones unless asked).
"""

from __future__ import annotations

from collections.abc import Iterable

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Static


class KeyValueRow(Horizontal):
    DEFAULT_CSS = """
    KeyValueRow {
        height: auto;
    }
    KeyValueRow > .kv-key {
        width: 2fr;
    }
    KeyValueRow > .kv-value {
        width: 3fr;
    }
    KeyValueRow > Button {
        min-width: 5;
        width: 5;
    }
    """

    def __init__(self, key: str, value: str, *, masked: bool, key_placeholder: str) -> None:
        super().__init__(classes="kv-row")
        self._key = key
        self._value = value
        self._masked = masked
        self._key_placeholder = key_placeholder

    def compose(self) -> ComposeResult:
        yield Input(self._key, placeholder=self._key_placeholder, classes="kv-key", compact=True)
        yield Input(
            self._value,
            placeholder="value",
            password=self._masked,
            classes="kv-value",
            compact=True,
        )
        yield Button("✕", classes="kv-remove", compact=True, tooltip="Remove this entry")

    @property
    def pair(self) -> tuple[str, str]:
        inputs = self.query(Input)
        return inputs.first().value.strip(), inputs.last().value


class KeyValueEditor(Vertical):
    """An editable mapping. `value` is the mapping; `error()` names the first problem."""

    DEFAULT_CSS = """
    KeyValueEditor {
        height: auto;
    }
    KeyValueEditor > .kv-actions {
        height: auto;
    }
    """

    class Changed(Message):
        def __init__(self, editor: KeyValueEditor) -> None:
            super().__init__()
            self.editor = editor

        @property
        def control(self) -> KeyValueEditor:
            return self.editor

    def __init__(
        self,
        pairs: dict[str, str] | None = None,
        *,
        masked: bool = True,
        key_placeholder: str = "NAME",
        mask: str = "********",
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._initial = dict(pairs or {})
        self.masked = masked
        self._mask = mask
        self._key_placeholder = key_placeholder

    def compose(self) -> ComposeResult:
        for key, value in self._initial.items():
            yield self._row(key, value)
        with Horizontal(classes="kv-actions"):
            yield Button("+ add", classes="kv-add", compact=True)
            if self.masked:
                yield Button("reveal", classes="kv-reveal", compact=True)
            yield Static("", classes="kv-note")

    def _row(self, key: str, value: str) -> KeyValueRow:
        return KeyValueRow(key, value, masked=self.masked, key_placeholder=self._key_placeholder)

    @property
    def value(self) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for row in self.query(KeyValueRow):
            key, value = row.pair
            if key:
                pairs[key] = value
        return pairs

    def error(self) -> str | None:
        seen: set[str] = set()
        for row in self.query(KeyValueRow):
            key, value = row.pair
            if not key and value:
                return "an entry has a value but no name"
            if key in seen:
                return f"{key!r} is given twice"
            seen.add(key)
        return None

    def add_pair(self, key: str = "", value: str = "") -> KeyValueRow:
        row = self._row(key, value)
        self.mount(row, before=self.query_one(".kv-actions"))
        return row

    def reveal(self, real: dict[str, str] | None = None) -> None:
        """Show values in clear; `real` replaces values still showing the mask."""
        for row in self.query(KeyValueRow):
            key_input, value_input = row.query(Input).first(), row.query(Input).last()
            if real and key_input.value.strip() in real and value_input.value == self._mask:
                value_input.value = real[key_input.value.strip()]
            value_input.password = False
        self.masked = False
        for button in self.query(".kv-reveal"):
            button.display = False

    def set_pairs(self, pairs: Iterable[tuple[str, str]]) -> None:
        for row in self.query(KeyValueRow):
            row.remove()
        for key, value in pairs:
            self.add_pair(key, value)

    @on(Button.Pressed, ".kv-add")
    def _add(self, event: Button.Pressed) -> None:
        event.stop()
        row = self.add_pair()
        self.call_after_refresh(lambda: row.query(Input).first().focus())
        self.post_message(self.Changed(self))

    @on(Button.Pressed, ".kv-remove")
    def _remove(self, event: Button.Pressed) -> None:
        event.stop()
        row = event.button.parent
        if isinstance(row, KeyValueRow):
            row.remove()
            self.post_message(self.Changed(self))

    @on(Button.Pressed, ".kv-reveal")
    def _reveal(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.RevealRequested(self))

    class RevealRequested(Message):
        """The user asked to see the values: the form fetches them, then calls `reveal`."""

        def __init__(self, editor: KeyValueEditor) -> None:
            super().__init__()
            self.editor = editor

        @property
        def control(self) -> KeyValueEditor:
            return self.editor
