"""What the app tells its screens: the core opened, the data changed, the period changed.

The app posts these to every screen on its stack; screens import them from here rather than
from the app, so the app can import its screens without the screens importing it back.
"""

from __future__ import annotations

from textual.message import Message


class CoreReady(Message):
    """The facade is open: screens may start reading."""


class DataChanged(Message):
    """The facade said servers, statuses or tools changed: read now, not at the next tick."""


class PeriodChanged(Message):
    def __init__(self, period: str) -> None:
        super().__init__()
        self.period = period
