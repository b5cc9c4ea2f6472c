"""The arithmetic of usage figures, shared by the writer and the readers of the rollups.

A rollup is keyed by its hour (whole hours since 1970-01-01 UTC) and by its series (server,
tool id, tool name) or scope (a server, or everything). `Usage` is a set of calls' counts,
latency sum and latency histogram; usages merge by addition, and running totals subtract into
what happened in between, histograms included (see storage.latency for their buckets).

A call's time is stored as SQLite keeps it, as text that sorts like time: `sqlite_time` writes
it, `parse_sqlite_time` reads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HOUR_S = 3600
# The scope of every server together.
ALL_SCOPE = "*"
# The columns of a rollup row's running totals: everything up to the end of its hour. Calls,
# errors and times are of answered calls; refused and cancelled calls are counted apart.
RUNNING_COLUMNS = ("cum_calls", "cum_errors", "cum_timed", "cum_ms", "cum_refused", "cum_cancelled")
# An hourly tool row's own totals, in the same order.
OWN_COLUMNS = ("calls", "errors", "timed_calls", "total_ms", "refused", "cancelled")

# (server id, tool id, tool name), with '' for an unknown id.
SeriesKey = tuple[str, str, str]


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is UTC:
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def hour_of(moment: datetime) -> int:
    return int(as_utc(moment).timestamp() // HOUR_S)


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR_S, UTC)


def sqlite_time(moment: datetime) -> str:
    """A UTC time as SQLAlchemy's SQLite DateTime stores it ('2026-01-02 03:04:05.000006')."""
    return moment.isoformat(" ", "microseconds")[:26]


def parse_sqlite_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass(slots=True)
class Usage:
    """Counts, latency sum and latency histogram of a set of calls. Mergeable by addition.

    `calls` are answered calls (ok or error) and `errors` the tool errors among them; the
    latency, histogram and newest time are theirs. Refused and cancelled calls are only
    counted, apart."""

    calls: int = 0
    errors: int = 0
    timed: int = 0
    total_ms: float = 0.0
    last_called: datetime | None = None
    hist: dict[int, int] = field(default_factory=dict)
    refused: int = 0
    cancelled: int = 0

    @classmethod
    def of_running(cls, running: Sequence[Any], last_called: datetime | None = None) -> Usage:
        """From running totals in RUNNING_COLUMNS order."""
        calls, errors, timed, total_ms, refused, cancelled = running
        return cls(
            calls, errors, timed, total_ms, last_called, refused=refused, cancelled=cancelled
        )

    def add(self, other: Usage, *, sign: int = 1) -> None:
        self.calls += sign * other.calls
        self.errors += sign * other.errors
        self.timed += sign * other.timed
        self.total_ms += sign * other.total_ms
        self.refused += sign * other.refused
        self.cancelled += sign * other.cancelled
        if sign > 0 and other.last_called is not None:
            if self.last_called is None or other.last_called > self.last_called:
                self.last_called = other.last_called
        for index, count in other.hist.items():
            value = self.hist.get(index, 0) + sign * count
            if value:
                self.hist[index] = value
            else:
                del self.hist[index]

    def since(self, earlier: Usage) -> Usage:
        """Running totals now minus running totals then: what happened in between."""
        calls = self.calls - earlier.calls
        timed = self.timed - earlier.timed
        before = earlier.hist
        return Usage(
            calls,
            self.errors - earlier.errors,
            timed,
            # Zero, not the float residue of two large equal sums.
            self.total_ms - earlier.total_ms if timed else 0.0,
            # The newest call so far lies in between exactly when something happened in between.
            self.last_called if calls > 0 else None,
            {
                index: count - before.get(index, 0)
                for index, count in self.hist.items()
                if count != before.get(index, 0)
            }
            if before
            else dict(self.hist),
            self.refused - earlier.refused,
            self.cancelled - earlier.cancelled,
        )

    def copy(self) -> Usage:
        return Usage(
            self.calls,
            self.errors,
            self.timed,
            self.total_ms,
            self.last_called,
            dict(self.hist),
            self.refused,
            self.cancelled,
        )

    @property
    def avg_ms(self) -> float | None:
        return self.total_ms / self.timed if self.timed else None

    @property
    def success_rate(self) -> float | None:
        return (self.calls - self.errors) / self.calls if self.calls else None
