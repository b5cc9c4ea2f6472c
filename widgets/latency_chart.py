"""Charts for the analytics screen: calls and errors, and latency, over time buckets; a ranking.

Each chart keeps its data and draws it again on every render, so a resize redraws it at the
new size. The time charts are drawn cell by cell (see `BucketAxis`); the ranking is a plotext
bar chart (textual-plotext sizes the figure in `render`). Colours are named terminal colours,
which map onto the 16/256-colour palette over SSH.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget
from textual_plotext import PlotextPlot

from widgets import formatting as fmt

NO_DATA = "no calls in this period"


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


def log_ticks(low: float, high: float) -> list[float]:
    """Ticks of a logarithmic scale from a round value at or below `low` to one at or above
    `high`: 1, 2 and 5 times powers of ten over a narrow range, powers of ten over a wide one."""
    low, high = max(low, 0.01), max(high, 0.01)
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    last = max(last, first + 1)
    steps = (1.0,) if last - first > 2 else (1.0, 2.0, 5.0)
    values = [m * 10.0**power for power in range(first, last + 1) for m in steps]
    below = max((v for v in values if v <= low), default=values[0])
    above = min((v for v in values if v >= high), default=values[-1])
    return [v for v in values if below <= v <= above]


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


# ---- the time charts: one column slot per bucket, drawn cell by cell ---------------------------
#
# Plotext places bars and labels on a continuous axis and rounds each to a column, so
# neighbouring bars merge and a label can land a column off its bucket. These charts give each
# bucket the same whole number of columns and put every label at its bucket's first column:
# what is drawn over a bucket is that bucket's, at any size.

BLOCKS = " ▁▂▃▄▅▆▇█"  # a cell filled to 0..8 eighths from the bottom
CALLS_COLOR = "blue"
FULL_TOUCHING = "▉"  # a full cell of a bar that touches the next: a sliver apart
ERRORS_COLOR = "red"
LATENCY_COLORS = {"p50": "green", "p95": "yellow", "p99": "red", "mean": "cyan"}
LINE = "─"


@dataclass(frozen=True)
class BucketAxis:
    """Where the buckets of a time chart go: `width` columns from `left` (after the y
    labels), bucket `index` from `start(index)` to `start(index + 1)`. Spans differ by a
    column at most, so the plot fills its width; bars are all as wide."""

    left: int
    width: int
    count: int

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def min_span(self) -> int:
        return self.width // self.count if self.count else 0

    def start(self, index: int) -> int:
        return self.left + index * self.width // max(1, self.count)

    def labelled(self, labels: Sequence[str]) -> list[int]:
        """The buckets whose labels are drawn, each at its bucket's first column: every
        `step`-th one from the first, with `step` the smallest of 1, 2, 3, 4, 6, 8, 12...
        that keeps two columns between neighbouring labels."""
        if not labels or not self.min_span:
            return []
        room = max(len(label) for label in labels) + 2
        step = next(
            (s for s in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48) if s * self.min_span >= room),
            self.count,
        )
        return [
            index
            for index in range(0, self.count, step)
            if self.start(index) + len(labels[index]) <= self.right
        ]


# Columns of the y labels: as wide in every time chart, so that two charts of the same
# width, one over the other, put each bucket in the same columns.
Y_LABELS_WIDTH = 5


def bucket_axis(width: int, count: int, y_labels: Sequence[str]) -> BucketAxis:
    """The axis of `count` buckets in `width` columns, after the y labels and their tick."""
    left = max([Y_LABELS_WIDTH, *(len(label) for label in y_labels)]) + 1
    return BucketAxis(left, max(0, width - left), count)


def bar_cells(value: float, top: float, height: int) -> int:
    """A value's bar height in eighths of a cell; any value above zero shows."""
    if value <= 0 or top <= 0:
        return 0
    return max(1, round(value / top * height * 8))


