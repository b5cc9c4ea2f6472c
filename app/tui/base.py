"""What every dashboard screen shares: the app's facade, one error handler, no blink in tests."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

from textual.app import App
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Select, TextArea
from textual.worker import Worker, WorkerState

from app.core.errors import TooldeckError
from app.ops.protocol import Operations
from app.tui.data import DeckData

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

    def set_period(self, period: str) -> None: ...
    def read_alerts(self) -> None: ...


def deck_of(app: App[Any]) -> Deck:
    return cast(Deck, app)


def still_cursors(screen: Screen[Any]) -> None:
    """Every text cursor of `screen` shown and blinking no more."""
    for widget in screen.query("Input, TextArea"):
        assert isinstance(widget, Input | TextArea)
        widget.cursor_blink = False


def describe_error(error: BaseException) -> str:
    """One line for a notification: the facade's own words, or the exception's type and text."""
    if isinstance(error, TooldeckError):
        return str(error)
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def report_worker(app: App[Any], worker: Worker[Any]) -> None:
    """The single place a failed worker ends up: a notification, never a traceback on screen."""
    if worker.state != WorkerState.ERROR or worker.error is None:
        return
    error = worker.error
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


class DeckScreen(DeckScreenMixin, Screen[ResultT]):
    pass


class DeckModal(DeckScreenMixin, ModalScreen[ResultT]):
    pass


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
