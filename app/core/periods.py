"""The analysis periods: the spans a usage question may cover up to now, with how each is drawn.

Every face offers the same periods in the same order, and storage turns a period's name into its
window, so the list lives here alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    span: timedelta
    # Buckets of the analytics chart, so that each is a round span: 5 minutes, 1 hour,
    # 6 hours, 1 day, 2 days.
    chart_buckets: int


PERIODS: dict[str, Period] = {
    period.name: period
    for period in (
        Period("1h", timedelta(hours=1), chart_buckets=12),
        Period("24h", timedelta(hours=24), chart_buckets=24),
        Period("7d", timedelta(days=7), chart_buckets=28),
        Period("30d", timedelta(days=30), chart_buckets=30),
        Period("90d", timedelta(days=90), chart_buckets=45),
    )
}
PERIOD_NAMES: tuple[str, ...] = tuple(PERIODS)
DEFAULT_PERIOD = "24h"

# Buckets of a time series when the asker names none, and the most it may ask for.
DEFAULT_BUCKETS = 60
MAX_BUCKETS = 1000
