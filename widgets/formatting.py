"""Short, fixed-width renderings of numbers and times for table cells and panes.

Kept free of Textual so the same text appears in snapshots, the benchmark and the tests.
Every function takes `now` explicitly: the dashboard passes its own clock, which tests fix.
"""

from __future__ import annotations

import re
from datetime import datetime

DASH = "-"

# A light and a glyph per status: the glyph keeps the status readable without colour.
STATUS_GLYPHS: dict[str, str] = {
    "running": "●",
    "degraded": "◐",
    "starting": "◔",
    "stopping": "◑",
    "error": "✖",
    "needs_login": "⚿",
    "stopped": "○",
}
STATUS_STYLES: dict[str, str] = {
    "running": "bold green",
    "degraded": "bold yellow",
    "starting": "cyan",
    "stopping": "cyan",
    "error": "bold red",
    "needs_login": "bold magenta",
    "stopped": "dim",
}


def ago(moment: datetime | None, now: datetime) -> str:
    """An age such as 5s, 3m, 2h, 4d; "-" when there is none."""
    if moment is None:
        return DASH
    return duration(max(0.0, (now - moment).total_seconds()))


def age_minutes(moment: datetime | None, now: datetime) -> str:
    """An age to the minute (<1m, 7m, 2h05m, 3d04h), for table columns.

    A table of a thousand rows with ages in seconds would change every cell of the column on
    every refresh; to the minute, a refresh touches only the rows whose minute turned.
    """
    if moment is None:
        return DASH
    return duration_minutes(max(0.0, (now - moment).total_seconds()))


def duration_minutes(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 60:
        return "<1m"
    whole = int(seconds) // 60 * 60
    if whole < 3600:
        return f"{whole // 60}m"
    return duration(whole)


def duration(seconds: float | None) -> str:
    """A duration in its largest two units: 45s, 3m12s, 5h04m, 12d03h."""
    if seconds is None:
        return DASH
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def count(value: int | None) -> str:
    """A count in at most five characters: 999, 12.3k, 4.5M."""
    if value is None:
        return DASH
    if value < 10_000:
        return str(value)
    if value < 1_000_000:
        return f"{value / 1000:.1f}k"
    return f"{value / 1_000_000:.1f}M"


def percent(fraction: float | None) -> str:
    """A success rate: 100%, 99.5%, 7.1%."""
    if fraction is None:
        return DASH
    value = fraction * 100
    if value >= 99.95:
        return "100%"
    return f"{value:.1f}%"


def millis(value: float | None) -> str:
    """A latency: 3ms, 250ms, 1.2s, 65s."""
    if value is None:
        return DASH
    if value < 1:
        return "<1ms"
    if value < 1000:
        return f"{value:.0f}ms"
    if value < 10_000:
        return f"{value / 1000:.1f}s"
    return f"{value / 1000:.0f}s"


def byte_size(value: int | None) -> str:
    if value is None:
        return DASH
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}GiB"


def clock_time(moment: datetime | None, now: datetime) -> str:
    """A wall-clock time in the viewer's zone, with the date only when it is not today."""
    if moment is None:
        return DASH
    local = moment.astimezone(now.tzinfo)
    if local.date() == now.date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%b %d %H:%M")


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def truncate(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…"


# Where a name splits into words: the last word is kept whole when there is room for it.
NAME_SEPARATORS = re.compile(r"[-_./:]")


def truncate_middle(text: str, width: int) -> str:
    """`text` in `width` characters, an ellipsis standing for its middle when it is longer.

    Names often share their start (github-enterprise-production, -staging): the end tells
    them apart, so the last word is kept whole when at least three characters of the start
    fit beside it, and otherwise both ends are kept in equal parts.
    """
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    kept = width - 1
    words = NAME_SEPARATORS.split(text)
    last = words[-1]
    if len(words) > 1 and last and kept - len(last) >= 3:
        return text[: kept - len(last)] + "…" + last
    head = kept // 2
    return text[:head] + "…" + text[len(text) - (kept - head) :]
