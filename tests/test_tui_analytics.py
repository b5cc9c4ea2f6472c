"""The analytics screen read at 80x24: charts tall enough for bars and labels, dates on a
7-day axis, both time charts over the same buckets, and each tool's own figures."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widget import Widget

from app.tui.screens.analytics import AnalyticsScreen
from tests.screenshots import Shot, build_demo_home, copy_home, demo_app, driver
from tests.tui_helpers import drawn_lines
from widgets.latency_chart import LatencyChart, UsageChart
from widgets.tool_figures import ToolFiguresTable

DATE_TIME = re.compile(r"[A-Z][a-z]{2} \d\d \d\d:\d\d")


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("demo-template")
    asyncio.run(build_demo_home(home))
    return home


async def test_seven_days_at_80x24_are_readable(demo_template: Path, tmp_path: Path) -> None:
    shot = Shot("analytics-7d", "", size=(80, 24), keys=("3", "a"))
    app = demo_app(copy_home(demo_template, tmp_path / "demo"), shot)
    async with app.run_test(size=shot.size) as pilot:
        await driver(shot.keys)(pilot)
        screen = app.screen
        assert isinstance(screen, AnalyticsScreen)
        usage = screen.query_one(UsageChart)
        assert usage.size.height >= 10
        lines = drawn_lines(usage)
        assert sum(line.count("█") for line in lines) > 50  # bars, not an empty frame
        axis = next(line for line in lines if DATE_TIME.search(line))
        labels = DATE_TIME.findall(axis)
        assert len(labels) >= 3 and len(set(labels)) == len(labels)  # dates, all different
        assert not re.search(r"\d\d:\d\d\S", axis)  # no label runs into the next
        latency = screen.query_one(LatencyChart)
        assert latency.size.height >= 10
        # Each tool's figures, percentiles included.
        table = screen.query_one(ToolFiguresTable)
        rows = table.models
        assert len(rows) >= 5
        busiest = max(rows, key=lambda row: row.calls)
        assert table.visible_keys[0] == busiest.key  # most called first
        assert busiest.p50_ms is not None and busiest.p95_ms is not None
        assert any(row.errors for row in rows)


class OneChart(App[None]):
    def __init__(self, chart: Widget) -> None:
        super().__init__()
        self.chart = chart

    def compose(self) -> ComposeResult:
        yield self.chart


def drawn_cells(widget: Widget) -> list[list[tuple[str, Any, Any]]]:
    """A widget's content as drawn, cell by cell: each character with its foreground and
    background colours (columns as in `drawn_lines` and the charts' axes)."""
    rows = []
    for y in range(widget.size.height):
        cells = []
        for segment in widget.render_line(y):
            style = segment.style
            color = style.color if style else None
            back = style.bgcolor if style else None
            cells.extend((char, color, back) for char in segment.text)
        rows.append(cells)
    return rows


HOURS = [f"{hour:02d}:00" for hour in range(24)]


@pytest.mark.parametrize("size", [(80, 20), (120, 20), (44, 14)])
async def test_errors_are_the_top_of_each_bar_in_a_colour_of_their_own(
    size: tuple[int, int],
) -> None:
    calls = [float(100 + 10 * hour) for hour in range(24)]
    # Errors in every third hour only, one of them tiny: each must still show.
    errors = [float(hour * 4 if hour % 3 == 0 else 0) for hour in range(24)]
    errors[3] = 1.0
    chart = UsageChart()
    async with OneChart(chart).run_test(size=size) as pilot:
        chart.show(HOURS, calls, errors)
        await pilot.pause()
        cells = drawn_cells(chart)
        axis = chart.axis
        plot = cells[1:-1]  # under the title, over the labels
        calls_colors, error_colors = set(), set()
        for index in range(24):
            column = axis.start(index)
            inked = [row[column] for row in plot if row[column][0].strip()]
            assert inked, f"bucket {index} has no bar"
            bottom, top = inked[-1], inked[0]
            calls_colors.add(bottom[1])
            if errors[index]:
                # The top cell is the errors' colour: alone, or over the calls as background.
                error_colors.add(
                    top[2] if top[2] is not None and top[1] in calls_colors else top[1]
                )
            else:
                assert top[1] == bottom[1]
        assert len(calls_colors) == 1 and len(error_colors) == 1
        assert calls_colors != error_colors
        if axis.min_span >= 2:
            # A column between bars: neighbouring buckets never merge into a block.
            for index in range(1, 24):
                gap = axis.start(index) - 1
                assert all(not row[gap][0].strip() for row in plot), index


@pytest.mark.parametrize("size", [(80, 20), (120, 20)])
async def test_each_time_label_sits_under_its_own_bucket(size: tuple[int, int]) -> None:
    chart = UsageChart()
    latency = LatencyChart()
    calls = [float(50 + hour) for hour in range(24)]
    async with OneChart(chart).run_test(size=size) as pilot:
        chart.show(HOURS, calls, [0.0] * 24)
        await pilot.pause()
        axis = chart.axis
        labels_line = drawn_lines(chart)[-1]
        shown = axis.labelled(HOURS)
        assert len(shown) >= 4
        for index in shown:
            at = axis.start(index)
            assert labels_line[at : at + 5] == HOURS[index]
            # The bar over the label is that bucket's, starting at the label's column.
            assert drawn_lines(chart)[-2][at] != " "
        # Every label drawn is one of these, at its bucket: none is left between buckets.
        found = re.findall(r"\d\d:00", labels_line)
        assert found == [HOURS[index] for index in shown]
    async with OneChart(latency).run_test(size=size) as pilot:
        latency.show(HOURS, {"p50": [10.0] * 24, "p95": [80.0] * 24, "p99": [400.0] * 24})
        await pilot.pause()
        assert latency.axis.labelled(HOURS) == shown
        assert drawn_lines(latency)[-1] == labels_line


async def test_latency_draws_p50_p95_and_p99_apart() -> None:
    chart = LatencyChart()
    async with OneChart(chart).run_test(size=(80, 20)) as pilot:
        chart.show(HOURS, {"p50": [10.0] * 24, "p95": [80.0] * 24, "p99": [900.0] * 24})
        await pilot.pause()
        lines = drawn_lines(chart)
        assert all(name in lines[0] for name in ("p50", "p95", "p99"))
        rows = [index for index, line in enumerate(lines) if "─" in line]
        # Three lines on three rows, p99 highest; the colours tell them apart.
        assert len(rows) == 3
        colours = {
            next(cell[1] for cell in drawn_cells(chart)[row] if cell[0] == "─") for row in rows
        }
        assert len(colours) == 3


async def test_latency_spans_the_same_buckets_as_the_calls() -> None:
    """Latency only in the second half of the buckets: the line starts mid-chart, where the
    calls chart has those buckets, not at its left edge."""
    chart = LatencyChart()
    async with OneChart(chart).run_test(size=(80, 20)) as pilot:
        chart.show(HOURS, {"p95": [None] * 12 + [200.0 + 10 * i for i in range(12)]})
        await pilot.pause()
        plot = drawn_lines(chart)[1:-1]
        first = min(line.index("─") for line in plot if "─" in line)
        assert first == chart.axis.start(12)
