"""Plotext charts for the analytics screen.

Each chart keeps its data and replays it on every render, so a resize redraws it at the new
size (textual-plotext sizes the figure in `render`). Colours are plotext's named colours, which
map onto the terminal's 16/256-colour palette over SSH.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from textual_plotext import PlotextPlot

from widgets import formatting as fmt

NO_DATA = "no calls in this period"


# Columns of a chart that are not its plot: the y axis's labels and the frame.
Y_AXIS_ROOM = 10


def thin_ticks(labels: Sequence[str], room: int) -> tuple[list[int], list[str]]:
    """A readable subset of x labels: as many as fit in `room` columns with three spaces
    between neighbours, so that two labels never run together."""
    if not labels:
        return [], []
    width = max(len(label) for label in labels) + 3
    fit = max(1, room // width)
    step = max(1, -(-len(labels) // fit))
    ticks = list(range(0, len(labels), step))
    return ticks, [labels[index] for index in ticks]


def bucket_range(count: int) -> tuple[float, float]:
    """The x range of a chart of `count` buckets: every chart of the screen the same, whatever
    buckets have data (a latency line starts at its first call, the calls bars do not)."""
    return -0.5, count - 0.5


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `top`: 0, 250, 500, 750 rather than 0, 188.3..."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < top:
        ticks.append(ticks[-1] + step)
    return ticks


def tick_label(value: float, unit: str = "") -> str:
    if unit == "ms":
        return fmt.millis(value) if value else "0"
    if unit == "%":
        return f"{value:.0f}%"
    return fmt.count(int(value))


class _Chart(PlotextPlot):
    """A chart with a title that draws "no data" instead of an empty frame."""

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.chart_title = title
        self._has_data = False

    def _start(self) -> None:
        plt = self.plt
        plt.clear_figure()
        plt.title(self.chart_title)

    def _empty(self) -> None:
        self._start()
        self.plt.text(NO_DATA, x=0.5, y=0.5, alignment="center")
        self.plt.xlim(0, 1)
        self.plt.ylim(0, 1)
        self.plt.xticks([], [])
        self.plt.yticks([], [])


class LatencyChart(_Chart):
    """Latency lines per bucket over the period (mean and p95, or any named percentiles)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("Latency: mean and p95", id=id, classes=classes)
        self._labels: list[str] = []
        self._lines: dict[str, list[float | None]] = {}

    def show(self, labels: Sequence[str], lines: dict[str, Sequence[float | None]]) -> None:
        self._labels = list(labels)
        self._lines = {name: list(values) for name, values in lines.items()}
        self.refresh()

    def render(self):  # type: ignore[no-untyped-def]
        self._draw()
        return super().render()

    def _draw(self) -> None:
        if not self._labels or not any(
            value is not None for values in self._lines.values() for value in values
        ):
            self._empty()
            return
        self._start()
        plt = self.plt
        colors = {"mean": "green", "p50": "green", "p95": "yellow", "p99": "red"}
        for name, values in self._lines.items():
            points = [(i, v) for i, v in enumerate(values) if v is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                plt.plot(list(xs), list(ys), label=name, color=colors.get(name, "blue"))
        ticks, names = thin_ticks(self._labels, self.size.width - Y_AXIS_ROOM)
        plt.xticks(ticks, names)
        plt.xlim(*bucket_range(len(self._labels)))
        top = max(v for values in self._lines.values() for v in values if v is not None)
        # No 0 tick: the lines sit well above it, and its label would touch the dates.
        values = [value for value in nice_ticks(top) if value > 0]
        plt.yticks(values, [tick_label(value, "ms") for value in values])
        # The top tick at the frame's top, not above it on the title's line.
        plt.ylim(0, values[-1])


class UsageChart(_Chart):
    """Calls and errors per bucket, side by side."""

    def __init__(
        self, title: str = "Calls and errors", *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(title, id=id, classes=classes)
        self._labels: list[str] = []
        self._calls: list[float] = []
        self._errors: list[float] = []

    def show(self, labels: Sequence[str], calls: Sequence[float], errors: Sequence[float]) -> None:
        self._labels, self._calls, self._errors = list(labels), list(calls), list(errors)
        self.refresh()

    def render(self):  # type: ignore[no-untyped-def]
        self._draw()
        return super().render()

    def _draw(self) -> None:
        if not self._labels or not any(self._calls):
            self._empty()
            return
        self._start()
        plt = self.plt
        xs = list(range(len(self._labels)))
        plt.bar(xs, self._calls, label="calls", color="blue", width=0.8)
        plt.bar(xs, self._errors, label="errors", color="red", width=0.8)
        ticks, names = thin_ticks(self._labels, self.size.width - Y_AXIS_ROOM)
        plt.xticks(ticks, names)
        plt.xlim(*bucket_range(len(self._labels)))
        values = nice_ticks(max(self._calls))
        plt.yticks(values, [tick_label(value) for value in values])
        plt.ylim(0, values[-1])


class RankChart(_Chart):
    """A horizontal bar per name, largest first: top tools, failing tools."""

    def __init__(
        self,
        title: str,
        *,
        color: str = "blue",
        percent: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(title, id=id, classes=classes)
        self._color = color
        self._percent = percent
        self._names: list[str] = []
        self._values: list[float] = []

    def show(self, names: Sequence[str], values: Sequence[float]) -> None:
        self._names, self._values = list(names), list(values)
        self.refresh()

    def render(self):  # type: ignore[no-untyped-def]
        self._draw()
        return super().render()

    def _draw(self) -> None:
        if not self._names:
            self._empty()
            return
        self._start()
        plt = self.plt
        names = [fmt.truncate(name, 22) for name in reversed(self._names)]
        values = list(reversed(self._values))
        if self._percent:
            values = [value * 100 for value in values]
        plt.bar(names, values, orientation="horizontal", color=self._color, width=0.6)
        ticks = nice_ticks(max(values), count=3)
        plt.xticks(ticks, [tick_label(tick, "%" if self._percent else "") for tick in ticks])
        plt.xlim(0, ticks[-1])
