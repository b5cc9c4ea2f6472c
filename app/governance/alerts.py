"""Alert rules, their evaluation, and the stored alerts.

Rules look at the database only (server rows, events, raw usage, hourly rollups), so the same
evaluation runs in the daemon, the dashboard, or once from the CLI. Each rule returns findings
(rule, subject, message); `AlertEngine.apply` turns them into stored alerts:

- one open alert per (rule, subject): a repeat updates it (and counts a new occurrence);
- a condition that clears resolves its alert;
- a condition back within the cooldown reopens its last alert quietly instead of a new one;
- only a new alert (or a new occurrence after the cooldown) is delivered to the hooks.

State rules (auto-disabled, down, health) also run at once when the change bus says a server or
tool changed, so an auto-disable is an alert within moments, not at the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import OperationalError

from app.core.changes import Change, ChangeBus
from app.core.events import EventKind
from app.core.schemas import AlertResponse
from app.core.settings import Settings
from app.core.usage_record import ANSWERED
from app.governance.alert_delivery import AlertDelivery
from storage.db import Database
from storage.latency import percentiles
from storage.models import (
    Alert,
    ServerEvent,
    ServerTool,
    ToolServer,
    ToolUsage,
    UsageSeries,
    UsageToolHourly,
)
from storage.usage_math import hour_of

logger = logging.getLogger(__name__)

UP_STATUSES = ("running", "degraded")
FAILURE_KINDS = (EventKind.CRASHED, EventKind.START_FAILED, EventKind.HEALTH_FAILED)
WEEK_HOURS = 168
# A MAD of zero (a perfectly regular tool) would make any change "infinitely" anomalous; counts
# vary like a Poisson process at least, so the spread is never taken below sqrt(median).
MAD_TO_SIGMA = 1.4826
CLOSE_GRACE_S = 3.0

RULE_SERVER_AUTO_DISABLED = "server_auto_disabled"
RULE_SERVER_DOWN = "server_down"
RULE_HEALTH_FAILING = "health_failing"
RULE_TOOL_AUTO_DISABLED = "tool_auto_disabled"
RULE_ERROR_RATE = "error_rate"
RULE_P95 = "p95_latency"
RULE_ANOMALY = "usage_anomaly"
RULE_RESOURCE_LIMIT = "resource_limit"
RULE_USAGE_NOT_WRITTEN = "usage_not_written"

STATE_RULES = (
    RULE_SERVER_AUTO_DISABLED,
    RULE_SERVER_DOWN,
    RULE_HEALTH_FAILING,
    RULE_TOOL_AUTO_DISABLED,
)
USAGE_RULES = (RULE_ERROR_RATE, RULE_P95, RULE_ANOMALY)
# Raised by the runtime when something happens (a limit restart), not found by evaluation;
# they resolve once they have not recurred for a cooldown.
PUSH_RULES = (RULE_RESOURCE_LIMIT,)
# Raised and resolved by the usage writer as its writes fail and work again (`usage_writes`).
WRITER_RULES = (RULE_USAGE_NOT_WRITTEN,)
ALL_RULES = STATE_RULES + USAGE_RULES + PUSH_RULES + WRITER_RULES


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Finding:
    rule: str
    subject: str
    message: str
    server_id: str | None = None
    tool_id: str | None = None
    severity: str = "warning"
    # What makes a repeat a new occurrence (an event id, an hour); None: the same incident.
    occurrence: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _unstored_alert(finding: Finding, now: datetime) -> AlertResponse:
    """An alert as it would be stored; id 0: it has none yet."""
    return AlertResponse(
        id=0,
        rule=finding.rule,
        subject=finding.subject,
        server_id=finding.server_id,
        tool_id=finding.tool_id,
        severity=finding.severity,
        message=finding.message,
        status="open",
        count=1,
        first_seen=now,
        last_seen=now,
        resolved_at=None,
        acknowledged_by=None,
        acknowledged_at=None,
        notified_at=None,
        delivery=None,
        details=finding.details or None,
    )


def alert_payload(alert: Alert, server_name: str | None = None) -> dict[str, Any]:
    data = AlertResponse.model_validate(alert).model_dump(mode="json")
    data["server_name"] = server_name
    return data


# ---- rules ------------------------------------------------------------------------------------


async def server_state_findings(db: Database, settings: Settings, now: datetime) -> list[Finding]:
    findings: list[Finding] = []
    async with db.read() as session:
        servers = (await session.execute(select(ToolServer))).scalars().all()
        for server in servers:
            if not server.enabled and (server.disabled_reason or "").startswith("auto-disabled"):
                last = await session.scalar(
                    select(func.max(ServerEvent.id)).where(
                        ServerEvent.server_id == server.id,
                        ServerEvent.kind == EventKind.AUTO_DISABLED,
                    )
                )
                findings.append(
                    Finding(
                        RULE_SERVER_AUTO_DISABLED,
                        f"server:{server.id}",
                        f"{server.name} was {server.disabled_reason}",
                        server_id=server.id,
                        severity="critical",
                        occurrence=str(last) if last else None,
                    )
                )
                continue
            if not server.enabled:
                continue
            down_since = None
            if server.status not in UP_STATUSES:
                down_since = await _down_since(session, server.id)
            if down_since is not None:
                minutes = (now - down_since).total_seconds() / 60
                if minutes >= settings.alert_down_minutes:
                    findings.append(
                        Finding(
                            RULE_SERVER_DOWN,
                            f"server:{server.id}",
                            f"{server.name} has been down for {minutes:.0f} min "
                            f"(limit {settings.alert_down_minutes:g} min)",
                            server_id=server.id,
                            severity="critical",
                            details={"down_since": down_since.isoformat()},
                        )
                    )
            failures = server.consecutive_failures or 0
            if failures >= settings.alert_health_failures:
                kinds = (
                    await session.execute(
                        select(ServerEvent.kind)
                        .where(
                            ServerEvent.server_id == server.id,
                            ServerEvent.kind.in_([str(kind) for kind in FAILURE_KINDS]),
                        )
                        .order_by(ServerEvent.id.desc())
                        .limit(failures)
                    )
                ).scalars()
                health = sum(1 for kind in kinds if kind == EventKind.HEALTH_FAILED)
                if health >= settings.alert_health_failures:
                    findings.append(
                        Finding(
                            RULE_HEALTH_FAILING,
                            f"server:{server.id}",
                            f"{server.name}: {health} health checks failed in a row",
                            server_id=server.id,
                        )
                    )
    return findings


async def _down_since(session: Any, server_id: str) -> datetime | None:
    """When the current outage began: the first failure after the last successful start.
    None when the server is not down because of a failure (a person stopped it)."""
    last_start = await session.scalar(
        select(func.max(ServerEvent.id)).where(
            ServerEvent.server_id == server_id, ServerEvent.kind == EventKind.STARTED
        )
    )
    query = select(ServerEvent.created_at).where(
        ServerEvent.server_id == server_id,
        ServerEvent.kind.in_([str(kind) for kind in FAILURE_KINDS]),
    )
    if last_start is not None:
        query = query.where(ServerEvent.id > last_start)
    return await session.scalar(query.order_by(ServerEvent.id).limit(1))


async def tool_state_findings(db: Database, settings: Settings, now: datetime) -> list[Finding]:
    query = (
        select(ServerTool, ToolServer.name)
        .join(ToolServer, ToolServer.id == ServerTool.server_id)
        .where(ServerTool.enabled.is_(False), ServerTool.disabled_reason.is_not(None))
    )
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [
        Finding(
            RULE_TOOL_AUTO_DISABLED,
            f"tool:{tool.id}",
            f"tool {tool.name} of {server_name} was {tool.disabled_reason}",
            server_id=tool.server_id,
            tool_id=tool.id,
            severity="critical",
        )
        for tool, server_name in rows
    ]


async def window_usage_findings(db: Database, settings: Settings, now: datetime) -> list[Finding]:
    """Error rate per tool and p95 per tool and per server over the last window (raw rows)."""
    start = now - timedelta(minutes=settings.alert_window_minutes)
    query = (
        select(
            ToolUsage.server_id,
            ToolUsage.tool_id,
            ToolUsage.tool_name,
            ToolUsage.outcome,
            ToolUsage.latency_bucket,
            func.count(),
        )
        # Refused and cancelled calls say nothing of a tool's health.
        .where(ToolUsage.called_at >= start, ToolUsage.called_at <= now)
        .where(ToolUsage.outcome.in_(ANSWERED))
        .group_by(
            ToolUsage.server_id,
            ToolUsage.tool_id,
            ToolUsage.tool_name,
            ToolUsage.outcome,
            ToolUsage.latency_bucket,
        )
    )
    async with db.read() as session:
        rows = (await session.execute(query)).all()
        names = dict((await session.execute(select(ToolServer.id, ToolServer.name))).all())
    calls: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    tool_hist: dict[tuple[str, str, str], dict[int, int]] = defaultdict(dict)
    server_hist: dict[str, dict[int, int]] = defaultdict(dict)
    for server_id, tool_id, tool_name, outcome, bucket, count in rows:
        key = (server_id or "", tool_id or "", tool_name)
        calls[key][0] += count
        if outcome == "error":
            calls[key][1] += count
        if bucket is not None:
            tool_hist[key][bucket] = tool_hist[key].get(bucket, 0) + count
            scope = server_hist[server_id or ""]
            scope[bucket] = scope.get(bucket, 0) + count
    window = f"{settings.alert_window_minutes:g} min"
    findings: list[Finding] = []
    for (server_id, tool_id, tool_name), (total, errors) in calls.items():
        server_name = names.get(server_id, "?")
        subject = f"tool:{tool_id or server_id + '/' + tool_name}"
        if total >= settings.alert_min_calls and errors / total > settings.alert_error_rate:
            findings.append(
                Finding(
                    RULE_ERROR_RATE,
                    subject,
                    f"{tool_name} of {server_name}: {errors} of {total} calls failed in the last "
                    f"{window} ({errors / total:.0%} > {settings.alert_error_rate:.0%})",
                    server_id=server_id or None,
                    tool_id=tool_id or None,
                    details={"calls": total, "errors": errors},
                )
            )
        hist = tool_hist.get((server_id, tool_id, tool_name), {})
        p95 = _p95(hist, settings)
        if p95 is not None:
            findings.append(
                Finding(
                    RULE_P95,
                    subject,
                    f"{tool_name} of {server_name}: p95 {p95:.0f} ms in the last {window} "
                    f"(> {settings.alert_p95_ms:g} ms)",
                    server_id=server_id or None,
                    tool_id=tool_id or None,
                    details={"p95_ms": round(p95, 1)},
                )
            )
    for server_id, hist in server_hist.items():
        p95 = _p95(hist, settings)
        if p95 is not None and server_id:
            findings.append(
                Finding(
                    RULE_P95,
                    f"server:{server_id}",
                    f"{names.get(server_id, '?')}: p95 {p95:.0f} ms over all its tools in the "
                    f"last {window} (> {settings.alert_p95_ms:g} ms)",
                    server_id=server_id,
                    details={"p95_ms": round(p95, 1)},
                )
            )
    return findings


def _p95(hist: dict[int, int], settings: Settings) -> float | None:
    if sum(hist.values()) < settings.alert_min_calls:
        return None
    value = percentiles(hist, [95])[95]
    return value if value is not None and value > settings.alert_p95_ms else None


async def anomaly_findings(db: Database, settings: Settings, now: datetime) -> list[Finding]:
    """Calls of each enabled tool in the last whole hour against the same hour of past weeks:
    median and MAD of those weeks, from the hourly rollups."""
    hour = hour_of(now) - 1
    weeks = settings.alert_anomaly_weeks
    baseline_hours = [hour - WEEK_HOURS * k for k in range(1, weeks + 1)]
    query = (
        select(UsageSeries.id, UsageSeries.tool_id, ServerTool.name, ToolServer.id, ToolServer.name)
        .join(ServerTool, ServerTool.id == UsageSeries.tool_id)
        .join(ToolServer, ToolServer.id == ServerTool.server_id)
        .where(ServerTool.enabled.is_(True), ToolServer.enabled.is_(True))
    )
    async with db.read() as session:
        series = (await session.execute(query)).all()
        if not series:
            return []
        ids = [row[0] for row in series]
        counts: dict[tuple[int, int], int] = {}
        firsts: dict[int, int] = {}
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            rows = await session.execute(
                select(
                    UsageToolHourly.series_id, UsageToolHourly.hour, UsageToolHourly.calls
                ).where(
                    UsageToolHourly.series_id.in_(chunk),
                    UsageToolHourly.hour.in_([hour, *baseline_hours]),
                )
            )
            counts.update({(sid, h): calls for sid, h, calls in rows})
            rows = await session.execute(
                select(UsageToolHourly.series_id, func.min(UsageToolHourly.hour))
                .where(UsageToolHourly.series_id.in_(chunk))
                .group_by(UsageToolHourly.series_id)
            )
            firsts.update(dict(rows.all()))
    findings: list[Finding] = []
    needed = max(2, weeks // 2)
    for series_id, tool_id, tool_name, server_id, server_name in series:
        first = firsts.get(series_id)
        if first is None:
            continue
        # Weeks before the tool was first called are not "zero calls": it did not exist yet.
        history = [counts.get((series_id, h), 0) for h in baseline_hours if h >= first]
        if len(history) < needed:
            continue
        observed = counts.get((series_id, hour), 0)
        median = statistics.median(history)
        mad = statistics.median(abs(value - median) for value in history)
        spread = max(MAD_TO_SIGMA * mad, median**0.5, 1.0)
        limit = settings.alert_anomaly_mads * spread
        what: str | None = None
        if observed > median + limit and observed >= settings.alert_anomaly_min_calls:
            what = "far more calls than usual"
        elif median >= settings.alert_anomaly_min_calls and observed < median - limit:
            what = "silent" if observed == 0 else "far fewer calls than usual"
        if what is None:
            continue
        findings.append(
            Finding(
                RULE_ANOMALY,
                f"tool:{tool_id}",
                f"{tool_name} of {server_name}: {what}: {observed} calls in the last hour, "
                f"usually {median:g} (median of {len(history)} weeks, MAD {mad:g})",
                server_id=server_id,
                tool_id=tool_id,
                occurrence=str(hour),
                details={"observed": observed, "median": median, "mad": mad, "hour": hour},
            )
        )
    return findings


RuleSet = Callable[[Database, Settings, datetime], Awaitable[list[Finding]]]
RULE_SETS: dict[RuleSet, tuple[str, ...]] = {
    server_state_findings: (RULE_SERVER_AUTO_DISABLED, RULE_SERVER_DOWN, RULE_HEALTH_FAILING),
    tool_state_findings: (RULE_TOOL_AUTO_DISABLED,),
    window_usage_findings: (RULE_ERROR_RATE, RULE_P95),
    anomaly_findings: (RULE_ANOMALY,),
}


# ---- the engine -------------------------------------------------------------------------------


AlertListener = Callable[[AlertResponse], None]


class AlertEngine:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.delivery = AlertDelivery(settings)
        self._deliveries: set[asyncio.Task[None]] = set()
        self._listeners: list[AlertListener] = []
        self._lock = asyncio.Lock()
        self._pending: asyncio.Task[None] | None = None
        self._again = False
        self._unsubscribe: Callable[[], None] | None = None
        # The usage writer's alert while the database will not store it either (the same full
        # disk, the same read-only data dir): listed and delivered from memory meanwhile,
        # stored by the next evaluation that can write.
        self._unstored: AlertResponse | None = None
        # What the usage writer last said is wrong (None: its writes work), and how many times
        # it has spoken: an evaluation that read an older state stores the newer one after it.
        self._writer_problem: str | None = None
        self._writer_said = 0

    # ---- wiring -------------------------------------------------------------------------------

    def subscribe(self, listener: AlertListener) -> Callable[[], None]:
        """Called with each new alert (the dashboard's notification). Must not block."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def watch(self, changes: ChangeBus) -> None:
        self._unsubscribe = changes.subscribe(self._on_change)

    def _on_change(self, change: Change, server_id: str | None) -> None:
        if change not in (Change.SERVERS, Change.TOOLS, Change.STATUS):
            return
        # A run in progress may have read the state before this change: it runs once more.
        self._again = True
        if self._pending is not None and not self._pending.done():
            return
        with suppress(RuntimeError):  # no running loop: nothing to schedule on
            self._pending = asyncio.get_running_loop().create_task(self._quietly_state())

    async def _quietly_state(self) -> None:
        while self._again:
            self._again = False
            await asyncio.sleep(0)  # let the publisher's transaction and siblings finish first
            try:
                await self.evaluate(state_only=True)
            except Exception:
                logger.exception("evaluating alerts after a change failed")

    async def close(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Stop watching; give deliveries in flight `grace_s` to finish, then cancel them
        (a hook command is killed with its process group), so a hung hook cannot hold up
        shutdown for its whole timeout and retries."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._pending is not None:
            self._pending.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._pending
        if self._deliveries:
            _done, late = await asyncio.wait(list(self._deliveries), timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def drain(self) -> None:
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    # ---- evaluation ---------------------------------------------------------------------------

    async def evaluate(self, *, state_only: bool = False, now: datetime | None = None) -> str:
        now = now or utcnow()
        said = self._writer_said
        findings: list[Finding] = self._writer_findings()
        evaluated: list[str] = list(WRITER_RULES)
        for rule_set, rules in RULE_SETS.items():
            if state_only and not set(rules) <= set(STATE_RULES):
                continue
            findings += await rule_set(self.db, self.settings, now)
            evaluated += rules
        opened = await self.apply(findings, evaluated, now=now)
        if self._writer_said == said:
            self._unstored = None
        else:  # the writer spoke meanwhile: what was just stored of its state is stale
            await self._store_writer_state()
        return f"{len(findings)} firing, {opened} new"

    # ---- the usage writer's state -------------------------------------------------------------

    def usage_writes(self, problem: str | None) -> None:
        """The usage writer's state (UsageRecorder.on_failing): what is wrong while its writes
        are refused, None once they work again. An alert is raised, then resolved."""
        self._writer_problem = problem
        self._writer_said += 1
        if problem is None:
            self._unstored = None
        with suppress(RuntimeError):  # no running loop: nothing to schedule on
            task = asyncio.get_running_loop().create_task(
                self._store_writer_state(), name="alert:usage-writes"
            )
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    def _writer_findings(self) -> list[Finding]:
        problem = self._writer_problem
        if problem is None:
            return []
        return [Finding(RULE_USAGE_NOT_WRITTEN, "usage", problem, severity="critical")]

    async def _store_writer_state(self) -> None:
        findings = self._writer_findings()
        try:
            await self.apply(findings, WRITER_RULES)
        except OperationalError as exc:
            if not findings:
                logger.error("resolving the alert on usage writes failed: %s", exc.orig)
                return
            [finding] = findings
            # The database refuses this write too: the alert lives in memory until it can be
            # stored, and goes out to the hooks and the dashboard now.
            logger.error("usage cannot be written, and neither can its alert: %s", exc.orig)
            first = self._unstored is None
            self._unstored = _unstored_alert(finding, utcnow())
            if first:
                self._announce(self._unstored)
            return
        if findings:
            self._unstored = None

    def unstored(self) -> list[AlertResponse]:
        """Open alerts not in the database yet (see `usage_writes`)."""
        return [self._unstored] if self._unstored is not None else []

    def _announce(self, alert: AlertResponse) -> None:
        if self.delivery.configured:
            payload = {**alert.model_dump(mode="json"), "server_name": None}
            task = asyncio.get_running_loop().create_task(
                self.delivery.deliver(payload), name="alert:unstored"
            )
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        for listener in list(self._listeners):
            try:
                listener(alert)
            except Exception:
                logger.exception("alert listener failed")

    async def raise_alert(self, finding: Finding, *, now: datetime | None = None) -> None:
        """An alert from the runtime itself (a limit restart): counted, never resolved here."""
        await self.apply([finding], [], now=now)

    async def apply(
        self, findings: Iterable[Finding], evaluated: Iterable[str], *, now: datetime | None = None
    ) -> int:
        now = now or utcnow()
        findings = list(findings)
        evaluated = list(evaluated)
        rules = set(evaluated) | {finding.rule for finding in findings}
        cooldown = timedelta(seconds=self.settings.alert_cooldown_s)
        notify: list[tuple[Alert, str | None]] = []
        new: list[Alert] = []
        async with self._lock, self.db.session() as session:
            rows = (
                await session.execute(
                    select(Alert)
                    .where(Alert.rule.in_(rules | set(PUSH_RULES)))
                    .where(
                        or_(
                            Alert.status == "open",
                            and_(Alert.status == "resolved", Alert.resolved_at >= now - cooldown),
                        )
                    )
                    .order_by(Alert.id)
                )
            ).scalars()
            open_alerts: dict[tuple[str, str], Alert] = {}
            recent: dict[tuple[str, str], Alert] = {}
            for row in rows:
                target = open_alerts if row.status == "open" else recent
                target[(row.rule, row.subject)] = row  # the newest wins
            names = dict((await session.execute(select(ToolServer.id, ToolServer.name))).all())
            seen: set[tuple[str, str]] = set()
            for finding in findings:
                key = (finding.rule, finding.subject)
                if key in seen:
                    continue
                seen.add(key)
                alert = open_alerts.get(key)
                if alert is None and key in recent:
                    alert = recent[key]
                    alert.status, alert.resolved_at = "open", None
                    alert.count += 1
                    alert.occurrence = finding.occurrence
                elif alert is not None:
                    repeat = finding.rule in PUSH_RULES or (
                        finding.occurrence is not None and finding.occurrence != alert.occurrence
                    )
                    if repeat:
                        alert.count += 1
                        alert.occurrence = finding.occurrence
                        if alert.notified_at is None or alert.notified_at < now - cooldown:
                            notify.append((alert, names.get(finding.server_id or "")))
                else:
                    alert = Alert(
                        rule=finding.rule,
                        subject=finding.subject,
                        server_id=finding.server_id,
                        tool_id=finding.tool_id,
                        severity=finding.severity,
                        count=1,
                        occurrence=finding.occurrence,
                        first_seen=now,
                        status="open",
                    )
                    session.add(alert)
                    notify.append((alert, names.get(finding.server_id or "")))
                    new.append(alert)
                alert.message = finding.message
                alert.last_seen = now
                alert.details = finding.details or None
            for key, alert in open_alerts.items():
                if key in seen:
                    continue
                cleared = alert.rule in evaluated
                stale = alert.rule in PUSH_RULES and alert.last_seen < now - cooldown
                if cleared or stale:
                    alert.status, alert.resolved_at = "resolved", now
            for alert, _name in notify:
                alert.notified_at = now
            await session.flush()
            payloads = [(alert.id, alert_payload(alert, name)) for alert, name in notify]
            fresh = [AlertResponse.model_validate(alert) for alert in new]
        for alert_id, payload in payloads:
            self._deliver(alert_id, payload)
        for response in fresh:
            for listener in list(self._listeners):
                try:
                    listener(response)
                except Exception:
                    logger.exception("alert listener failed")
        return len(fresh)

    # ---- delivery -----------------------------------------------------------------------------

    def _deliver(self, alert_id: int, payload: dict[str, Any]) -> None:
        if not self.delivery.configured:
            return
        task = asyncio.get_running_loop().create_task(
            self._deliver_one(alert_id, payload), name=f"alert:{alert_id}"
        )
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver_one(self, alert_id: int, payload: dict[str, Any]) -> None:
        outcome = await self.delivery.deliver(payload)
        try:
            async with self.db.session() as session:
                alert = await session.get(Alert, alert_id)
                if alert is not None:
                    alert.delivery = outcome
        except Exception:
            logger.exception("recording the delivery of alert %s failed", alert_id)
