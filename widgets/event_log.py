"""The latest events, newest first: what started, crashed, restarted or was disabled."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.text import Text
from textual.widgets import Static

from widgets import formatting as fmt

# Kinds worth a colour: failures red, warnings yellow, recoveries green.
KIND_STYLES: dict[str, str] = {
    "crashed": "bold red",
    "start_failed": "bold red",
    "health_failed": "red",
    "auto_disabled": "bold red",
    "degraded": "yellow",
    "disabled": "yellow",
    "stopped": "dim",
    "deleted": "yellow",
    "started": "green",
    "recovered": "green",
    "restarted": "green",
    "enabled": "green",
    "created": "cyan",
    "tools_changed": "cyan",
}


@dataclass(frozen=True)
class EventRow:
    id: int
    at: datetime
    kind: str
    message: str
    server_name: str | None = None
    actor: str | None = None


def says_kind(event: EventRow) -> bool:
    """Whether the message already names what happened ("started calculator")."""
    stem = event.kind.replace("_", " ")[:5]
    return event.message.lower().startswith(stem)


def event_time(event: EventRow, now: datetime, *, relative: bool) -> str:
    return fmt.ago(event.at, now) if relative else fmt.clock_time(event.at, now)


def event_line(
    event: EventRow,
    now: datetime,
    *,
    server_width: int = 12,
    time_width: int = 8,
    relative: bool = False,
) -> Text:
    """One line: when, server, and what happened, coloured by its kind."""
    line = Text(no_wrap=True, overflow="ellipsis", end="")
    line.append(event_time(event, now, relative=relative).rjust(time_width), style="dim")
    line.append(" ")
    server = fmt.truncate(event.server_name or "-", server_width)
    line.append(server.ljust(server_width), style="bold")
    line.append(" ")
    style = KIND_STYLES.get(event.kind, "")
    if says_kind(event):
        line.append(event.message, style=style)
    else:
        line.append(event.kind.replace("_", " "), style=style)
        line.append(": " + event.message)
    return line


def event_lines(events: Sequence[EventRow], now: datetime, *, relative: bool = False) -> Text:
    """Events one per line, times aligned: wall-clock times, or ages where space is short."""
    times = [event_time(event, now, relative=relative) for event in events]
    width = max((len(time) for time in times), default=8)
    text = Text("\n", no_wrap=True, overflow="ellipsis", end="").join(
        event_line(event, now, time_width=width, relative=relative) for event in events
    )
    text.no_wrap = True
    return text


class EventLog(Static):
    """A compact list of events with their ages; redrawn only when what it shows changes."""

    DEFAULT_CSS = """
    EventLog {
        height: 1fr;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__("", id=id, classes=classes)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._shown: tuple[tuple[int, str], ...] | None = None

    def show(self, events: Sequence[EventRow]) -> None:
        now = self._clock()
        # Ages move with the clock: they are part of what decides a redraw.
        shown = tuple((event.id, fmt.ago(event.at, now)) for event in events)
        if shown == self._shown:
            return
        self._shown = shown
        # The log's size is the pane's, whatever it shows: no layout pass for a new age.
        if not events:
            self.update(Text("No events yet.", style="dim"), layout=False)
            return
        self.update(event_lines(events, now, relative=True), layout=False)
