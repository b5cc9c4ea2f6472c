"""The main screen: servers, the highlighted server's tools, health and metrics, events.

Reads run in exclusive workers (a newer read replaces an older one) and the refresh tick skips a
read still running, so a slow database never queues ticks. Actions run in their own workers and
are never cancelled by another key: a half-done restart is worse than a late one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import DescendantFocus
from textual.widgets import DataTable, Footer, Input, Label, ProgressBar
from textual.worker import Worker

from app.core.errors import NotFound
from app.core.periods import PERIOD_NAMES
from app.core.schemas import (
    BulkOperationItem,
    ImportReport,
    ServerToolResponse,
    ToolServerResponse,
)
from app.tui.base import DeckScreen, describe_error
from app.tui.data import Overview, ServerDetail
from app.tui.heap import settle_long_lived
from app.tui.messages import CoreReady, DataChanged, PeriodChanged
from app.tui.screens.alert_rules import AlertRulesScreen
from app.tui.screens.alerts import AlertsScreen
from app.tui.screens.analytics import AnalyticsScreen
from app.tui.screens.audit import AuditScreen
from app.tui.screens.confirm import ConfirmScreen
from app.tui.screens.details import ServerDetailsScreen
from app.tui.screens.events import EventsScreen
from app.tui.screens.import_config import ImportScreen
from app.tui.screens.log import LogScreen
from app.tui.screens.server_form import ServerFormScreen
from app.tui.screens.tool_call import ToolCallScreen
from app.tui.screens.trim import TrimScreen
from widgets.event_log import EventLog
from widgets.health_pane import HealthPane
from widgets.live_table import LiveTable
from widgets.metric_sparklines import MetricSparklines
from widgets.server_table import ServerRow, ServerTable
from widgets.status_bar import StatusBar, StatusState
from widgets.tool_table import ToolTable

BULK_CONCURRENCY = 8
ItemT = TypeVar("ItemT")
CHANGE_DEBOUNCE_S = 0.25
# Past tense for summaries, keyed by bulk operation.
DONE = {
    "start": "started",
    "stop": "stopped",
    "restart": "restarted",
    "enable": "enabled",
    "disable": "disabled",
    "delete": "deleted",
    "refresh": "refreshed",
}
MUTATING = frozenset(
    {
        "new_server",
        "edit_server",
        "delete",
        "start",
        "stop",
        "restart",
        "enable",
        "disable",
        "refresh_tools",
        "health_check",
        "toggle_tool",
        "toggle_bypass",
        "call_tool",
        # Marks only choose what an action applies to: with no actions they are noise.
        "toggle_mark",
        "mark_all",
        "import_config",
    }
)
TOOL_ACTIONS = frozenset({"toggle_tool", "toggle_bypass", "call_tool"})
SERVER_SORTS = {
    "N": "name",
    "S": "status",
    "O": "on/off",
    "T": "tools",
    "C": "calls",
    "E": "errors",
    "R": "success rate",
    "P": "p95",
    "H": "last health check",
    "U": "uptime",
    "A": "available (tools)",
    "B": "bypass (tools)",
    "M": "mean latency (tools)",
    "L": "last called (tools)",
}


def summary(operation: str, items: list[BulkOperationItem], names: dict[str, str]) -> str:
    ok = [item for item in items if item.success]
    failed = [item for item in items if not item.success]
    verb = DONE.get(operation, operation)
    if not failed:
        listed = ", ".join(names.get(item.server_id, item.server_id) for item in ok[:5])
        more = f" and {len(ok) - 5} more" if len(ok) > 5 else ""
        return f"{verb} {len(ok)}: {listed}{more}"
    lines = [f"{verb} {len(ok)}, failed {len(failed)}:"]
    for item in failed[:6]:
        name = names.get(item.server_id, item.server_id)
        # The facade's messages may start with the server's name already.
        message = (item.message or "failed").removeprefix(f"{name}: ")
        lines.append(f"• {name}: {message}")
    if len(failed) > 6:
        lines.append(f"• and {len(failed) - 6} more")
    return "\n".join(lines)


class MainScreen(DeckScreen[None]):
    HELP_TITLE = "dashboard"
    BINDINGS: ClassVar[list[BindingType]] = [
        # Help first, so it stays in the footer when 80 columns cut the rest off.
        Binding("question_mark", "app.help", "Help", key_display="?", id="main-help"),
        Binding("ctrl+p", "app.command_palette", "Commands", key_display="^p", id="main-palette"),
        # Shown only while the tools pane has focus, and then before the server keys.
        Binding("t", "toggle_tool", "Tool on/off", id="tool-toggle", tooltip="In the tools table"),
        Binding("b", "toggle_bypass", "Bypass", id="tool-bypass", tooltip="In the tools table"),
        Binding("c", "call_tool", "Call", id="tool-call", tooltip="In the tools table"),
        Binding("n", "new_server", "New", id="new"),
        Binding("e", "edit_server", "Edit", id="edit"),
        Binding("ctrl+d", "delete", "Delete", id="delete"),
        Binding("s", "start", "Start", id="start"),
        Binding("x", "stop", "Stop", id="stop"),
        Binding("r", "restart", "Restart", id="restart"),
        Binding("plus", "enable", "Enable", key_display="+", id="enable", show=False),
        Binding("minus", "disable", "Disable", key_display="-", id="disable", show=False),
        Binding("f", "refresh_tools", "Refresh tools", id="refresh-tools", show=False),
        Binding("h", "health_check", "Check health", id="health-check", show=False),
        Binding("space", "toggle_mark", "Mark", id="mark"),
        Binding("ctrl+a", "mark_all", "Mark all", key_display="^a", id="mark-all", show=False),
        # A priority binding, so that what is typed right after `/` goes into the filter box.
        Binding("slash", "filter", "Filter", key_display="/", id="filter", priority=True),
        Binding("escape", "clear", "Clear filter/marks", id="clear", show=False),
        Binding("l", "log", "Log", id="log"),
        Binding("a", "analytics", "Analytics", id="analytics"),
        Binding("v", "events", "Events", id="events", show=False),
        Binding("exclamation_mark", "alerts", "Alerts", key_display="!", id="alerts"),
        Binding("u", "audit", "Audit trail", id="audit", show=False),
        Binding("i", "import_config", "Import configuration", id="import", show=False),
        Binding("p", "profiles", "Gateway profiles", id="profiles", show=False),
        Binding("o", "tokens", "API tokens", id="tokens", show=False),
        Binding("w", "clients", "Gateway clients", id="clients", show=False),
        Binding("z", "trim", "Trim unused tools", id="trim", show=False),
        Binding("m", "alert_rules", "Alert rules", id="alert-rules", show=False),
        *(
            Binding(
                str(index),
                f"period('{period}')",
                f"Period {period}",
                id=f"period-{period}",
                show=False,
            )
            for index, period in enumerate(PERIOD_NAMES, start=1)
        ),
        *(
            Binding(letter, f"sort('{letter}')", f"Sort by {what}", id=f"sort-{letter}", show=False)
            for letter, what in SERVER_SORTS.items()
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._selected: str | None = None
        self._detail: ServerDetail | None = None
        self._overview: Overview | None = None
        self._overview_worker: Worker[None] | None = None
        self._detail_worker: Worker[None] | None = None
        self._filter_target: LiveTable[Any] | None = None
        self._busy: list[str] = []
        self._change_pending = False

    # ---- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        clock = self.deck.clock
        yield StatusBar(id="status")
        with Horizontal(id="top"):
            with Vertical(id="servers-pane", classes="pane"):
                yield ServerTable(id="servers", clock=clock)
                yield Input(
                    id="filter",
                    placeholder="filter: enter keeps it, esc clears it",
                    compact=True,
                )
            with Vertical(id="side"):
                with Vertical(id="health-box", classes="pane"):
                    yield HealthPane(id="health", clock=clock)
                with Vertical(id="metrics-box", classes="pane"):
                    yield MetricSparklines(id="sparklines")
        with Horizontal(id="bottom"):
            with Vertical(id="tools-pane", classes="pane"):
                yield ToolTable(id="tools", clock=clock)
            with Vertical(id="events-pane", classes="pane"):
                yield EventLog(id="events", clock=clock)
        with Horizontal(id="bulk-bar"):
            yield Label("", id="bulk-label")
            yield ProgressBar(id="bulk-progress", show_eta=False)
        # The palette key is one of this screen's own bindings, so it is placed in order.
        yield Footer(show_command_palette=False)

    @property
    def servers(self) -> ServerTable:
        return self.query_one("#servers", ServerTable)

    @property
    def tools(self) -> ToolTable:
        return self.query_one("#tools", ToolTable)

    def on_mount(self) -> None:
        self.query_one("#servers-pane").border_title = "Servers"
        self.query_one("#tools-pane").border_title = "Tools"
        self.query_one("#health-box").border_title = "Health"
        self.query_one("#events-pane").border_title = "Events"
        self._title_metrics()
        self.query_one("#filter").display = False
        self.query_one("#bulk-bar").display = False
        self.query_one(HealthPane).show(None)
        self._show_status()
        self.set_interval(self.deck.refresh_interval, self._tick, name="refresh")
        self.servers.focus()
        if self.deck.core_ready:
            self.reload()

    def on_core_ready(self, _message: CoreReady) -> None:
        self.reload()

    def on_data_changed(self, _message: DataChanged) -> None:
        # Changes come in bursts (a bulk restart, a discovery): one read shortly after the
        # first notice shows them all.
        if not self._change_pending:
            self._change_pending = True
            self.set_timer(CHANGE_DEBOUNCE_S, self._read_changes)

    def _read_changes(self) -> None:
        self._change_pending = False
        self._tick()

    def on_period_changed(self, _message: PeriodChanged) -> None:
        self._title_metrics()
        self._show_status()
        self.reload()

    def _title_metrics(self) -> None:
        self.query_one("#metrics-box").border_title = f"Metrics · {self.deck.period}"

    # ---- reading -----------------------------------------------------------------------------

    def reload(self) -> None:
        """Read everything now (after an action, a period change, the core opening)."""
        self._overview_worker = self.load_overview()
        if self._selected is not None:
            self._detail_worker = self.load_detail(self._selected)

    def _tick(self) -> None:
        if not self.deck.core_ready or not self.is_active:
            return
        if self._overview_worker is None or self._overview_worker.is_finished:
            self._overview_worker = self.load_overview()
        if self._selected is not None and (
            self._detail_worker is None or self._detail_worker.is_finished
        ):
            self._detail_worker = self.load_detail(self._selected)

    @work(exclusive=True, group="overview", exit_on_error=False)
    async def load_overview(self) -> None:
        data = self.deck.data
        if data is None:
            return
        if self._overview is None:
            # First paint: the fleet now, its usage figures as soon as they are read.
            self.show_overview(await data.overview(self.deck.period, quick=True))
        overview = await data.overview(self.deck.period)
        self.deck.daemon_answered()
        self.show_overview(overview)
        # After the frame is drawn: settling starts with a full collection (~0.1 s at scale).
        self.call_after_refresh(settle_long_lived)

    def show_overview(self, overview: Overview) -> None:
        self._overview = overview
        table = self.servers
        table.sync(overview.servers)
        self.query_one(EventLog).show(overview.events)
        self._show_status()
        if self._detail is not None or self._selected is None:
            self._show_sparklines()
        key = table.cursor_key
        if key != self._selected:
            self._select(key)

    @work(exclusive=True, group="detail", exit_on_error=False)
    async def load_detail(self, server_id: str) -> None:
        data = self.deck.data
        if data is None:
            return
        try:
            detail = await data.detail(server_id, self.deck.period)
        except NotFound:
            return  # deleted meanwhile; the next overview removes its row
        if server_id == self._selected:
            self.show_detail(detail)

    def show_detail(self, detail: ServerDetail) -> None:
        self._detail = detail
        self.tools.sync(detail.tools)
        self.query_one(HealthPane).show(detail.health)
        self._show_sparklines()

    def _show_sparklines(self) -> None:
        system = self._overview.system if self._overview else None
        server = self._detail.series if self._detail else None
        name = self._detail.server.name if self._detail else "-"
        self.query_one(MetricSparklines).show(server, system, name)

    def _select(self, key: str | None) -> None:
        if key != self._selected and self.tools.filter_text:
            # A tools filter was about the last server's tools: another server starts unfiltered.
            self.tools.set_filter("")
            self._title_filter(self.tools)
        self._selected = key
        model = self.servers.model(key) if key else None
        name = model.name if model else ""
        self.query_one("#tools-pane").border_title = f"Tools · {name}" if name else "Tools"
        self.query_one("#health-box").border_title = f"Health · {name}" if name else "Health"
        if key is None:
            self._detail = None
            self.tools.sync([])
            self.query_one(HealthPane).show(None)
            return
        if self._detail is not None and self._detail.server.id != key:
            # Another server: show its row's state at once, its detail when it arrives.
            self._detail = None
            self.tools.sync([])
        if self.deck.core_ready:
            self._detail_worker = self.load_detail(key)

    @on(DataTable.RowHighlighted, "#servers")
    def _server_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is None:  # a move in a table whose rows are not drawn yet, or none
            return
        key = event.row_key.value
        if key != self._selected:
            self._select(key)

    @on(DataTable.RowSelected, "#servers")
    def _server_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_details()

    @on(DataTable.RowSelected, "#tools")
    def _tool_selected(self, _event: DataTable.RowSelected) -> None:
        if self.check_action("call_tool", ()):
            self.action_call_tool()

    @on(LiveTable.MarksChanged)
    def _marks_changed(self, _event: LiveTable.MarksChanged) -> None:
        self._show_status()

    def _show_status(self) -> None:
        overview = self._overview
        self.query_one(StatusBar).show(
            StatusState(
                period=self.deck.period,
                periods=PERIOD_NAMES,
                counts=overview.status_counts if overview else {},
                total=len(overview.servers) if overview else 0,
                marked=len(self.servers.marked),
                hidden_marked=len(self.servers.hidden_marked),
                filter_text=self.servers.filter_text,
                read_only=self.deck.read_only,
                connected=overview is not None,
                busy=" · ".join(self._busy),
            )
        )

    @property
    def loaded(self) -> bool:
        """The fleet is shown, and the highlighted server's detail too (tests wait on this)."""
        if self._overview is None or not self._overview.complete:
            return False
        return self._selected is None or (
            self._detail is not None and self._detail.server.id == self._selected
        )

    def server_models(self) -> list[ServerRow]:
        return self.servers.models

    # ---- which actions show ---------------------------------------------------------------

    def hidden_action(self, action: str) -> bool:
        """Hidden whatever the focus: read-only mode hides what changes anything."""
        return action in MUTATING and self.deck.read_only

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.hidden_action(action):
            return False
        if action in TOOL_ACTIONS and not self.tools.has_focus:
            return False
        if action == "filter" and isinstance(self.focused, Input):
            return False  # `/` is a character of the filter being typed
        return True

    def on_descendant_focus(self, _event: DescendantFocus) -> None:
        self.refresh_bindings()

    # ---- navigation and view actions ---------------------------------------------------------

    def action_period(self, period: str) -> None:
        self.deck.set_period(period)

    def _focused_table(self) -> LiveTable[Any]:
        return self.tools if self.tools.has_focus else self.servers

    def action_sort(self, letter: str) -> None:
        table = self._focused_table()
        for spec in table.COLUMNS:
            if spec.sort_key == letter:
                table.sort_by(spec.key)
                return

    def action_toggle_mark(self) -> None:
        table = self.servers
        if not table.has_focus:
            return
        table.toggle_mark()
        # Marking moves down, so a run of rows is marked with repeated presses.
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_mark_all(self) -> None:
        """Every server in sight marked (again: none), whatever pane has the focus."""
        self.servers.mark_all()

    def action_filter(self) -> None:
        self._filter_target = self._focused_table()
        box = self.query_one("#filter", Input)
        box.value = self._filter_target.filter_text
        box.placeholder = (
            "filter tools: enter keeps it, esc clears it"
            if self._filter_target is self.tools
            else "filter servers by name, description or status: enter keeps it, esc clears it"
        )
        box.display = True
        box.can_focus = True
        # Now, not after this key (as `focus()` would): the keys typed next are the filter's.
        self.set_focus(box)
        self.settle_cursors()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        target = self._filter_target or self.servers
        target.set_filter(event.value)
        self._title_filter(target)
        self._show_status()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, _event: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        target = self._filter_target or self.servers
        box.display = bool(target.filter_text) and target is self.servers
        # Kept in sight, but out of the tab order: tab moves between the panes, and `/` goes
        # back to the filter.
        box.can_focus = False
        self.set_focus(target)

    def _title_filter(self, table: LiveTable[Any]) -> None:
        pane = self.query_one("#tools-pane" if table is self.tools else "#servers-pane")
        pane.border_subtitle = f'/ "{table.filter_text}"' if table.filter_text else ""

    def action_clear(self) -> None:
        box = self.query_one("#filter", Input)
        for table in (self.tools, self.servers):
            if table.filter_text and (box.has_focus or table.has_focus or table is self.servers):
                table.set_filter("")
                self._title_filter(table)
                box.value = ""
                box.display = False
                self.servers.focus() if table is self.servers else table.focus()
                self._show_status()
                return
        if box.display:
            box.display = False
            (self._filter_target or self.servers).focus()
            return
        self.servers.clear_marks()

    def action_details(self) -> None:
        key = self.servers.cursor_key
        if key is None:
            return
        self.app.push_screen(ServerDetailsScreen(key))

    def action_log(self) -> None:
        key = self.servers.cursor_key
        model = self.servers.model(key) if key else None
        if model is None:
            return
        self.app.push_screen(LogScreen(model.key, model.name))

    def action_analytics(self) -> None:
        self.app.push_screen(AnalyticsScreen())

    def action_events(self) -> None:
        self.app.push_screen(EventsScreen())

    def action_alerts(self) -> None:
        self.app.push_screen(AlertsScreen())

    def action_audit(self) -> None:
        self.app.push_screen(AuditScreen())

    def action_profiles(self) -> None:
        from app.tui.screens.profiles import ProfilesScreen

        self.app.push_screen(ProfilesScreen())

    def action_nodes(self) -> None:
        from app.tui.screens.nodes import NodesScreen

        self.app.push_screen(NodesScreen())

    def action_tokens(self) -> None:
        from app.tui.screens.tokens import TokensScreen

        self.app.push_screen(TokensScreen())

    def action_clients(self) -> None:
        from app.tui.screens.clients import ClientsScreen

        self.app.push_screen(ClientsScreen())

    def action_trim(self) -> None:
        self.app.push_screen(TrimScreen())

    def action_alert_rules(self) -> None:
        self.app.push_screen(AlertRulesScreen())

    def action_import_config(self) -> None:
        self.app.push_screen(ImportScreen(), self._after_import)

    def _after_import(self, report: ImportReport | None) -> None:
        if report is not None:
            self.reload()

    # ---- server actions ----------------------------------------------------------------------

    def _names(self) -> dict[str, str]:
        return {row.key: row.name for row in self.servers.models}

    def _targets(self) -> list[str]:
        """What an action applies to: the marked servers in sight, else the cursor row.

        Marks the filter hides are never acted on unseen: with none in sight nothing is done,
        and otherwise the notice of the action names how many were left alone.
        """
        table = self.servers
        hidden = table.hidden_marked
        targets = table.targets()
        if hidden and not targets:
            self.notify(
                f"The {len(hidden)} marked server(s) are hidden by the filter "
                f'"{table.filter_text}": nothing was done. esc clears the filter.',
                title="Marks hidden",
                severity="warning",
                markup=False,
            )
        elif not targets:
            self.notify("No server under the cursor.", severity="warning")
        return targets

    def _hidden_note(self) -> str:
        hidden = len(self.servers.hidden_marked)
        if not hidden:
            return ""
        return f"\n{hidden} marked server(s) hidden by the filter were left alone."

    def action_new_server(self) -> None:
        self.app.push_screen(ServerFormScreen(None), self._after_form)

    def action_edit_server(self) -> None:
        key = self.servers.cursor_key
        if key is None:
            return
        self._edit(key)

    def _edit(self, key: str) -> None:
        self.app.push_screen(ServerFormScreen(key), self._after_form)

    def _after_form(self, saved: ToolServerResponse | None) -> None:
        if saved is not None:
            self.notify(f"Saved {saved.name}.", markup=False)
            # The cursor goes to the server, new or edited, once its row is in.
            self.servers.move_to_when_shown(saved.id)
            self.reload()

    def action_delete(self) -> None:
        chosen = self._targets()
        if not chosen:
            return
        names = self._names()

        def builtin(key: str) -> bool:
            model = self.servers.model(key)
            return model is not None and model.is_builtin

        # Built-ins cannot be deleted (the facade refuses): they are named, and left out.
        kept = [names.get(key, key) for key in chosen if builtin(key)]
        targets = [key for key in chosen if not builtin(key)]
        if not targets:
            self.notify(
                f"Built-in servers cannot be deleted: {', '.join(kept)}. "
                "- disables a server instead.",
                title="Delete",
                severity="warning",
                markup=False,
            )
            return
        listed = ", ".join(names.get(key, key) for key in targets[:8])
        if len(targets) > 8:
            listed += f" and {len(targets) - 8} more"
        one = len(targets) == 1
        noun = "server" if one else f"{len(targets)} servers"
        message = f"Delete {noun}: {listed}?\n\n" + (
            "Its definition and tools are removed and, if it runs, it is stopped. "
            "Its usage history is kept."
            if one
            else "Their definitions and tools are removed and running ones are stopped. "
            "Their usage history is kept."
        )
        if kept:
            message += (
                f"\n\nBuilt-in servers cannot be deleted and are left as they are: "
                f"{', '.join(kept)} (- disables a server)."
            )
        message += self._hidden_note().replace("\n", "\n\n", 1)

        def confirmed(answer: bool | None) -> None:
            if answer:
                self.run_bulk("delete", targets)

        self.app.push_screen(
            ConfirmScreen(f"Delete {noun}", message, confirm_label="Delete"), confirmed
        )

    def action_start(self) -> None:
        self._bulk("start")

    def action_stop(self) -> None:
        self._bulk("stop")

    def action_restart(self) -> None:
        self._bulk("restart")

    def action_enable(self) -> None:
        self._bulk("enable")

    def action_disable(self) -> None:
        self._bulk("disable")

    def action_refresh_tools(self) -> None:
        self._bulk("refresh")

    def _bulk(self, operation: str) -> None:
        targets = self._targets()
        if targets:
            self.run_bulk(operation, targets)

    async def act_on_server(self, operation: str, key: str) -> None:
        """A palette command on one named server."""
        if operation in DONE:
            if not self.deck.read_only:
                self.run_bulk(operation, [key])
        elif operation == "edit":
            if not self.deck.read_only:
                self._edit(key)
        elif operation == "log":
            model = self.servers.model(key)
            if model is not None:
                self.app.push_screen(LogScreen(key, model.name))
        elif operation == "details":
            self.app.push_screen(ServerDetailsScreen(key))

    async def _each_with_progress(
        self, label: str, server_ids: list[str], one: Callable[[str], Awaitable[ItemT]]
    ) -> list[ItemT]:
        """`one` on every server, a few at a time, with the progress bar and the busy label
        shown while any runs. `one` reports its own failures in what it returns."""
        self._busy.append(label)
        self.query_one("#bulk-bar").display = True
        self.query_one("#bulk-label", Label).update(label)
        progress = self.query_one("#bulk-progress", ProgressBar)
        progress.update(total=len(server_ids), progress=0)
        self._show_status()
        limit = asyncio.Semaphore(BULK_CONCURRENCY)

        async def limited(server_id: str) -> ItemT:
            async with limit:
                result = await one(server_id)
                progress.advance(1)
                return result

        try:
            return list(await asyncio.gather(*(limited(server_id) for server_id in server_ids)))
        finally:
            self._busy.remove(label)
            if not self._busy:
                self.query_one("#bulk-bar").display = False
            self._show_status()

    @work(group="actions", exit_on_error=False)
    async def run_bulk(self, operation: str, server_ids: list[str]) -> list[BulkOperationItem]:
        ops = self.deck.ops
        if ops is None:
            return []
        names = self._names()

        async def one(server_id: str) -> BulkOperationItem:
            # One bulk call per server, so progress moves as each one finishes.
            try:
                result = await ops.bulk(
                    {"server_ids": [server_id], "operation": operation}, actor=self.deck.actor
                )
                return result.results[0]
            except Exception as exc:  # reported in the summary, with the others
                return BulkOperationItem(
                    server_id=server_id, success=False, message=describe_error(exc)
                )

        left_alone = self._hidden_note()
        items = await self._each_with_progress(f"{operation} {len(server_ids)}…", server_ids, one)
        failed = sum(1 for item in items if not item.success)
        severity = "information" if not failed else "error" if failed == len(items) else "warning"
        self.notify(
            summary(operation, items, names) + left_alone,
            title=operation.capitalize(),
            severity=severity,
            timeout=4 if not failed else 12,
            markup=False,
        )
        self.reload()
        return items

    def action_health_check(self) -> None:
        targets = self._targets()
        if targets:
            self.run_health(targets)

    @work(group="actions", exit_on_error=False)
    async def run_health(self, server_ids: list[str]) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        names = self._names()

        async def one(server_id: str) -> tuple[str, bool, str]:
            try:
                health = await ops.check_health(server_id)
                ok = bool(health.is_responsive)
                note = health.error_message or (
                    f"{health.latency_ms:.0f}ms" if health.latency_ms is not None else "ok"
                )
            except Exception as exc:  # reported in the summary
                ok, note = False, describe_error(exc)
            return names.get(server_id, server_id), ok, note

        results = await self._each_with_progress(f"health {len(server_ids)}…", server_ids, one)
        bad = [(name, note) for name, ok, note in results if not ok]
        good = len(results) - len(bad)
        lines = [f"{good} responsive, {len(bad)} not"]
        lines += [f"• {name}: {note}" for name, note in bad[:6]]
        self.notify(
            "\n".join(lines),
            title="Health",
            severity="warning" if bad else "information",
            markup=False,
        )
        self.reload()

    # ---- tool actions ------------------------------------------------------------------------

    def _tool(self) -> ServerToolResponse | None:
        key = self.tools.cursor_key
        if key is None or self._detail is None:
            return None
        return self._detail.tool_responses.get(key)

    def action_toggle_tool(self) -> None:
        tool = self._tool()
        if tool is not None:
            self.run_tool_flag(tool, "enabled", not tool.enabled)

    def action_toggle_bypass(self) -> None:
        tool = self._tool()
        if tool is not None:
            self.run_tool_flag(tool, "bypass", not tool.bypass_when_unavailable)

    @work(group="actions", exit_on_error=False)
    async def run_tool_flag(self, tool: ServerToolResponse, flag: str, value: bool) -> None:
        ops = self.deck.ops
        if ops is None:
            return
        if flag == "enabled":
            await ops.set_tool_enabled(tool.id, value, actor=self.deck.actor)
            verb = "enabled" if value else "disabled"
        else:
            await ops.set_tool_bypass(tool.id, value, actor=self.deck.actor)
            verb = "bypass on for" if value else "bypass off for"
        self.notify(f"{verb} {tool.name}", markup=False)
        self.reload()

    def action_call_tool(self) -> None:
        tool = self._tool()
        if tool is None:
            return
        self.call_tool(tool)

    def call_tool(self, tool: ServerToolResponse) -> None:
        """The call screen of a tool (the palette names any tool of any server)."""
        if not self.deck.read_only:
            self.app.push_screen(ToolCallScreen(tool))
