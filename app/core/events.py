"""Event kinds. Every state change of a server is one `server_events` row of one of these kinds."""

from enum import StrEnum


class EventKind(StrEnum):
    # changes people make
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    ENABLED = "enabled"
    DISABLED = "disabled"
    TOOL_ENABLED = "tool_enabled"
    TOOL_DISABLED = "tool_disabled"
    TOOL_BYPASS = "tool_bypass"
    LOGGED_IN = "logged_in"
    LOGGED_OUT = "logged_out"
    # what the supervisor sees and does
    STARTING = "starting"
    STARTED = "started"
    START_FAILED = "start_failed"
    STOPPED = "stopped"
    CRASHED = "crashed"
    RESTARTED = "restarted"
    DEGRADED = "degraded"
    RECOVERED = "recovered"
    HEALTH_FAILED = "health_failed"
    AUTO_DISABLED = "auto_disabled"
    TOOLS_CHANGED = "tools_changed"
    TOOL_AUTO_DISABLED = "tool_auto_disabled"
    LIMIT_EXCEEDED = "limit_exceeded"
    LIMITS_CHANGED = "limits_changed"
    ALERT_ACKED = "alert_acked"
    LEFTOVERS_ENDED = "leftovers_ended"
    # system-wide
    JOB = "job"
    USAGE_DROPPED = "usage_dropped"
    TOKEN_ADDED = "token_added"
    TOKEN_REVOKED = "token_revoked"
    ALERT_RULES_CHANGED = "alert_rules_changed"


# Uptime is computed from these: a server is up from an UP event until the next DOWN event.
UP_EVENTS = frozenset({EventKind.STARTED})
DOWN_EVENTS = frozenset(
    {EventKind.STOPPED, EventKind.CRASHED, EventKind.START_FAILED, EventKind.AUTO_DISABLED}
)