class _TimeChart(Widget):
    """A titled chart over time buckets: its plot, a y axis on the left and the buckets'
    labels under it. Drawn from its data at the size it has, so a resize redraws it."""

    DEFAULT_CSS = """
    _TimeChart {
        height: 1fr;
        padding: 0 1;
    }
    """

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.chart_title = title
        self._labels: list[str] = []

    @property
    def axis(self) -> BucketAxis:
        return bucket_axis(self.content_size.width, len(self._labels), self._y_labels())

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        lines = [self._title_line(width)]
        plot_height = height - 2
        if not self._has_data():
            lines.append(Text(NO_DATA, style="dim", justify="center"))
            return Text("\n").join(lines)
        if plot_height < 2:  # no room for a plot: the title alone, not a claim of no calls
            return lines[0]
        axis = self.axis
        ticks = self._ticks()
        top = ticks[-1]
        rows = self._plot_rows(axis, plot_height, top)
        tick_rows: dict[int, float] = {}
        for tick in ticks:  # the larger tick where two meet on a row
            row = plot_height - round(self._fraction(tick, ticks) * plot_height)
            tick_rows[min(plot_height - 1, max(0, row))] = tick
        for row, cells in enumerate(rows):
            line = Text(no_wrap=True, end="")
            tick = tick_rows.get(row)
            label = self._tick_label(tick) if tick is not None else ""
            line.append(label.rjust(axis.left - 1), style="dim")
            line.append("┤" if tick is not None else "│", style="dim")
            for char, style in cells:
                line.append(char, style=style)
            lines.append(line)
        lines.append(self._x_labels(axis))
        return Text("\n", no_wrap=True).join(lines)

    def _title_line(self, width: int) -> Text:
        title = Text(self.chart_title, style="bold")
        for name, color in self._legend():
            title.append("  ")
            title.append("■", style=color)
            title.append(f" {name}")
        title.truncate(width, overflow="ellipsis")
        title.justify = "center"
        return title

    def _x_labels(self, axis: BucketAxis) -> Text:
        chars = [" "] * axis.right
        for index in axis.labelled(self._labels):
            at = axis.start(index)
            chars[at : at + len(self._labels[index])] = self._labels[index]
        return Text("".join(chars).rstrip(), style="dim", no_wrap=True)

    def _fraction(self, value: float, ticks: Sequence[float]) -> float:
        """How far up the plot a value lies, from 0 (its bottom) to 1 (the top tick)."""
        return value / ticks[-1] if ticks[-1] else 0.0

    def _has_data(self) -> bool:
        raise NotImplementedError

    def _legend(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def _ticks(self) -> list[float]:
        raise NotImplementedError

    def _tick_label(self, value: float) -> str:
        raise NotImplementedError

    def _y_labels(self) -> list[str]:
        return [self._tick_label(tick) for tick in self._ticks()] if self._has_data() else []

    def _plot_rows(self, axis: BucketAxis, height: int, top: float) -> list[list[tuple[str, str]]]:
        raise NotImplementedError


class UsageChart(_TimeChart):
    """Calls per bucket as bars, the errors among them as each bar's red top: every bucket
    its own bar, a column apart from the next when there is room."""

    def __init__(
        self, title: str = "Calls and errors", *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(title, id=id, classes=classes)
        self._calls: list[float] = []
        self._errors: list[float] = []

    def show(self, labels: Sequence[str], calls: Sequence[float], errors: Sequence[float]) -> None:
        self._labels, self._calls, self._errors = list(labels), list(calls), list(errors)
        self.refresh()

    def _has_data(self) -> bool:
        return bool(self._labels) and any(self._calls)

    def _legend(self) -> list[tuple[str, str]]:
        return [("calls", CALLS_COLOR), ("errors", ERRORS_COLOR)]

    def _ticks(self) -> list[float]:
        return nice_ticks(max(self._calls), count=3)

    def _tick_label(self, value: float) -> str:
        return tick_label(value)

    @staticmethod
    def bar_width(axis: BucketAxis) -> int:
        """A column between bars when each bucket has two or more; else bars touch, their
        full cells a sliver narrower so that neighbours stay apart."""
        return axis.min_span - 1 if axis.min_span >= 2 else 1

    def _plot_rows(self, axis: BucketAxis, height: int, top: float) -> list[list[tuple[str, str]]]:
        width = self.bar_width(axis)
        touching = axis.min_span < 2
        rows: list[list[tuple[str, str]]] = [[(" ", "")] * axis.width for _ in range(height)]
        for index, (calls, errors) in enumerate(zip(self._calls, self._errors, strict=True)):
            total = bar_cells(calls, top, height)
            # The errors are the top of the bar: at least an eighth when there are any.
            failed = min(total, bar_cells(errors, top, height))
            ok = total - failed
            first = axis.start(index) - axis.left
            for row in range(height):
                cell = _stacked_cell((height - 1 - row) * 8, ok, total)
                if touching and cell[0] == BLOCKS[8]:
                    cell = (FULL_TOUCHING, cell[1])
                rows[row][first : first + width] = [cell] * width
        return rows


def _stacked_cell(base: int, ok: int, total: int) -> tuple[str, str]:
    """The cell whose bottom is `base` eighths up a bar of `ok` eighths of calls that
    succeeded under `total - ok` eighths of errors."""
    fill = min(8, total - base)
    if fill <= 0:
        return (" ", "")
    ok_here = min(8, max(0, ok - base))
    if ok_here >= fill:
        return (BLOCKS[fill], CALLS_COLOR)
    if ok_here == 0:
        return (BLOCKS[fill], ERRORS_COLOR)
    if fill == 8:  # the calls below, the errors above, in one cell
        return (BLOCKS[ok_here], f"{CALLS_COLOR} on {ERRORS_COLOR}")
    return (BLOCKS[fill], ERRORS_COLOR)  # the bar's top is too thin for both: errors show


class LatencyChart(_TimeChart):
    """Latency percentiles per bucket, one line each (p50, p95, p99): each bucket's value
    drawn across its columns, so a line steps where its buckets do. The scale is
    logarithmic: a p99 ten times the p50 leaves the p50 readable."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("Latency (log)", id=id, classes=classes)
        self._lines: dict[str, list[float | None]] = {}

    def show(self, labels: Sequence[str], lines: dict[str, Sequence[float | None]]) -> None:
        self._labels = list(labels)
        self._lines = {name: list(values) for name, values in lines.items()}
        self.refresh()

    def _values(self) -> list[float]:
        return [v for values in self._lines.values() for v in values if v is not None]

    def _has_data(self) -> bool:
        return bool(self._labels) and bool(self._values())

    def _legend(self) -> list[tuple[str, str]]:
        return [(name, LATENCY_COLORS.get(name, "blue")) for name in self._lines]

    def _ticks(self) -> list[float]:
        return log_ticks(min(self._values()), max(self._values()))

    def _tick_label(self, value: float) -> str:
        return tick_label(value, "ms")

    def _fraction(self, value: float, ticks: Sequence[float]) -> float:
        low, high = math.log10(ticks[0]), math.log10(ticks[-1])
        return (math.log10(max(value, ticks[0])) - low) / (high - low)

    def _plot_rows(self, axis: BucketAxis, height: int, top: float) -> list[list[tuple[str, str]]]:
        ticks = self._ticks()
        grid: list[list[tuple[str, str]]] = [[(" ", "")] * axis.width for _ in range(height)]
        # Later lines are drawn over earlier ones where they meet: the p95 over the p50.
        for name, values in self._lines.items():
            color = LATENCY_COLORS.get(name, "blue")
            for index, value in enumerate(values):
                if value is None:
                    continue
                row = height - 1 - min(height - 1, int(self._fraction(value, ticks) * height))
                first, end = axis.start(index) - axis.left, axis.start(index + 1) - axis.left
                grid[row][first:end] = [(LINE, color)] * (end - first)
        return grid


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
