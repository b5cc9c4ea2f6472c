"""`?`: every key of the screen it was opened from, grouped, with what it does."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widgets import Label, Static

from app.tui.base import DeckModal

Row = tuple[str, str]
# Keys every screen has from Textual itself, described for this app.
NAVIGATION: tuple[Row, ...] = (
    ("tab", "Next pane or field"),
    ("shift+tab", "Previous pane or field"),
    ("↑ ↓ j k", "Move the cursor"),
    ("pgup pgdn", "Page up, page down"),
)


def own_bindings(node: DOMNode) -> list[Binding]:
    """Bindings declared by the node's own classes (not Textual's), the subclass winning."""
    seen: dict[str, Binding] = {}
    for cls in reversed(type(node).__mro__):
        if cls.__module__.startswith("textual"):
            continue
        declared: list[BindingType] = list(cls.__dict__.get("BINDINGS", []))
        for binding in Binding.make_bindings(declared):
            seen[binding.key] = binding
    return list(seen.values())


def section(title: str, rows: list[Row]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="bold", no_wrap=True, min_width=9)
    table.add_column()
    table.add_row("", Text(title, style="bold underline"))
    for key, description in rows:
        table.add_row(key, description)
    table.add_row("", "")
    return table


class HelpScreen(DeckModal[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close help", id="close-help"),
    ]

    def __init__(self, target: Screen[Any]) -> None:
        super().__init__()
        self._target = target

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog", classes="dialog"):
            title = getattr(self._target, "HELP_TITLE", None) or "this screen"
            yield Label(f"Keys · {title}", classes="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static(self.render_help(), id="help-table")
            yield Label("esc closes", classes="dialog-hint")

    def _rows(self, bindings: list[Binding], shown: set[str]) -> list[Row]:
        hidden = getattr(self._target, "hidden_action", None)
        rows = []
        for binding in bindings:
            if binding.key in shown or not binding.description:
                continue
            if callable(hidden) and hidden(binding.action):
                continue
            shown.add(binding.key)
            description = binding.description
            if binding.tooltip:
                description = f"{description} ({binding.tooltip.lower()})"
            rows.append((self.app.get_key_display(binding), description))
        return rows

    def render_help(self) -> RenderableType:
        shown: set[str] = set()
        screen_bindings = own_bindings(self._target)

        def grouped(prefix: str) -> list[Binding]:
            return [b for b in screen_bindings if (b.id or "").startswith(prefix)]

        periods = grouped("period-") + grouped("analytics-period-")
        sorts = grouped("sort-")
        rest = [b for b in screen_bindings if b not in periods and b not in sorts]
        left = [section("This screen", self._rows(rest, shown))]
        right: list[Table] = []
        if periods:
            right.append(section("Period", self._rows(periods, shown)))
        if sorts:
            right.append(section("Sort (again reverses)", self._rows(sorts, shown)))
        focused = self._target.focused
        if focused is not None:
            rows = self._rows(own_bindings(focused), shown)
            if rows:
                right.append(section("In this pane", rows))
        app_rows = self._rows(own_bindings(self.app), shown)
        right.append(section("Everywhere", [*app_rows, *NAVIGATION]))
        layout = Table.grid(padding=(0, 4))
        layout.add_column(vertical="top")
        layout.add_column(vertical="top")
        layout.add_row(Group(*left), Group(*right))
        return layout

    def action_close(self) -> None:
        self.dismiss(None)
