"""The live server table: one row per server, a status light, usage for the chosen period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from textual.binding import Binding, BindingType

from widgets import formatting as fmt
from widgets.live_table import Cell, ColumnSpec, LiveTable, count_cell, errors_cell, millis_cell

# Sorting by status puts the servers that need attention first.
STATUS_RANK = {
    "error": 0,
    "needs_login": 1,
    "degraded": 2,
    "starting": 3,
    "stopping": 4,
    "running": 5,
    "stopped": 6,
}


@dataclass(frozen=True)
class ServerRow:
    key: str
    name: str
    status: str
    enabled: bool
    tools_enabled: int
    tools_total: int
    calls: int | None = None
    errors: int | None = None
    success_rate: float | None = None
    p95_ms: float | None = None
    last_health_check: datetime | None = None
    up_since: datetime | None = None
    disabled_reason: str | None = None
    display_name: str | None = None
    description: str | None = None
    is_builtin: bool = False

    @property
    def search_text(self) -> str:
        parts = (self.name, self.display_name or "", self.description or "", self.status)
        return " ".join(parts).lower()

    @property
    def up_since_if_up(self) -> datetime | None:
        return self.up_since if self.status in ("running", "degraded") else None

    def uptime_seconds(self, now: datetime) -> float | None:
        since = self.up_since_if_up
        return None if since is None else max(0.0, (now - since).total_seconds())


def _age_key(moment: datetime | None) -> float | None:
    # Ascending by age: the most recent moment first.
    return None if moment is None else -moment.timestamp()


def _light(row: ServerRow, _now: datetime) -> Cell:
    return (" " + fmt.STATUS_GLYPHS.get(row.status, "?"), fmt.STATUS_STYLES.get(row.status, ""))


def _name(row: ServerRow, _now: datetime) -> Cell:
    return (row.name, "" if row.enabled else "dim")


def _enabled(row: ServerRow, _now: datetime) -> Cell:
    if row.enabled:
        return ("on", "green")
    return ("off", "bold yellow" if row.disabled_reason else "yellow")


def _tools(row: ServerRow, _now: datetime) -> Cell:
    style = "yellow" if row.tools_enabled < row.tools_total else ""
    return (f"{row.tools_enabled}/{row.tools_total}", style)


def _calls(row: ServerRow, _now: datetime) -> Cell:
    return count_cell(row.calls)


def _errors(row: ServerRow, _now: datetime) -> Cell:
    return errors_cell(row.errors)


def _success(row: ServerRow, _now: datetime) -> Cell:
    rate = row.success_rate
    if rate is None:
        return (fmt.DASH, "dim")
    style = "green" if rate >= 0.99 else "yellow" if rate >= 0.9 else "red"
    return (fmt.percent(rate), style)


def _p95(row: ServerRow, _now: datetime) -> Cell:
    return millis_cell(row.p95_ms)


def _checked(row: ServerRow, now: datetime) -> Cell:
    return (fmt.age_minutes(row.last_health_check, now), "" if row.last_health_check else "dim")


def _uptime(row: ServerRow, now: datetime) -> Cell:
    seconds = row.uptime_seconds(now)
    return (fmt.duration_minutes(seconds), "" if seconds is not None else "dim")


SERVER_COLUMNS: tuple[ColumnSpec[ServerRow], ...] = (
    ColumnSpec("light", "", 2, _light, lambda r: STATUS_RANK.get(r.status, 9), "S"),
    ColumnSpec("name", "Name", 15, _name, lambda r: r.name, "N"),
    ColumnSpec("enabled", "On", 3, _enabled, lambda r: (not r.enabled, r.name), "O"),
    ColumnSpec("tools", "Tools", 5, _tools, lambda r: r.tools_total, "T", "right", descending=True),
    ColumnSpec("calls", "Calls", 5, _calls, lambda r: r.calls, "C", "right", descending=True),
    ColumnSpec("errors", "Err", 4, _errors, lambda r: r.errors, "E", "right", descending=True),
    ColumnSpec("success", "OK%", 5, _success, lambda r: r.success_rate, "R", "right"),
    ColumnSpec("p95", "p95", 5, _p95, lambda r: r.p95_ms, "P", "right", descending=True),
    ColumnSpec(
        "checked",
        "Check",
        6,
        _checked,
        lambda r: _age_key(r.last_health_check),
        "H",
        "right",
        clocked=True,
    ),
    ColumnSpec(
        "uptime",
        "Up",
        6,
        _uptime,
        lambda r: _age_key(r.up_since_if_up),
        "U",
        "right",
        clocked=True,
    ),
)


class ServerTable(LiveTable[ServerRow]):
    """Servers, diffed by id on every refresh; `space` marks rows for bulk actions."""

    COLUMNS = SERVER_COLUMNS
    MARKABLE: ClassVar[bool] = True
    REUSE_UNCHANGED: ClassVar[bool] = True
    FLEX_COLUMN = "name"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Details", id="server-details", show=False),
    ]
    DEFAULT_CSS = """
    ServerTable {
        height: 1fr;
    }
    """
