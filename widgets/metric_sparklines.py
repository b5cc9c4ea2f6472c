"""Calls, errors and p95 as sparklines: for the highlighted server and for the whole system."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Label, Sparkline

from widgets import formatting as fmt

METRICS = ("calls", "errors", "p95")


@dataclass(frozen=True)
class SeriesSet:
    """Per-bucket values over the chosen period, oldest first, and their summaries."""

    calls: Sequence[float] = field(default_factory=tuple)
    errors: Sequence[float] = field(default_factory=tuple)
    p95: Sequence[float] = field(default_factory=tuple)
    total_calls: int | None = None
    total_errors: int | None = None
    p95_ms: float | None = None

    def series(self, metric: str) -> list[float]:
        return [float(value) for value in getattr(self, metric)]

    def summary(self, metric: str) -> str:
        if metric == "calls":
            return fmt.count(self.total_calls)
        if metric == "errors":
            return fmt.count(self.total_errors)
        return fmt.millis(self.p95_ms)


class MetricSparklines(Grid):
    """Rows of metrics, two columns of sparklines: the server's and the system's."""

    DEFAULT_CSS = """
    MetricSparklines {
        grid-size: 5;
        grid-columns: 7 1fr 6 1fr 6;
        grid-rows: 1;
        grid-gutter: 0 1;
        height: 4;
    }
    MetricSparklines Sparkline {
        height: 1;
    }
    MetricSparklines > .spark-heading {
        column-span: 2;
        width: 100%;
    }
    """

    def compose(self) -> ComposeResult:
        yield Label("")
        yield Label("server", id="server-heading", classes="spark-heading")
        yield Label("all servers", classes="spark-heading")
        for metric in METRICS:
            yield Label(metric, classes="spark-label")
            yield Sparkline([], id=f"server-{metric}", classes=f"spark-{metric}")
            yield Label(fmt.DASH, id=f"server-{metric}-value", classes="spark-value")
            yield Sparkline([], id=f"system-{metric}", classes=f"spark-{metric}")
            yield Label(fmt.DASH, id=f"system-{metric}-value", classes="spark-value")

    def show(self, server: SeriesSet | None, system: SeriesSet | None, server_name: str) -> None:
        _set_text(self.query_one("#server-heading", Label), server_name)
        for scope, data in (("server", server), ("system", system)):
            for metric in METRICS:
                spark = self.query_one(f"#{scope}-{metric}", Sparkline)
                values = data.series(metric) if data else []
                if list(spark.data or []) != values:
                    spark.data = values
                label = self.query_one(f"#{scope}-{metric}-value", Label)
                _set_text(label, data.summary(metric) if data else fmt.DASH)


def _set_text(label: Label, text: str) -> None:
    # Each label fills its grid cell whatever it says: a new text needs no layout pass of the
    # whole screen, and the same text no repaint at all.
    if str(label.content) != text:
        label.update(text, layout=False)
