"""The analytics screen's table of tools: calls, errors and latency of each over the window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from widgets import formatting as fmt
from widgets.live_table import Cell, ColumnSpec, LiveTable, count_cell, errors_cell, millis_cell


@dataclass(frozen=True)
class ToolFigures:
    key: str
    name: str  # server/tool
    calls: int
    errors: int
    success_rate: float | None = None
    mean_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None

    @property
    def search_text(self) -> str:
        return self.name.lower()

    @property
    def error_rate(self) -> float | None:
        return None if self.success_rate is None else 1.0 - self.success_rate


def _name(row: ToolFigures, _now: datetime) -> Cell:
    return (row.name, "")


def _error_rate(row: ToolFigures, _now: datetime) -> Cell:
    rate = row.error_rate
    if rate is None:
        return (fmt.DASH, "dim")
    style = "red" if rate >= 0.1 else "yellow" if rate >= 0.01 else "dim"
    return (fmt.percent(rate), style)


def _figure(
    key: str, label: str, render: Callable[[ToolFigures, datetime], Cell], value: Any, letter: str
) -> ColumnSpec[ToolFigures]:
    # Counts and latencies: right-aligned, largest first.
    return ColumnSpec(key, label, 5, render, value, letter, "right", descending=True)


TOOL_FIGURE_COLUMNS: tuple[ColumnSpec[ToolFigures], ...] = (
    ColumnSpec("name", "Tool", 24, _name, lambda r: r.name, "N"),
    _figure("calls", "Calls", lambda r, _n: count_cell(r.calls), lambda r: r.calls, "C"),
    _figure("errors", "Err", lambda r, _n: errors_cell(r.errors), lambda r: r.errors, "E"),
    _figure("error_rate", "Err%", _error_rate, lambda r: r.error_rate, "R"),
    _figure("p50", "p50", lambda r, _n: millis_cell(r.p50_ms), lambda r: r.p50_ms, "F"),
    _figure("p95", "p95", lambda r, _n: millis_cell(r.p95_ms), lambda r: r.p95_ms, "P"),
    _figure("mean", "Mean", lambda r, _n: millis_cell(r.mean_ms), lambda r: r.mean_ms, "M"),
)


class ToolFiguresTable(LiveTable[ToolFigures]):
    """Tools over the window, most called first; shift+letter sorts as on the main screen."""

    COLUMNS = TOOL_FIGURE_COLUMNS
    UNIQUE_COLUMN_INDEX = 0
    FLEX_COLUMN: ClassVar[str | None] = "name"
    DEFAULT_CSS = """
    ToolFiguresTable {
        height: 1fr;
    }
    """
