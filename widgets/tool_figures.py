"""The analytics screen's table of tools: calls, errors and latency of each over the window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from widgets import formatting as fmt
from widgets.live_table import Cell, ColumnSpec, LiveTable


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


def _calls(row: ToolFigures, _now: datetime) -> Cell:
    return (fmt.count(row.calls), "")


def _errors(row: ToolFigures, _now: datetime) -> Cell:
    return (fmt.count(row.errors), "red" if row.errors else "dim")


def _error_rate(row: ToolFigures, _now: datetime) -> Cell:
    rate = row.error_rate
    if rate is None:
        return (fmt.DASH, "dim")
    style = "red" if rate >= 0.1 else "yellow" if rate >= 0.01 else "dim"
    return (fmt.percent(rate), style)


def _millis(value: float | None) -> Cell:
    return (fmt.millis(value), "" if value is not None else "dim")


def _p50(row: ToolFigures, _now: datetime) -> Cell:
    return _millis(row.p50_ms)


def _p95(row: ToolFigures, _now: datetime) -> Cell:
    return _millis(row.p95_ms)


def _mean(row: ToolFigures, _now: datetime) -> Cell:
    return _millis(row.mean_ms)


def _figure(
    key: str, label: str, render: Callable[[ToolFigures, datetime], Cell], value: Any, letter: str
) -> ColumnSpec[ToolFigures]:
    # Counts and latencies: right-aligned, largest first.
    return ColumnSpec(key, label, 5, render, value, letter, "right", descending=True)


TOOL_FIGURE_COLUMNS: tuple[ColumnSpec[ToolFigures], ...] = (
    ColumnSpec("name", "Tool", 24, _name, lambda r: r.name, "N"),
    _figure("calls", "Calls", _calls, lambda r: r.calls, "C"),
    _figure("errors", "Err", _errors, lambda r: r.errors, "E"),
    _figure("error_rate", "Err%", _error_rate, lambda r: r.error_rate, "R"),
    _figure("p50", "p50", _p50, lambda r: r.p50_ms, "F"),
    _figure("p95", "p95", _p95, lambda r: r.p95_ms, "P"),
    _figure("mean", "Mean", _mean, lambda r: r.mean_ms, "M"),
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
