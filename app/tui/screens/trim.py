"""`z`: enabled tools nobody called in the last N days, with the context each one costs.

Every listed tool takes room in each client's context on every request. `space` marks rows,
`-` disables the marked ones (else the cursor row) after a confirmation that names them and
what they cost; the pane below says what was done. `d` changes the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Label, Static

from app.core.errors import NotFound
from app.core.profiles import TOKEN_METHOD
from app.core.schemas import TrimReport
from app.tui.base import DeckScreen, describe_error, row_key_at_cursor
from app.tui.messages import CoreReady
from app.tui.screens.confirm import ConfirmScreen
from widgets import formatting as fmt
from widgets.live_table import MARK_GLYPH, MARK_STYLE, KeyTable
from widgets.status_bar import StatusBar, StatusState

WINDOWS_DAYS = (1, 7, 30, 90)
DEFAULT_DAYS = 30
MUTATING = frozenset({"toggle_mark", "mark_all", "disable"})
LISTED_IN_CONFIRM = 8


@dataclass(frozen=True, slots=True)
class Suggestion:
    tool_id: str
    server_name: str
    tool_name: str
    last_called: str
    tokens: int

    @property
    def label(self) -> str:
        return f"{self.server_name}/{self.tool_name}"


def suggestions_of(report: TrimReport, now: datetime) -> list[Suggestion]:
    return [
        Suggestion(
            tool_id=tool.tool_id,
            server_name=server.server_name,
            tool_name=tool.tool_name,
            last_called=(
                f"{fmt.age_minutes(tool.last_called, now)} ago" if tool.last_called else "never"
            ),
            tokens=tool.estimated_tokens,
        )
        for server in report.servers
        for tool in server.tools
    ]


def window_words(days: int) -> str:
    return "day" if days == 1 else f"{days} days"


def tokens_text(tokens: int) -> str:
    return f"~{tokens:,} tokens"


class TrimScreen(DeckScreen[None]):
    HELP_TITLE = "trim unused tools"
    MUTATING = MUTATING
    DEFAULT_CSS = """
    TrimScreen #trim-table { height: 1fr; min-height: 5; }
    TrimScreen #trim-result-box { height: auto; max-height: 10; }
    TrimScreen #trim-hint { color: $foreground-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="trim-back"),
        Binding("space", "toggle_mark", "Mark", id="trim-mark"),
        Binding("ctrl+a", "mark_all", "Mark all", key_display="^a", id="trim-mark-all"),
        Binding("minus", "disable", "Disable", key_display="-", id="trim-disable"),
        Binding("d", "next_window", "Window", id="trim-window"),
        Binding("r", "reload", "Reload", id="trim-reload"),
    ]

    def __init__(self, *, days: int = DEFAULT_DAYS) -> None:
        super().__init__()
        self.days = days
        self._suggestions: dict[str, Suggestion] = {}
        self._marked: set[str] = set()
        self._result: Text | None = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Label("", id="trim-hint")
        table: DataTable[Text] = KeyTable(id="trim-table", cursor_type="row")
        yield table
        with Vertical(id="trim-result-box", classes="pane"):
            yield Static("", id="trim-result")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one("#trim-table", DataTable)
        for label, width, key in (
            ("", 1, "mark"),
            ("Server", 18, "server"),
            ("Tool", 28, "tool"),
            ("Last called", 11, "last"),
            ("~Tokens", 8, "tokens"),
        ):
            table.add_column(label, width=width, key=key)
        table.focus()
        self._status()
        self.load()

    def on_core_ready(self, _message: CoreReady) -> None:
        self.refresh_bindings()
        self.load()

    # ---- reading ---------------------------------------------------------------------------

    @work(exclusive=True, group="trim-screen", exit_on_error=False)
    async def load(self) -> None:
        ops = self.deck.ops
        data = self.deck.data
        if ops is None or data is None:
            return
        # A dashboard on a fixed clock (a demo, a test) looks back from its own time.
        end = self.deck.clock() if data.fixed_clock else None
        report = await ops.trim_suggestions(self.days, end=end)
        found = suggestions_of(report, self.deck.clock())
        self._suggestions = {item.tool_id: item for item in found}
        self._marked &= set(self._suggestions)
        self.loaded = True
        self._fill()

    def _fill(self) -> None:
        table = self.query_one("#trim-table", DataTable)
        key = self.cursor_key
        with self.app.batch_update():
            table.clear()
            for item in self._suggestions.values():
                marked = item.tool_id in self._marked
                table.add_row(
                    Text(MARK_GLYPH if marked else " ", style=MARK_STYLE),
                    Text(item.server_name, style="bold" if marked else ""),
                    Text(item.tool_name, style="bold" if marked else "", overflow="ellipsis"),
                    Text(item.last_called, style="dim"),
                    Text(f"{item.tokens:,}", justify="right"),
                    key=item.tool_id,
                )
            keys = list(self._suggestions)
            if key in keys:
                table.move_cursor(row=keys.index(key), animate=False, scroll=False)
        self._status()
        self._show_result()

    def _status(self) -> None:
        total = sum(item.tokens for item in self._suggestions.values())
        parts = [f"Trim · {len(self._suggestions)} unused", tokens_text(total)]
        if self._marked:
            parts.append(f"{len(self._marked)} marked")
        self.query_one(StatusBar).show(
            StatusState(
                period=self.deck.period, read_only=self.deck.read_only, title=" · ".join(parts)
            )
        )
        act = "" if self.deck.read_only else " · space marks · - disables"
        self.query_one("#trim-hint", Label).update(
            f"enabled tools not called in the last {window_words(self.days)} · d: "
            f"{'/'.join(str(days) for days in WINDOWS_DAYS)} days{act}"
        )

    def _show_result(self) -> None:
        box = self.query_one("#trim-result-box")
        shown = self.query_one("#trim-result", Static)
        if self._result is not None:
            box.border_title = "Done"
            shown.update(self._result)
            return
        box.border_title = "Context"
        text = Text()
        if not self._suggestions:
            text.append(
                f"every enabled tool was called in the last {window_words(self.days)}",
                style="dim italic",
            )
        else:
            chosen = self._chosen()
            tokens = sum(item.tokens for item in chosen)
            text.append(f"{len(chosen)} chosen · {tokens_text(tokens)} ", style="bold")
            text.append("of context every client request would no longer carry", style="dim")
        text.append(f"\n{TOKEN_METHOD}", style="dim")
        shown.update(text)

    @property
    def cursor_key(self) -> str | None:
        return row_key_at_cursor(self.query_one("#trim-table", DataTable))

    @on(DataTable.RowHighlighted, "#trim-table")
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_result()

    def _chosen(self) -> list[Suggestion]:
        """The marked rows, else the cursor row: what `-` disables."""
        if self._marked:
            return [item for key, item in self._suggestions.items() if key in self._marked]
        key = self.cursor_key
        return [self._suggestions[key]] if key in self._suggestions else []

    # ---- actions ---------------------------------------------------------------------------

    def action_reload(self) -> None:
        self.load()

    def action_next_window(self) -> None:
        index = WINDOWS_DAYS.index(self.days) if self.days in WINDOWS_DAYS else -1
        self.days = WINDOWS_DAYS[(index + 1) % len(WINDOWS_DAYS)]
        self._marked.clear()
        self._result = None
        self._status()
        self.load()

    def action_toggle_mark(self) -> None:
        key = self.cursor_key
        if key is None:
            return
        self._marked ^= {key}
        self._result = None
        table = self.query_one("#trim-table", DataTable)
        # Marking moves down, so a run of rows is marked with repeated presses.
        row = table.cursor_row
        self._fill()
        if row < table.row_count - 1:
            table.move_cursor(row=row + 1)

    def action_mark_all(self) -> None:
        everything = set(self._suggestions)
        self._marked = set() if self._marked == everything else everything
        self._result = None
        self._fill()

    def action_disable(self) -> None:
        chosen = self._chosen()
        if not chosen:
            self.notify("Nothing to disable: no tool under the cursor.", severity="warning")
            return
        tokens = sum(item.tokens for item in chosen)
        listed = ", ".join(item.label for item in chosen[:LISTED_IN_CONFIRM])
        if len(chosen) > LISTED_IN_CONFIRM:
            listed += f" and {len(chosen) - LISTED_IN_CONFIRM} more"
        noun = "1 tool" if len(chosen) == 1 else f"{len(chosen)} tools"
        message = (
            f"Disable {noun} ({tokens_text(tokens)}): {listed}?\n\n"
            "Clients no longer see them; + or t on the main screen enables a tool again."
        )

        def confirmed(answer: bool | None) -> None:
            if answer:
                self.run_disable(chosen)

        self.app.push_screen(
            ConfirmScreen(f"Disable {noun}", message, confirm_label="Disable"), confirmed
        )

    @work(group="trim-actions", exit_on_error=False)
    async def run_disable(self, chosen: list[Suggestion]) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        done: list[Suggestion] = []
        failed: list[str] = []
        for item in chosen:
            try:
                await ops.set_tool_enabled(item.tool_id, False, actor=self.deck.actor)
            except NotFound:
                continue  # deleted meanwhile: nothing left to disable
            except Exception as exc:  # named in the result, with the others
                failed.append(f"{item.label}: {describe_error(exc)}")
                continue
            done.append(item)
        self._marked.clear()
        text = Text()
        tokens = sum(item.tokens for item in done)
        text.append(f"disabled {len(done)} tools · {tokens_text(tokens)} freed", style="bold green")
        if done:
            text.append(f"\n{', '.join(item.label for item in done)}", style="dim")
        for line in failed:
            text.append(f"\n✖ {line}", style="red")
        self._result = text
        self.notify(
            f"Disabled {len(done)} tools ({tokens_text(tokens)}).",
            severity="warning" if failed else "information",
            markup=False,
            timeout=6,
        )
        self.load()
