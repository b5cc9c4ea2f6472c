"""One tool call's usage row: built by the call path, queued by the recorder, stored by the writer.

The same object travels the whole way, so it is a slots dataclass: the call path pays for
building it on every call.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

# ok: the tool answered; error: it answered with an error, or failed on the way (a timeout, a
# lost connection); refused: Tooldeck never sent it (a disabled tool or server, bad arguments,
# an unknown tool or server, a server not running or too busy); cancelled: the caller gave up
# (the dashboard's esc, an MCP client's cancel) or a shutdown cut it short. Figures count only
# ok and error as calls, so refusals and cancels never pass for the tool's failures.
Outcome = Literal["ok", "error", "refused", "cancelled"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "error", "refused", "cancelled")
ANSWERED: tuple[Outcome, ...] = ("ok", "error")


@dataclass(slots=True)
class UsageRecord:
    """`called_at` is when the call started (aware UTC); `response_time_ms` is None when nothing
    was timed (a call refused before it was sent). The call path fills it in as it learns more
    (the server and tool ids once routed, the duration once answered), then hands it over."""

    server_id: str | None
    tool_id: str | None
    tool_name: str
    called_at: datetime
    response_time_ms: float | None
    success: bool
    error_message: str | None
    source: str | None
    client_name: str | None = None
    user_id: str | None = None
    conversation_id: str | None = None
    arguments: Any = None
    result: Any = None
    # None: ok or error, as `success` says.
    outcome: Outcome | None = None

    @property
    def settled_outcome(self) -> Outcome:
        if self.outcome is not None:
            return self.outcome
        return "ok" if self.success else "error"


USAGE_FIELDS: tuple[str, ...] = tuple(field.name for field in fields(UsageRecord))
