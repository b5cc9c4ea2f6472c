"""`a`: system-wide analytics for the chosen period: charts and the tools' figures.

Calls and errors per bucket (each bar's errors its red top) and latency p50, p95 and p99 over
the same buckets, side by side; a table of the most called and the failing tools with their
calls, errors and percentiles; the failing tools' error rates. The period keys work here as on
the main screen; the figures come from the facade's analytics. Under 100 columns the sections
stack, each at a readable height, and the screen scrolls.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Static

from app.core.periods import PERIOD_NAMES
from app.tui.base import DeckScreen
from app.tui.data import AnalyticsView
from app.tui.messages import CoreReady, PeriodChanged
from widgets import formatting as fmt
from widgets.latency_chart import LatencyChart, RankChart, UsageChart
from widgets.status_bar import StatusBar, StatusState
from widgets.tool_figures import ToolFiguresTable


def totals_text(view: AnalyticsView) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    if not view.available:
        text.append("Analytics are not available from this core.", style="dim")
        return text
    pairs = (
        ("calls", fmt.count(view.total_calls)),
        ("errors", fmt.count(view.total_errors)),
        ("success", fmt.percent(view.success_rate)),
        ("mean", fmt.millis(view.mean_ms)),
        ("p95", fmt.millis(view.p95_ms)),
    )
    for index, (label, value) in enumerate(pairs):
        if index:
            text.append("   ")
        text.append(f"{label} ", style="dim")
        text.append(value, style="bold")
    return text


class AnalyticsScreen(DeckScreen[None]):
    HELP_TITLE = "analytics"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="analytics-back"),
        Binding("r", "reload", "Reload", id="analytics-reload"),
        *(
            Binding(
                str(index),
                f"period('{period}')",
                f"Period {period}",
                id=f"analytics-period-{period}",
                show=False,
            )
            for index, period in enumerate(PERIOD_NAMES, start=1)
        ),
    ]

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static("", id="analytics-totals")
        with VerticalScroll(id="analytics-body"):
            with Horizontal(id="analytics-charts", classes="analytics-row"):
                yield UsageChart(id="chart-usage", classes="chart")
                yield LatencyChart(id="chart-latency", classes="chart")
            with Horizontal(id="analytics-lists", classes="analytics-row"):
                with Vertical(id="analytics-tools-box", classes="pane"):
                    yield ToolFiguresTable(id="analytics-tools")
                yield RankChart(
                    "Failing tools (error %)",
                    color="red",
                    percent=True,
                    id="chart-failing",
                    classes="chart",
                )
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self._title_tools()
        self.query_one(ToolFiguresTable).sort_by("calls")
        self.query_one("#analytics-body").focus()
        self._status()
        self.set_interval(max(self.deck.refresh_interval, 10.0), self._tick, name="analytics")
        self.load()

    def _status(self) -> None:
        self.query_one(StatusBar).show(
            StatusState(
                period=self.deck.period,
                read_only=self.deck.read_only,
                title=f"Analytics · last {self.deck.period}",
            )
        )

    def on_core_ready(self, _message: CoreReady) -> None:
        self.load()

    def on_period_changed(self, _message: PeriodChanged) -> None:
        self._status()
        self._title_tools()
        self.load()

    def _title_tools(self) -> None:
        self.query_one("#analytics-tools-box").border_title = f"Tools · {self.deck.period}"

    def _tick(self) -> None:
        if self.is_active:
            self.load()

    def action_period(self, period: str) -> None:
        self.deck.set_period(period)

    def action_reload(self) -> None:
        self.load()

    @work(exclusive=True, group="analytics", exit_on_error=False)
    async def load(self) -> None:
        data = self.deck.data
        if data is None:
            return
        view = await data.analytics(self.deck.period)
        self.show(view)

    def show(self, view: AnalyticsView) -> None:
        self.query_one("#analytics-totals", Static).update(totals_text(view))
        self.query_one("#chart-usage", UsageChart).show(view.bucket_labels, view.calls, view.errors)
        self.query_one("#chart-latency", LatencyChart).show(view.bucket_labels, view.latency)
        self.query_one(ToolFiguresTable).sync(view.tools)
        failing = view.failing_tools
        self.query_one("#chart-failing", RankChart).show(
            [n for n, _ in failing], [v for _, v in failing]
        )
