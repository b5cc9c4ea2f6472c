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
    hidden_marked: int = 0  # marked rows the filter hides (actions leave them alone)
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


# What stands behind the deck: a daemon it is attached to (`q` leaves the servers running), its
# own supervisor (`q` stops them), or only the stored state (nothing runs here).
LINK_LABELS = {
    "attached": ("attached to daemon", "daemon"),
    "supervising": ("supervising", "supervising"),
    "stored": ("no supervisor", "no supervisor"),
}
LINK_STYLES = {"attached": "bold cyan", "supervising": "bold green", "stored": "bold yellow"}
UNREACHABLE_STYLE = "bold white on red"


@dataclass(frozen=True)
class LinkState:
    mode: str = ""  # attached, supervising or stored; empty until the core is open
    where: str = ""  # the daemon's address when attached
    unreachable: bool = False

    def but(self, *, unreachable: bool) -> LinkState:
        return LinkState(mode=self.mode, where=self.where, unreachable=unreachable)


ALERT_STYLES = {"critical": "bold red", "warning": "bold yellow"}
FILTER_ROOM = 24


def alert_text(badge: AlertBadge) -> Text:
    noun = "alert" if badge.count == 1 else "alerts"
    style = ALERT_STYLES.get(badge.severity, "bold yellow")
    return Text(f"⚠ {badge.count} {noun}", style=style, end="")


def link_text(link: LinkState, *, compact: bool = False) -> Text:
    if link.unreachable:
        return Text(" daemon unreachable · retrying ", style=UNREACHABLE_STYLE, end="")
    if not link.mode:
        return Text("", end="")
    long, short = LINK_LABELS.get(link.mode, (link.mode, link.mode))
    return Text(short if compact else long, style=LINK_STYLES.get(link.mode, "bold"), end="")


def status_text(
    state: StatusState,
    *,
    compact: bool = False,
    alerts: AlertBadge | None = None,
    link: LinkState | None = None,
    width: int | None = None,
) -> Text:
    """The line; `compact` (under 100 columns) names only the current period.

    Within `width`, the screen's heading (a server's name, the counts) gives way first: the
    alert count and the mode label stay whole, at the right end where they are looked for.
    """
    head = Text(no_wrap=True, end="")
    head.append(" Tooldeck ", style="bold reverse")
    head.append("  ")
    if compact:
        head.append(f" {state.period} ", style="bold reverse")
    else:
        for index, period in enumerate(state.periods, start=1):
            if period == state.period:
                head.append(f" {index}:{period} ", style="bold reverse")
            else:
                head.append(f" {index}:{period} ", style="dim")
    head.append("  ")
    heading = Text(no_wrap=True, end="")
    if state.title:
        heading.append(state.title, style="bold")
    elif not state.connected:
        heading.append("opening…", style="italic")
    else:
        noun = "server" if state.total == 1 else "servers"
        heading.append(f"{state.total} {noun}", style="bold")
        for status in (
            "running",
            "degraded",
            "starting",
            "stopping",
            "error",
            "needs_login",
            "stopped",
        ):
            number = state.counts.get(status, 0)
            if number:
                heading.append("  ")
                heading.append(
                    f"{fmt.STATUS_GLYPHS[status]} {number}", style=fmt.STATUS_STYLES[status]
                )
    tail_parts: list[Text] = []
    if state.marked:
        hidden = f", {state.hidden_marked} hidden" if state.hidden_marked else ""
        tail_parts.append(Text(f" ✓ {state.marked} marked{hidden} ", style="bold reverse"))
    if state.filter_text:
        tail_parts.append(Text(f'/ "{fmt.truncate(state.filter_text, FILTER_ROOM)}"', style="bold"))
    if state.busy:
        tail_parts.append(Text(state.busy, style="italic"))
    if alerts is not None and alerts.count:
        tail_parts.append(alert_text(alerts))
    if link is not None and (link.mode or link.unreachable):
        tail_parts.append(link_text(link, compact=compact))
    if state.read_only:
        tail_parts.append(Text(" READ-ONLY ", style="bold reverse"))
    tail = Text("  ", end="").join(tail_parts)
    if tail_parts:
        tail = Text("  ", end="") + tail
    tail.append(" ")
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    text.append_text(head)
    if width is None:
        text.append_text(heading)
        text.append_text(tail)
        return text
    room = width - head.cell_len - tail.cell_len
    if room < heading.cell_len:
        heading.truncate(max(0, room), overflow="ellipsis")
    text.append_text(heading)
    text.append(" " * max(0, width - text.cell_len - tail.cell_len))
    text.append_text(tail)
    text.truncate(width, overflow="ellipsis")
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
        self.link: LinkState | None = None

    def on_mount(self) -> None:
        # The app keeps the open-alert count and the link; a bar mounted later starts from them.
        badge = getattr(self.app, "alert_badge", None)
        if isinstance(badge, AlertBadge):
            self.alerts = badge
        link = getattr(self.app, "link", None)
        if isinstance(link, LinkState):
            self.link = link

    def show_link(self, link: LinkState) -> None:
        if link != self.link:
            self.link = link
            self.refresh()

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
        width = self.size.width
        return status_text(
            self.state,
            compact=width < COMPACT_BELOW,
            alerts=self.alerts,
            link=self.link,
            width=width,
        )
