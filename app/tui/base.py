"""What every dashboard screen shares: the app's facade, one error handler, no blink in tests."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar, Protocol, TypeVar, cast

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Select, TextArea
from textual.worker import Worker, WorkerState

from app.core.errors import TooldeckError, Unavailable, plain_error
from app.ops.protocol import Operations
from app.tui.data import DeckData
from widgets.status_bar import LinkState

logger = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")


class Deck(Protocol):
    """What screens and palette commands use of the dashboard app.

    Screens name this, not the app class: the app imports its screens, so they cannot import
    it back.
    """

    @property
    def ops(self) -> Operations | None: ...
    @property
    def data(self) -> DeckData | None: ...
    @property
    def core_ready(self) -> bool: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...
    @property
    def period(self) -> str: ...
    @property
    def read_only(self) -> bool: ...
    @property
    def actor(self) -> str: ...
    @property
    def refresh_interval(self) -> float: ...
    @property
    def cursor_blink(self) -> bool: ...
    @property
    def link(self) -> LinkState: ...
    @property
    def leaving(self) -> bool: ...

    def set_period(self, period: str) -> None: ...
    def read_alerts(self) -> None: ...
    def daemon_unreachable(self, error: Unavailable) -> None: ...
    def daemon_answered(self) -> None: ...


def deck_of(app: App[Any]) -> Deck:
    return cast(Deck, app)


def still_cursors(screen: Screen[Any]) -> None:
    """Every text cursor of `screen` shown and blinking no more."""
    for widget in screen.query("Input, TextArea"):
        assert isinstance(widget, Input | TextArea)
        widget.cursor_blink = False


def row_key_at_cursor(table: DataTable[Any]) -> str | None:
    """The key of the row under a table's cursor; None when the table is empty."""
    if table.row_count == 0:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:  # no row under the cursor
        return None


def describe_error(error: BaseException) -> str:
    """One line for a notification: the facade's own words, or a sentence a person can read
    (the detail goes to the log)."""
    return plain_error(error)


def report_worker(app: App[Any], worker: Worker[Any]) -> None:
    """The single place a failed worker ends up: a notification, never a traceback on screen.

    Two failures are not news: a read cut short because the dashboard is leaving, and a
    daemon that does not answer (the top line says so once, and reads go on retrying).
    """
    if worker.state != WorkerState.ERROR or worker.error is None:
        return
    error = worker.error
    deck = deck_of(app)
    if deck.leaving:
        logger.debug("worker %s failed while leaving", worker.name, exc_info=error)
        return
    if isinstance(error, Unavailable) and deck.link.mode == "attached":
        deck.daemon_unreachable(error)
        return
    if not isinstance(error, TooldeckError):
        logger.error("worker %s failed", worker.name, exc_info=error)
    app.notify(describe_error(error), title="Failed", severity="error", markup=False)


class DeckScreenMixin:
    """Shared by full screens and modals."""

    @property
    def deck(self) -> Deck:
        return deck_of(cast(Screen[Any], self).app)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker(self.deck, event.worker)

    def on_screen_resume(self) -> None:
        self.settle_cursors()

    def settle_cursors(self) -> None:
        """Stop blinking cursors when the app asks for still frames (snapshots, slow links)."""
        if not self.deck.cursor_blink:
            still_cursors(cast(Screen[Any], self))


# `tab` moves the focus before the next key is read, not after: a key is handed to whatever has
# the focus when the app reads it, so a tab handled later (as an ordinary binding is, after
# bubbling up from the focused input) sent the keys typed after it to the old input.
# (No description: the help lists tab and shift+tab with the keys every screen has.)
FOCUS_BINDINGS: list[BindingType] = [
    Binding("tab", "app.focus_next", "", id="focus-next", show=False, priority=True),
    Binding("shift+tab", "app.focus_previous", "", id="focus-previous", show=False, priority=True),
]


class DeckScreen(DeckScreenMixin, Screen[ResultT]):
    BINDINGS: ClassVar[list[BindingType]] = FOCUS_BINDINGS
    # The screen's actions that change anything: hidden in a read-only dashboard.
    MUTATING: ClassVar[frozenset[str]] = frozenset()

    def hidden_action(self, action: str) -> bool:
        return action in self.MUTATING and self.deck.read_only

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not self.hidden_action(action)


class DeckModal(DeckScreenMixin, ModalScreen[ResultT]):
    BINDINGS: ClassVar[list[BindingType]] = FOCUS_BINDINGS


def columns_with_message(
    table: DataTable[Any], columns: Sequence[tuple[str, int, str]], width: int, min_message: int
) -> int:
    """Fixed columns, then a "Message" column in what is left of `width` (no sideways
    scroll). Returns the message column's width."""
    table.clear(columns=True)
    for label, column_width, key in columns:
        table.add_column(label, width=column_width, key=key)
    # Each column pads one cell on each side; the table's border and scrollbar take 2 + 2.
    fixed = sum(column_width + 2 for _label, column_width, _key in columns) + 2 + 2
    message_width = max(min_message, width - fixed)
    table.add_column("Message", width=message_width, key="message")
    return message_width


def set_server_options(select: Select[str], servers: Sequence[Any], current: str | None) -> None:
    """Offer every server's name in a filter, keeping the current choice, without firing
    Select.Changed (which would reload the screen)."""
    with select.prevent(Select.Changed):
        select.set_options([(server.name, server.name) for server in servers])
        if current:
            select.value = current
