"""`l`: a server's stderr log, with follow mode, search and wrapping of long lines.

The log comes from the facade (`log_tail`: live from the supervisor, else the log file), read
in a worker; following re-reads it on a timer and only redraws when it changed.
"""

from __future__ import annotations

import re
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Input, RichLog

from app.tui.base import DeckScreen
from app.tui.messages import CoreReady
from widgets.status_bar import StatusBar, StatusState

LOG_LINES = 2000
FOLLOW_INTERVAL_S = 1.0


# Tooldeck's own notes in the log, and lines that look like failures, stand out.
NOTE_PREFIX = "[tooldeck "
FAILURE = re.compile(r"(?i)\b(error|fatal|traceback|exception|refused|denied)\b")


def log_line(line: str, *, wrap: bool = False) -> Text:
    style = "cyan" if line.startswith(NOTE_PREFIX) else "red" if FAILURE.search(line) else ""
    return Text(line, style=style, no_wrap=not wrap, overflow="fold" if wrap else None, end="")


def matching_lines(lines: list[str], needle: str, *, wrap: bool = False) -> list[Text]:
    """The lines to show: all of them, or those containing `needle`, highlighted."""
    if not needle:
        return [log_line(line, wrap=wrap) for line in lines]
    shown = []
    lowered = needle.lower()
    for line in lines:
        if lowered in line.lower():
            text = log_line(line, wrap=wrap)
            text.highlight_words([needle], style="bold reverse", case_sensitive=False)
            shown.append(text)
    return shown


class LogScreen(DeckScreen[None]):
    HELP_TITLE = "server log"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="log-back"),
        Binding("f", "follow", "Follow", id="log-follow"),
        Binding("slash", "search", "Search", key_display="/", id="log-search", priority=True),
        Binding("w", "wrap", "Wrap lines", id="log-wrap"),
        Binding("r", "reload", "Reload", id="log-reload"),
        Binding("G", "end", "End", id="log-end", show=False),
        Binding("g", "home", "Top", id="log-top", show=False),
    ]

    def __init__(self, server_id: str, server_name: str, *, follow: bool = True) -> None:
        super().__init__()
        self.server_id = server_id
        self.server_name = server_name
        self.following = follow
        self.needle = ""
        self.wrap = False
        self._lines: list[str] | None = None  # None until the first read

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield RichLog(id="log", highlight=False, markup=False, wrap=False, max_lines=LOG_LINES)
        yield Input(
            id="log-search-box",
            placeholder=f"search the last {LOG_LINES} lines: enter keeps it, esc clears it",
            compact=True,
        )
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#log-search-box").display = False
        self.query_one("#log").border_title = f"stderr · {self.server_name}"
        self._status()
        self.set_interval(FOLLOW_INTERVAL_S, self._tick, name="follow")
        self.load()
        self.query_one("#log").focus()

    def _status(self) -> None:
        mode = "following" if self.following else "paused"
        title = f"Log · {self.server_name} · {mode}"
        if self.needle:
            # The search covers what was read, not the rotated files before it: say so.
            matches = len(matching_lines(self._lines or [], self.needle))
            title += f' · / "{self.needle}": {matches} in the last {len(self._lines or [])} lines'
        self.query_one(StatusBar).show(
            StatusState(period=self.deck.period, read_only=self.deck.read_only, title=title)
        )

    def on_core_ready(self, _message: CoreReady) -> None:
        self.load()

    def _tick(self) -> None:
        if self.following and self.is_active:
            self.load()

    @work(exclusive=True, group="log", exit_on_error=False)
    async def load(self) -> None:
        data = self.deck.data
        if data is None:
            return
        lines = await data.log_tail(self.server_id, LOG_LINES)
        if self._lines is None or lines != self._lines:
            self._lines = lines
            self._draw()

    def _draw(self) -> None:
        log = self.query_one("#log", RichLog)
        log.clear()
        lines = self._lines or []
        shown = matching_lines(lines, self.needle, wrap=self.wrap)
        if not lines:
            log.write(Text("Nothing logged yet.", style="dim"))
        elif not shown:
            log.write(Text(f'No line contains "{self.needle}".', style="dim"))
        for line in shown:
            log.write(line, scroll_end=False)
        if self.following:
            log.scroll_end(animate=False)
        if self.needle:
            self._status()

    def action_wrap(self) -> None:
        """Long lines whole, folded onto the next rows (again: cut at the edge)."""
        self.wrap = not self.wrap
        self.query_one("#log", RichLog).wrap = self.wrap
        self._draw()

    def action_follow(self) -> None:
        self.following = not self.following
        self._status()
        if self.following:
            self.load()

    def action_reload(self) -> None:
        self._lines = None
        self.load()

    def action_end(self) -> None:
        self.query_one("#log", RichLog).scroll_end(animate=False)

    def action_home(self) -> None:
        self.query_one("#log", RichLog).scroll_home(animate=False)

    def action_search(self) -> None:
        box = self.query_one("#log-search-box", Input)
        box.display = True
        box.value = self.needle
        self.set_focus(box)  # now: the keys typed after / are the search's
        self.settle_cursors()

    @on(Input.Changed, "#log-search-box")
    def _search_changed(self, event: Input.Changed) -> None:
        self.needle = event.value
        self._status()
        self._draw()

    @on(Input.Submitted, "#log-search-box")
    def _search_submitted(self, _event: Input.Submitted) -> None:
        self.query_one("#log-search-box").display = bool(self.needle)
        self.query_one("#log").focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("search", "wrap", "follow", "reload") and isinstance(self.focused, Input):
            return False  # a character of the search being typed
        return True

    def action_back(self) -> None:
        box = self.query_one("#log-search-box", Input)
        if self.needle or box.display:
            self.needle = ""
            box.value = ""
            box.display = False
            self._status()
            self._draw()
            self.query_one("#log").focus()
            return
        self.app.pop_screen()
