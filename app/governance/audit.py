"""The audit trail: who changed what, when, with the before and after of the changed fields.

An audit entry is a `server_events` row with `details` = {"before": {...}, "after": {...}}.
Reusing the event rows (rather than a table of their own) keeps one timeline: the event pane,
the uptime figures and the audit trail cannot disagree. Secret values (env and header values)
never reach a row: they are masked, and a changed secret is named in "secrets_changed".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from app.core.access import ON_BEHALF_OF
from app.core.events import EventKind
from app.core.schemas import MASK
from app.core.scrub import mask_args, mask_url
from storage.db import Database
from storage.models import ServerEvent, ToolServer

SECRET_FIELDS = ("env", "headers")
# Events that record a change of intent or an action; the rest (health, starting, ...) are
# observations and stay in the event pane only.
CHANGE_KINDS = frozenset(
    {
        EventKind.CREATED,
        EventKind.UPDATED,
        EventKind.DELETED,
        EventKind.ENABLED,
        EventKind.DISABLED,
        EventKind.TOOL_ENABLED,
        EventKind.TOOL_DISABLED,
        EventKind.TOOL_BYPASS,
        EventKind.LOGGED_IN,
        EventKind.LOGGED_OUT,
        EventKind.AUTO_DISABLED,
        EventKind.TOOL_AUTO_DISABLED,
        EventKind.RESTARTED,
        EventKind.LIMIT_EXCEEDED,
        EventKind.LIMITS_CHANGED,
        EventKind.ALERT_ACKED,
        EventKind.TOKEN_ADDED,
        EventKind.TOKEN_REVOKED,
        EventKind.ALERT_RULES_CHANGED,
    }
)
# Starts and stops are actions when a person asks for them; the supervisor's own are not.
PERSON_ONLY_KINDS = frozenset({EventKind.STARTING, EventKind.STOPPED})


def masked_value(field: str, value: Any) -> Any:
    if field in SECRET_FIELDS and isinstance(value, Mapping):
        return {key: MASK for key in value}
    if field == "url" and isinstance(value, str):
        return mask_url(value)
    if field == "args" and isinstance(value, list | tuple):
        return mask_args([str(arg) for arg in value])
    return value


def change_details(
    before: Mapping[str, Any], after: Mapping[str, Any], fields: Iterable[str] | None = None
) -> dict[str, Any]:
    """{"before", "after"} of the fields that differ, secrets masked and named when changed."""
    names = list(fields) if fields is not None else sorted(set(before) | set(after))
    changed = [name for name in names if before.get(name) != after.get(name)]
    details: dict[str, Any] = {
        "before": {name: masked_value(name, before.get(name)) for name in changed},
        "after": {name: masked_value(name, after.get(name)) for name in changed},
    }
    secrets = []
    for name in changed:
        if name not in SECRET_FIELDS:
            continue
        old, new = before.get(name) or {}, after.get(name) or {}
        secrets += [
            f"{name}.{key}" for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)
        ]
    if secrets:
        details["secrets_changed"] = secrets
    return details


def snapshot(row: Any, fields: Iterable[str]) -> dict[str, Any]:
    """The fields of a row as plain JSON-able values (lists and dicts copied)."""
    values: dict[str, Any] = {}
    for name in fields:
        value = getattr(row, name, None)
        if isinstance(value, dict):
            value = dict(value)
        elif isinstance(value, list):
            value = list(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        values[name] = value
    return values


def created_details(values: Mapping[str, Any]) -> dict[str, Any]:
    return {"before": None, "after": {key: masked_value(key, val) for key, val in values.items()}}


def deleted_details(values: Mapping[str, Any]) -> dict[str, Any]:
    return {"before": {key: masked_value(key, val) for key, val in values.items()}, "after": None}


async def audit_rows(
    db: Database,
    *,
    server_id: str | None = None,
    since: datetime | None = None,
    actor: str | None = None,
    limit: int = 500,
) -> list[tuple[ServerEvent, str | None]]:
    """Audit entries, newest first, with the server's name when it still exists."""
    kinds = [str(kind) for kind in CHANGE_KINDS]
    person_kinds = [str(kind) for kind in PERSON_ONLY_KINDS]
    query = (
        select(ServerEvent, ToolServer.name)
        .outerjoin(ToolServer, ToolServer.id == ServerEvent.server_id)
        .where(
            or_(
                ServerEvent.kind.in_(kinds),
                and_(ServerEvent.kind.in_(person_kinds), ServerEvent.actor != "system"),
            )
        )
    )
    if server_id is not None:
        query = query.where(ServerEvent.server_id == server_id)
    if since is not None:
        query = query.where(ServerEvent.created_at >= since)
    if actor is not None:
        # "admin on behalf of cli:alice" is the admin token's and alice's: either name finds it.
        query = query.where(
            or_(
                ServerEvent.actor == actor,
                ServerEvent.actor.startswith(actor + ON_BEHALF_OF, autoescape=True),
                ServerEvent.actor.endswith(ON_BEHALF_OF + actor, autoescape=True),
            )
        )
    query = query.order_by(ServerEvent.created_at.desc(), ServerEvent.id.desc()).limit(limit)
    async with db.read() as session:
        return [(event, name) for event, name in (await session.execute(query)).all()]
