"""The facade's audit, alert, limit and trim operations.

A mixin of `app.ops.facade.LocalOperations`, kept in its own module so the facade's file stays
about servers, tools and calls. Every method here is one user-visible action, like the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import select

from app.core.alert_rules import (
    RULES,
    AlertRuleChanges,
    AlertRules,
    RuleProblem,
    check_rule,
    describe_rules,
    shown_value,
    update_config_file,
)
from app.core.changes import Change
from app.core.errors import Conflict, InvalidInput, NotFound, invalid_from_pydantic
from app.core.events import EventKind
from app.core.profiles import estimate_tokens
from app.core.schemas import (
    AlertResponse,
    AuditEntry,
    ServerLimitsResponse,
    ServerLimitsSpec,
    ServerToolResponse,
    TrimReport,
    TrimResult,
    TrimTool,
)
from app.core.settings import CONFIG_FILE_NAME
from app.governance.alert_delivery import AlertDelivery
from app.governance.audit import audit_rows, change_details
from app.ops.base import OpsBase, validated
from app.ops.gateway_port import catalogue_listing
from app.runtime.spawn_guard import account_rule_broken, check_account
from storage.models import Alert, ServerLimits, ServerTool, ToolServer
from storage.queries import add_event, find_server

if TYPE_CHECKING:
    from app.governance.alerts import AlertEngine

logger = logging.getLogger(__name__)

# The largest id SQLite's INTEGER PRIMARY KEY (and PostgreSQL's BIGINT) can hold.
MAX_ROW_ID = 2**63 - 1
SINCE_PATTERN = re.compile(r"^(\d+)\s*([mhdw])$")
SINCE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
LIMIT_FIELDS = tuple(ServerLimitsSpec.model_fields)
LOCAL_ONLY_FIELDS = (
    "max_rss_mb",
    "max_cpu_percent",
    "rlimit_as_mb",
    "rlimit_nofile",
    "rlimit_cpu_s",
    "run_as_user",
    "run_as_group",
)


def listing_tokens(tool: ServerTool) -> int:
    """The context a tool's entry in tools/list costs, estimated as a profile's tool list is."""
    listing = json.dumps(catalogue_listing(tool), separators=(",", ":"), ensure_ascii=False)
    return estimate_tokens(listing)


def parse_since(since: str | datetime | None, now: datetime | None = None) -> datetime | None:
    """'7d', '24h', '30m', '2w' before now, or an ISO 8601 time."""
    if since is None or isinstance(since, datetime):
        return since
    now = now or datetime.now(UTC)
    match = SINCE_PATTERN.match(since.strip().lower())
    if match:
        try:
            return now - timedelta(**{SINCE_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:
            raise InvalidInput(
                f"{since} goes back before the year 1: use a shorter duration", field="since"
            ) from None
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise InvalidInput(
            "use a duration such as 30m, 24h, 7d, 2w or an ISO 8601 time", field="since"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class AlertOperations(OpsBase):
    """Audit, alerts, limits and trim."""

    # Wired by app.ops.bootstrap.running_core; without it, evaluation runs on a one-off engine.
    alerts: AlertEngine | None = None

    # ---- audit ------------------------------------------------------------------------------

    async def list_audit(
        self,
        server_ref: str | None = None,
        *,
        since: str | None = None,
        actor: str | None = None,
        limit: int = 500,
    ) -> list[AuditEntry]:
        """Who changed what and when, newest first, with before/after (secrets masked)."""
        if not 1 <= limit <= 10_000:
            raise InvalidInput("use a number from 1 to 10000", field="limit")
        server_id = None
        if server_ref is not None:
            async with self.db.read() as session:
                server = await find_server(session, server_ref)
            if server is None:
                raise NotFound(f"no server {server_ref!r}")
            server_id = server.id
        rows = await audit_rows(
            self.db, server_id=server_id, since=parse_since(since), actor=actor, limit=limit
        )
        entries = []
        for event, server_name in rows:
            details = event.details or {}
            entries.append(
                AuditEntry(
                    id=event.id,
                    at=event.created_at,
                    actor=event.actor,
                    kind=event.kind,
                    server_id=event.server_id,
                    server_name=server_name,
                    message=event.message,
                    before=details.get("before"),
                    after=details.get("after"),
                    secrets_changed=details.get("secrets_changed", []),
                )
            )
        return entries

    # ---- alerts -----------------------------------------------------------------------------

    async def list_alerts(
        self, *, include_resolved: bool = False, limit: int = 200
    ) -> list[AlertResponse]:
        """Open alerts (all alerts with `include_resolved`), newest first."""
        if not 1 <= limit <= 10_000:
            raise InvalidInput("use a number from 1 to 10000", field="limit")
        query = select(Alert).order_by(Alert.last_seen.desc(), Alert.id.desc()).limit(limit)
        if not include_resolved:
            query = query.where(Alert.status == "open")
        async with self.db.read() as session:
            rows = (await session.execute(query)).scalars().all()
            stored = [AlertResponse.model_validate(row) for row in rows]
        # An alert the database would not store (the disk it is on is full) is open all the same.
        return (self.alerts.unstored() if self.alerts is not None else []) + stored

    async def ack_alert(self, alert_id: int, *, actor: str) -> AlertResponse:
        if not 0 < alert_id <= MAX_ROW_ID:
            # Beyond what an id column holds: the database could not even be asked.
            raise NotFound(f"no alert {alert_id}")
        async with self.db.session() as session:
            alert = await session.get(Alert, alert_id)
            if alert is None:
                raise NotFound(f"no alert {alert_id}")
            if alert.acknowledged_by is None:
                alert.acknowledged_by = actor
                alert.acknowledged_at = datetime.now(UTC)
                add_event(
                    session,
                    alert.server_id,
                    EventKind.ALERT_ACKED,
                    f"acknowledged alert {alert.id} ({alert.rule}): {alert.message}",
                    actor,
                    {"before": {"acknowledged_by": None}, "after": {"acknowledged_by": actor}},
                )
            await session.flush()
            return AlertResponse.model_validate(alert)

    async def evaluate_alerts(self) -> list[AlertResponse]:
        """Evaluate every rule now; the open alerts afterwards."""
        engine = self.alerts
        if engine is None:
            from app.governance.alerts import AlertEngine

            engine = AlertEngine(self.db, self.settings)
            await engine.evaluate()
            await engine.drain()
        else:
            await engine.evaluate()
        return await self.list_alerts()

    # ---- alert rules ------------------------------------------------------------------------

    async def alert_rules(self) -> AlertRules:
        """The alert thresholds and hooks, each with where its value came from."""
        return await asyncio.to_thread(describe_rules, self.settings)

    async def set_alert_rules(
        self, data: AlertRuleChanges | dict[str, Any], *, actor: str
    ) -> AlertRules:
        """Change alert rules in config.toml and in the running settings, all or none."""
        changes = validated(AlertRuleChanges, data).values
        current = {rule.name: rule for rule in (await self.alert_rules()).rules}
        chosen: dict[str, Any] = {}
        for name, given in changes.items():
            rule = current.get(name)
            if rule is None:
                raise InvalidInput(f"no alert rule {name!r}; the rules: {', '.join(RULES)}")
            if rule.secret and given is not None and given == rule.value:
                continue  # sent back as shown: masked, so unchanged
            try:
                value = check_rule(name, given)
            except RuleProblem as problem:
                raise InvalidInput(problem.message, field=name) from None
            if not rule.editable:
                if value == getattr(self.settings, name):
                    continue
                raise InvalidInput(
                    f"set by {rule.variable} ({rule.source}), which wins over config.toml",
                    field=name,
                )
            chosen[name] = value
        running = {
            name: value if value is not None else current[name].default
            for name, value in chosen.items()
        }
        changed = [name for name, value in running.items() if getattr(self.settings, name) != value]
        path = self.settings.data_dir / CONFIG_FILE_NAME
        try:
            await asyncio.to_thread(update_config_file, path, chosen)
        except (OSError, ValueError) as exc:
            # Nothing was replaced: the file is as it was, and so are the running rules.
            raise Conflict(f"cannot change {path}: {exc}") from None
        before = {name: shown_value(name, getattr(self.settings, name)) for name in changed}
        for name, value in running.items():
            setattr(self.settings, name, value)
        if self.alerts is not None and any(RULES[name].group == "hooks" for name in changed):
            self.alerts.delivery = AlertDelivery(self.settings)
        if changed:
            async with self.db.session() as session:
                add_event(
                    session,
                    None,
                    EventKind.ALERT_RULES_CHANGED,
                    f"changed alert rules: {', '.join(changed)}",
                    actor,
                    {
                        "before": before,
                        "after": {name: shown_value(name, running[name]) for name in changed},
                    },
                )
        return await self.alert_rules()

    # ---- resource limits --------------------------------------------------------------------

    async def get_server_limits(self, ref: str) -> ServerLimitsResponse:
        async with self.db.read() as session:
            server = await find_server(session, ref)
            if server is None:
                raise NotFound(f"no server {ref!r}")
            row = await session.get(ServerLimits, server.id)
            if row is None:
                return ServerLimitsResponse(server_id=server.id)
            return ServerLimitsResponse.model_validate(row)

    async def set_server_limits(
        self, ref: str, data: ServerLimitsSpec | dict[str, Any], *, actor: str
    ) -> ServerLimitsResponse:
        """Replace a stdio server's resource limits (None switches one off)."""
        try:
            spec = data if isinstance(data, ServerLimitsSpec) else ServerLimitsSpec(**data)
        except ValidationError as exc:
            raise invalid_from_pydantic(exc) from None
        except TypeError as exc:
            raise InvalidInput(str(exc)) from None
        async with self.db.session() as session:
            server = await find_server(session, ref)
            if server is None:
                raise NotFound(f"no server {ref!r}")
            local = [name for name in LOCAL_ONLY_FIELDS if getattr(spec, name) is not None]
            if server.transport != "stdio" and local:
                raise InvalidInput(
                    f"{', '.join(local)}: only for stdio servers (local processes)",
                    field=local[0],
                )
            broken = account_rule_broken(spec.run_as_user, spec.run_as_group)
            if broken is not None:
                field = "run_as_group" if spec.run_as_user is None else "run_as_user"
                raise InvalidInput(broken, field=field)
            why = check_account(spec.run_as_user, spec.run_as_group)
            if why is not None:
                raise Conflict(f"cannot run {server.name} as another account: {why}")
            row = await session.get(ServerLimits, server.id)
            before = ServerLimitsSpec().model_dump()
            if row is None:
                row = ServerLimits(server_id=server.id)
                session.add(row)
            else:
                before = {name: getattr(row, name) for name in LIMIT_FIELDS}
            after = spec.model_dump()
            for name, value in after.items():
                setattr(row, name, value)
            details = change_details(before, after, LIMIT_FIELDS)
            if details["after"]:
                changed = ", ".join(details["after"])
                add_event(
                    session,
                    server.id,
                    EventKind.LIMITS_CHANGED,
                    f"changed limits of {server.name}: {changed}",
                    actor,
                    details,
                )
            await session.flush()
            response = ServerLimitsResponse.model_validate(row)
        gates = getattr(self.runtime, "call_gates", None)
        if gates is not None:
            gates.configure(server.id, spec.max_concurrent_calls, spec.max_queued_calls)
        return response

    # ---- per-tool auto-disable --------------------------------------------------------------

    async def set_tool_auto_disable(
        self, ref: str, after: int | None, *, actor: str, server_ref: str | None = None
    ) -> ServerToolResponse:
        """Disable a tool on its own after `after` failed calls in a row (None: never)."""
        if after is not None and not 1 <= after <= 1000:
            raise InvalidInput("use a number from 1 to 1000, or none", field="after")
        async with self.db.session() as session:
            tool = await self._tool(session, ref, server_ref)  # type: ignore[attr-defined]
            server = await session.get(ToolServer, tool.server_id)
            if tool.auto_disable_after != after:
                details = {
                    "tool": tool.name,
                    "before": {"auto_disable_after": tool.auto_disable_after},
                    "after": {"auto_disable_after": after},
                }
                tool.auto_disable_after = after
                what = f"after {after} failed calls" if after else "never"
                add_event(
                    session,
                    tool.server_id,
                    EventKind.UPDATED,
                    f"tool {tool.name} auto-disables {what}",
                    actor,
                    details,
                )
            await session.flush()
            response = ServerToolResponse.model_validate(tool)
            response.server_name = server.name if server else None
        self._tool_failures().pop(response.id, None)
        self.changes.publish(Change.TOOLS, response.server_id)
        return response

    def _tool_failures(self) -> dict[str, int]:
        failures: dict[str, int] | None = self.__dict__.get("_tool_failure_counts")
        if failures is None:
            failures = self.__dict__["_tool_failure_counts"] = {}
        return failures

    async def _tool_outcome(self, tool: ServerTool, *, failed: bool, error: str | None) -> None:
        """Count a tool's failed calls in a row; at its `auto_disable_after`, disable it."""
        failures = self._tool_failures()
        threshold = tool.auto_disable_after
        if threshold is None or not failed:
            failures.pop(tool.id, None)
            return
        count = failures[tool.id] = failures.get(tool.id, 0) + 1
        if count < threshold:
            return
        failures.pop(tool.id, None)
        reason = f"auto-disabled after {count} failed calls in a row: {error or 'error'}"
        async with self.db.session() as session:
            row = await session.get(ServerTool, tool.id)
            if row is None or not row.enabled:
                return
            row.enabled = False
            row.disabled_reason = reason
            add_event(
                session,
                row.server_id,
                EventKind.TOOL_AUTO_DISABLED,
                f"tool {row.name} {reason}",
                "system",
                {
                    "tool": row.name,
                    "before": {"enabled": True, "disabled_reason": None},
                    "after": {"enabled": False, "disabled_reason": reason},
                },
            )
        self.changes.publish(Change.TOOLS, tool.server_id)

    # ---- trim suggestions -------------------------------------------------------------------

    async def trim_suggestions(self, days: int = 30, end: datetime | None = None) -> TrimReport:
        if not 1 <= days <= 3650:
            raise InvalidInput("use a number of days from 1 to 3650", field="days")
        from app.governance.trim import trim_report

        await self._flush_usage()  # type: ignore[attr-defined]
        return await trim_report(self.db, days, now=end, cost=listing_tokens)

    async def disable_unused_tools(self, days: int = 30, *, actor: str) -> TrimResult:
        """Disable every tool `trim_suggestions(days)` names (the caller confirmed the list)."""
        report = await self.trim_suggestions(days)
        disabled: list[TrimTool] = []
        for server in report.servers:
            for tool in server.tools:
                try:
                    await self.set_tool_enabled(tool.tool_id, False, actor=actor)  # type: ignore[attr-defined]
                except NotFound:
                    continue  # deleted meanwhile: nothing left to disable
                disabled.append(tool)
        return TrimResult(disabled=len(disabled), tools=disabled)
