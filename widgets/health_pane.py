"""The health of one server: its state and why, its process, its failures, its last stderr."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from widgets import formatting as fmt


@dataclass(frozen=True)
class HealthInfo:
    name: str
    status: str
    enabled: bool
    reason: str | None = None
    pid: int | None = None
    rss_bytes: int | None = None
    cpu_percent: float | None = None
    failures: int = 0
    max_failures: int = 3
    last_check: datetime | None = None
    last_latency_ms: float | None = None
    last_startup_error: str | None = None
    stderr_tail: Sequence[str] = field(default_factory=tuple)
    target: str = ""  # the command line or URL, so "which server is this" is never a question
    # The last hour's samples of the `resources` job, oldest first.
    rss_history: Sequence[float] = field(default_factory=tuple)
    cpu_history: Sequence[float] = field(default_factory=tuple)


SPARK_BARS = "▁▂▃▄▅▆▇█"
# Fits the side column (42 wide) beside the row's label and its peak.
HISTORY_WIDTH = 16


def sparkline(values: Sequence[float], width: int = HISTORY_WIDTH) -> str:
    """Values as bars from zero to their peak, newest on the right. More values than `width`
    are cut into `width` runs shown by their highest value, so a short spike is never lost."""
    if not values:
        return ""
    if len(values) > width:
        count = len(values)
        values = [
            max(values[count * index // width : count * (index + 1) // width])
            for index in range(width)
        ]
    peak = max(values)
    if peak <= 0:
        return SPARK_BARS[0] * len(values)
    top = len(SPARK_BARS) - 1
    return "".join(SPARK_BARS[round(max(value, 0) / peak * top)] for value in values)


def _history_row(values: Sequence[float], peak_text: str) -> Text:
    row = Text(sparkline(values), style="cyan", no_wrap=True, overflow="ellipsis")
    row.append(f" max {peak_text}", style="dim")
    return row


NOTE = re.compile(r"^\[tooldeck \d{4}-\d\d-\d\d (\d\d:\d\d:\d\d)\] ")


def short_note(line: str) -> str:
    """Tooldeck's own log notes without their date, so a narrow pane shows what happened."""
    return NOTE.sub(r"\1 ", line)


def health_renderable(info: HealthInfo, now: datetime, *, stderr_lines: int = 6) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    status = Text(fmt.STATUS_GLYPHS.get(info.status, "?") + " " + info.status)
    status.stylize(fmt.STATUS_STYLES.get(info.status, ""))
    if not info.enabled:
        status.append(" · ")
        status.append("disabled", style="bold yellow")
    grid.add_row("status", status)
    if info.reason:
        grid.add_row("why", Text(info.reason, style="yellow"))
    grid.add_row("target", Text(info.target or fmt.DASH, overflow="ellipsis", no_wrap=True))
    process = Text(f"pid {info.pid}" if info.pid else "no process")
    if info.rss_bytes is not None:
        process.append(f" · {info.rss_bytes / 2**20:.0f} MiB")
    if info.cpu_percent is not None:
        process.append(f" · {info.cpu_percent:.0f}% cpu")
    grid.add_row("process", process)
    # Two samples make a movement; one is the figure the process row already shows.
    if len(info.rss_history) > 1:
        peak = max(info.rss_history)
        grid.add_row("memory", _history_row(info.rss_history, f"{peak / 2**20:.0f} MiB"))
    if len(info.cpu_history) > 1:
        grid.add_row("cpu", _history_row(info.cpu_history, f"{max(info.cpu_history):.0f}%"))
    failures = Text(f"{info.failures} of {info.max_failures}")
    if info.failures:
        failures.stylize("bold red" if info.failures >= info.max_failures else "yellow")
    grid.add_row("failures", failures)
    check = Text(fmt.ago(info.last_check, now))
    if info.last_check is not None:
        check.append(" ago")
    if info.last_latency_ms is not None:
        check.append(f", {fmt.millis(info.last_latency_ms)}")
    grid.add_row("checked", check)
    if info.last_startup_error and info.status == "needs_login":
        # Not an error: what the person has to do.
        grid.add_row("login", Text(info.last_startup_error, style=fmt.STATUS_STYLES[info.status]))
    elif info.last_startup_error:
        grid.add_row("start err", Text(info.last_startup_error, style="red"))
    tail = [short_note(line) for line in list(info.stderr_tail)[-stderr_lines:]]
    if tail:
        grid.add_row(
            "stderr", Text("\n".join(tail), style="dim", no_wrap=True, overflow="ellipsis")
        )
    return grid


class HealthPane(Static):
    """Shows a `HealthInfo`; the title of its container names the server."""

    DEFAULT_CSS = """
    HealthPane {
        height: auto;
    }
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__("", id=id, classes=classes)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._shown: HealthInfo | None = None
        self._shown_at: str = ""

    def show(self, info: HealthInfo | None) -> None:
        if info is None:
            self._shown = None
            self.update(Text("No server selected.", style="dim"))
            return
        now = self._clock()
        # Relative times move with the clock, so the age is part of what decides a redraw.
        stamp = fmt.ago(info.last_check, now)
        if info == self._shown and stamp == self._shown_at:
            return
        # Only the age moved: the same lines, so no layout pass of the whole screen.
        moved_only = info == self._shown
        self._shown, self._shown_at = info, stamp
        self.update(health_renderable(info, now), layout=not moved_only)
