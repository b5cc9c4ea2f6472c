"""The tools of the highlighted server, with their usage for the chosen period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from textual.binding import Binding, BindingType

from widgets import formatting as fmt
from widgets.live_table import Cell, ColumnSpec, LiveTable, count_cell, errors_cell, millis_cell


@dataclass(frozen=True)
class ToolRow:
    key: str
    name: str
    enabled: bool
    available: bool
    bypass: bool
    calls: int | None = None
    errors: int | None = None
    mean_ms: float | None = None
    p95_ms: float | None = None
    last_called: datetime | None = None
    description: str | None = None

    @property
    def search_text(self) -> str:
        return f"{self.name} {self.description or ''}".lower()


def _flag(value: bool, on_style: str = "green", off_style: str = "yellow") -> Cell:
    return ("yes", on_style) if value else ("no", off_style)


def _name(row: ToolRow, _now: datetime) -> Cell:
    return (row.name, "" if row.enabled else "dim")


def _enabled(row: ToolRow, _now: datetime) -> Cell:
    return _flag(row.enabled)


def _available(row: ToolRow, _now: datetime) -> Cell:
    return _flag(row.available, off_style="red")


def _bypass(row: ToolRow, _now: datetime) -> Cell:
    return _flag(row.bypass, on_style="cyan", off_style="dim")


def _calls(row: ToolRow, _now: datetime) -> Cell:
    return count_cell(row.calls)


def _errors(row: ToolRow, _now: datetime) -> Cell:
    return errors_cell(row.errors)


def _mean(row: ToolRow, _now: datetime) -> Cell:
    return millis_cell(row.mean_ms)


def _p95(row: ToolRow, _now: datetime) -> Cell:
    return millis_cell(row.p95_ms)


def _last(row: ToolRow, now: datetime) -> Cell:
    return (fmt.age_minutes(row.last_called, now), "" if row.last_called else "dim")


TOOL_COLUMNS: tuple[ColumnSpec[ToolRow], ...] = (
    ColumnSpec("name", "Tool", 16, _name, lambda r: r.name, "N"),
    ColumnSpec("enabled", "On", 3, _enabled, lambda r: not r.enabled, "O"),
    ColumnSpec("available", "Avail", 5, _available, lambda r: not r.available, "A"),
    ColumnSpec("bypass", "Bypass", 6, _bypass, lambda r: not r.bypass, "B"),
    ColumnSpec("calls", "Calls", 5, _calls, lambda r: r.calls, "C", "right", descending=True),
    ColumnSpec("errors", "Err", 4, _errors, lambda r: r.errors, "E", "right", descending=True),
    ColumnSpec("mean", "Mean", 5, _mean, lambda r: r.mean_ms, "M", "right", descending=True),
    ColumnSpec("p95", "p95", 5, _p95, lambda r: r.p95_ms, "P", "right", descending=True),
    ColumnSpec(
        "last",
        "Last",
        6,
        _last,
        lambda r: None if r.last_called is None else -r.last_called.timestamp(),
        "L",
        "right",
        clocked=True,
    ),
)


class ToolTable(LiveTable[ToolRow]):
    """Tools of one server, diffed by tool id."""

    COLUMNS = TOOL_COLUMNS
    UNIQUE_COLUMN_INDEX = 0
    FLEX_COLUMN = "name"
    REUSE_UNCHANGED: ClassVar[bool] = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Call tool", id="tool-enter", show=False),
    ]
    DEFAULT_CSS = """
    ToolTable {
        height: 1fr;
    }
    """
