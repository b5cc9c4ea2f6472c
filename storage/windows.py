"""Window planning: which rollup hours and which raw rows answer a usage question.

A window [start, end) is answered in two parts:
- its whole hours from the hourly rollups, whose running totals make any span of hours two index
  lookups per series, however long the window;
- its ragged edges (the part of an hour before the first whole hour, and after the last one when
  the window ends in the past) from the raw rows. Of the two ways to cover a partial first hour,
  the one reading fewer raw rows is taken: add the raw rows of the part inside the window, or
  take the whole hour from the rollups and subtract the raw rows of the part before it. So the
  start edge never reads more than half an hour of raw rows.
A window that ends now needs no raw rows at its end: the rollups of the current hour are written
with the raw rows, so they are complete up to now.

Rollups are kept past the raw-row retention; a window that starts before the retention horizon
starts at the whole hour (its raw edge may be gone), and the plan's `start` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.core.periods import DEFAULT_PERIOD, PERIODS
from storage.usage_math import as_utc, hour_of, hour_start

# How far back a window may start. The rollups are kept past the raw-row retention (without
# limit), so the bound is not the data but the work: a window of centuries cost seconds of CPU.
# Ten years is longer than any Tooldeck has kept rollups, and costs milliseconds.
MAX_HISTORY = timedelta(days=3660)


class WindowError(ValueError):
    """A window that cannot be answered; `field` names the bound it breaks."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownPeriod(ValueError):
    def __init__(self, period: str) -> None:
        super().__init__(f"unknown period {period!r}: use one of {', '.join(PERIODS)}")
        self.period = period


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    live: bool  # ends now: the newest rollup hour is complete up to the end


def make_window(
    period: str | None = DEFAULT_PERIOD,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    now: datetime,
) -> Window:
    """The window a request means: an explicit start and end, or the `period` up to `end`
    (default now). An end in the future is now: nothing is recorded there yet.

    Raises UnknownPeriod, or WindowError when start is not before end or either reaches
    further back than MAX_HISTORY."""
    period = period or DEFAULT_PERIOD
    if period not in PERIODS:
        raise UnknownPeriod(period)
    now = as_utc(now)
    earliest = now - MAX_HISTORY
    end = now if end is None else min(_utc(end, "end"), now)
    if end <= earliest:
        raise WindowError(f"end must be after {earliest:%Y-%m-%d} (ten years back)", "end")
    start = end - PERIODS[period].span if start is None else _utc(start, "start")
    if start >= end:
        raise WindowError("start must be before end (an end in the future counts as now)", "start")
    if start < earliest:
        raise WindowError(
            f"start must be on or after {earliest:%Y-%m-%d}: windows reach ten years back", "start"
        )
    return Window(start, end, live=end >= now)


def _utc(moment: datetime, field: str) -> datetime:
    try:
        return as_utc(moment)
    except OverflowError:  # 9999-12-31T23:59-05:00 is past the last UTC moment Python has
        raise WindowError(f"{field} is out of range", field) from None


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """How a window is answered: rollup hours [first_hour, end_hour), plus (sign 1) or minus
    (sign -1) the raw rows of each edge [low, high)."""

    start: datetime
    end: datetime
    first_hour: int
    end_hour: int
    live: bool
    edges: tuple[tuple[datetime, datetime, int], ...]


def ceil_hour(moment: datetime) -> int:
    hour = hour_of(moment)
    return hour if hour_start(hour) == moment else hour + 1


def plan_window(window: Window, raw_horizon: datetime) -> WindowPlan:
    start, end = window.start, window.end
    if start < raw_horizon:
        # The raw rows of a partial first hour may be pruned: start at the whole hour.
        start = hour_start(hour_of(start))
    first = ceil_hour(start)
    if window.live:
        last = hour_of(end) + 1
    else:
        last = hour_of(end)
        if end < raw_horizon and hour_start(last) != end:
            last += 1
            end = hour_start(last)
    edges: list[tuple[datetime, datetime, int]] = []
    if first >= last:
        # No whole hour inside: all of it from the raw rows, cut at the hour so that every edge
        # lies within one hour (and so within one day).
        stop = hour_start(last) if window.live else end
        cut = hour_start(first)
        if start < cut < stop:
            edges += [(start, cut, 1), (cut, stop, 1)]
        else:
            edges.append((start, stop, 1))
        first = last
    else:
        if start < hour_start(first):
            before = hour_start(first - 1)
            if start - before < hour_start(first) - start and before >= raw_horizon:
                first -= 1
                edges.append((before, start, -1))
            else:
                edges.append((start, hour_start(first), 1))
        # At the end only adding will do: the newest call of an hour taken whole could lie
        # after the end, and running totals do not say which one came before it.
        if not window.live and hour_start(last) < end:
            edges.append((hour_start(last), end, 1))
    return WindowPlan(start, end, first, last, window.live, tuple(edges))
