"""The analytics screen read at 80x24: charts tall enough for bars and labels, dates on a
7-day axis, both time charts over the same buckets, and each tool's own figures."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

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


async def test_latency_spans_the_same_buckets_as_the_calls() -> None:
    """Latency only in the second half of the buckets: the line starts mid-chart, where the
    calls chart has those buckets, not at its left edge."""
    labels = [f"{hour:02d}:00" for hour in range(24)]
    chart = LatencyChart()
    async with OneChart(chart).run_test(size=(80, 20)) as pilot:
        chart.show(labels, {"p95": [None] * 12 + [200.0 + 10 * i for i in range(12)]})
        await pilot.pause()
        plot_rows = [line for line in drawn_lines(chart) if "│" in line or "┤" in line]
        inked = [
            index
            for line in plot_rows
            for index, char in enumerate(line)
            if "\u2800" <= char <= "\u28ff" or char in "▀▄▌▐▖▗▘▙▚▛▜▝▞▟█"
        ]
        left = min(line.index("┤") if "┤" in line else line.index("│") for line in plot_rows)
        right = max(len(line.rstrip()) for line in plot_rows)
        legend_room = 10  # the legend's own marks sit at the top left
        line_start = min(index for index in inked if index > left + legend_room)
        assert line_start > left + (right - left) * 0.4, (line_start, left, right)
