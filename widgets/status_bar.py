"""The top line: the period (always visible), server counts, open alerts, marks, filter, mode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

from app.core.periods import DEFAULT_PERIOD, PERIOD_NAMES
from widgets import formatting as fmt


@dataclass(frozen=True)
class StatusState:
    period: str = DEFAULT_PERIOD
    periods: Sequence[str] = PERIOD_NAMES
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    marked: int = 0
    filter_text: str = ""
    read_only: bool = False
    connected: bool = False
    busy: str = ""
    title: str = ""  # a screen's own heading, shown instead of the server counts


@dataclass(frozen=True)
class AlertBadge:
    """The open alerts, shown on every screen's status line: how many, and the worst severity."""

    count: int = 0
    severity: str = "warning"


ALERT_STYLES = {"critical": "bold red", "warning": "bold yellow"}


def alert_text(badge: AlertBadge) -> Text:
    noun = "alert" if badge.count == 1 else "alerts"
    style = ALERT_STYLES.get(badge.severity, "bold yellow")
    return Text(f"⚠ {badge.count} {noun}", style=style, end="")


def status_text(
    state: StatusState, *, compact: bool = False, alerts: AlertBadge | None = None
) -> Text:
    """The line; `compact` (under 100 columns) names only the current period."""
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    text.append(" Tooldeck ", style="bold reverse")
    text.append("  ")
    if compact:
        text.append(f" {state.period} ", style="bold reverse")
    else:
        for index, period in enumerate(state.periods, start=1):
            if period == state.period:
                text.append(f" {index}:{period} ", style="bold reverse")
            else:
                text.append(f" {index}:{period} ", style="dim")
    text.append("  ")
    if state.title:
        text.append(state.title, style="bold")
    elif not state.connected:
        text.append("opening…", style="italic")
    else:
        noun = "server" if state.total == 1 else "servers"
        text.append(f"{state.total} {noun}", style="bold")
        for status in ("running", "degraded", "starting", "stopping", "error", "stopped"):
            number = state.counts.get(status, 0)
            if number:
                text.append("  ")
                text.append(
                    f"{fmt.STATUS_GLYPHS[status]} {number}", style=fmt.STATUS_STYLES[status]
                )
    if alerts is not None and alerts.count:
        text.append("  ")
        text.append_text(alert_text(alerts))
    if state.marked:
        text.append("  ")
        text.append(f" ✓ {state.marked} marked ", style="bold reverse")
    if state.filter_text:
        text.append("  ")
        text.append(f'/ "{state.filter_text}"', style="bold")
    if state.busy:
        text.append("  ")
        text.append(state.busy, style="italic")
    if state.read_only:
        text.append("  ")
        text.append(" READ-ONLY ", style="bold reverse")
    return text


# Below this width the period keys are not all spelled out.
COMPACT_BELOW = 100


class StatusBar(Widget):
    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        width: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.state: StatusState | None = None
        self.alerts: AlertBadge | None = None

    def on_mount(self) -> None:
        # The app keeps the open-alert count; a bar mounted later starts from it.
        badge = getattr(self.app, "alert_badge", None)
        if isinstance(badge, AlertBadge):
            self.alerts = badge

    def show_alerts(self, badge: AlertBadge | None) -> None:
        if badge != self.alerts:
            self.alerts = badge
            self.refresh()

    def show(self, state: StatusState) -> None:
        if state != self.state:
            self.state = state
            self.refresh()

    def render(self) -> RenderResult:
        if self.state is None:
            return Text("")
        return status_text(self.state, compact=self.size.width < COMPACT_BELOW, alerts=self.alerts)
