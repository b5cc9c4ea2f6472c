"""Alert rules on datasets built for each (and quiet on a normal one), dedup and cooldown,
delivery hooks against a real receiver and real commands, and the whole path from a server
killed until it is auto-disabled to one alert in the facade, the API, the CLI and a webhook."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from app.cli import main as cli_main
from app.core.errors import NotFound
from app.core.events import EventKind
from app.core.settings import Settings
from app.core.usage_record import UsageRecord
from app.faces.http.api import create_app
from app.governance.alerts import (
    RULE_ANOMALY,
    RULE_ERROR_RATE,
    RULE_HEALTH_FAILING,
    RULE_P95,
    RULE_SERVER_AUTO_DISABLED,
    RULE_SERVER_DOWN,
    RULE_TOOL_AUTO_DISABLED,
    AlertEngine,
    Finding,
    anomaly_findings,
    server_state_findings,
    window_usage_findings,
)
from app.ops.facade import LocalOperations
from app.runtime.usage import UsageRecorder
from storage.models import ServerEvent, ServerTool, ToolServer
from storage.usage_math import hour_of, hour_start
from tests.alert_helpers import webhook_receiver
from tests.runtime_helpers import eventually, fast_supervisor, scripted

PYTHON = sys.executable


def tuned(settings: Settings, **values: Any) -> Settings:
    return settings.model_copy(update=values)


def command(code: str) -> str:
    return shlex.join([PYTHON, "-c", code])


async def add_server(ops: LocalOperations, name: str, **fields: Any) -> str:
    server = await ops.create_server({"name": name, "command": "x"}, actor="test")
    if fields:
        async with ops.db.session() as session:
            row = await session.get(ToolServer, server.id)
            assert row is not None
            for key, value in fields.items():
                setattr(row, key, value)
    return server.id


async def add_tool(ops: LocalOperations, server_id: str, name: str) -> str:
    async with ops.db.session() as session:
        tool = ServerTool(server_id=server_id, name=name, enabled=True, is_available=True)
        session.add(tool)
        await session.flush()
        return tool.id


async def add_events(ops: LocalOperations, server_id: str, *events: tuple[str, datetime]) -> None:
    async with ops.db.session() as session:
        for kind, at in events:
            session.add(
                ServerEvent(
                    server_id=server_id, kind=kind, message=kind, actor="system", created_at=at
                )
            )


async def record(ops: LocalOperations, settings: Settings, calls: list[UsageRecord]) -> None:
    async with UsageRecorder(ops.db, settings) as recorder:
        for item in calls:
            recorder.record(item)


def call(server_id: str, tool_id: str, at: datetime, ms: float, ok: bool = True) -> UsageRecord:
    return UsageRecord(server_id, tool_id, "t", at, ms, ok, None if ok else "boom", "api")


def rules_of(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(finding.rule, finding.subject) for finding in findings}


# ---- each rule fires on its dataset and stays quiet on a normal one -----------------------------


async def test_server_state_rules(ops: LocalOperations, settings: Settings) -> None:
    now = datetime.now(UTC)
    settings = tuned(settings, alert_down_minutes=10, alert_health_failures=3)
    normal = await add_server(ops, "normal", status="running")
    await add_events(ops, normal, ("started", now - timedelta(hours=2)))
    disabled = await add_server(
        ops, "disabled", enabled=False, disabled_reason="auto-disabled after 3 failures: x"
    )
    await add_events(ops, disabled, ("auto_disabled", now - timedelta(minutes=1)))
    by_hand = await add_server(ops, "by-hand", enabled=False, disabled_reason="maintenance")
    down = await add_server(ops, "down", status="error")
    await add_events(
        ops,
        down,
        ("started", now - timedelta(hours=1)),
        ("crashed", now - timedelta(minutes=20)),
        ("start_failed", now - timedelta(minutes=5)),
    )
    briefly = await add_server(ops, "briefly", status="error")
    await add_events(
        ops, briefly, ("started", now - timedelta(hours=1)), ("crashed", now - timedelta(minutes=2))
    )
    stopped = await add_server(ops, "stopped", status="stopped")
    await add_events(
        ops, stopped, ("started", now - timedelta(hours=2)), ("stopped", now - timedelta(hours=1))
    )
    probes = await add_server(ops, "probes", status="running", consecutive_failures=3)
    await add_events(
        ops, probes, *(("health_failed", now - timedelta(seconds=s)) for s in (30, 20, 10))
    )
    crashes = await add_server(ops, "crashes", status="running", consecutive_failures=3)
    await add_events(ops, crashes, *(("crashed", now - timedelta(seconds=s)) for s in (30, 20, 10)))

    findings = await server_state_findings(ops.db, settings, now)
    assert rules_of(findings) == {
        (RULE_SERVER_AUTO_DISABLED, f"server:{disabled}"),
        (RULE_SERVER_DOWN, f"server:{down}"),
        (RULE_HEALTH_FAILING, f"server:{probes}"),
    }
    message = next(f.message for f in findings if f.rule == RULE_SERVER_DOWN)
    assert "down for 20 min" in message
    assert not {normal, by_hand, briefly, stopped, crashes} & {f.server_id for f in findings}


async def test_error_rate_and_p95_rules(ops: LocalOperations, settings: Settings) -> None:
    now = datetime.now(UTC)
    settings = tuned(
        settings,
        alert_window_minutes=15,
        alert_min_calls=10,
        alert_error_rate=0.5,
        alert_p95_ms=1000,
    )
    server = await add_server(ops, "alpha")
    failing, slow, fine, rare = [await add_tool(ops, server, name) for name in "abcd"]
    calls = []
    for i in range(20):
        at = now - timedelta(minutes=5, seconds=i)
        calls.append(call(server, failing, at, 20, ok=i >= 15))
        calls.append(call(server, slow, at, 3000 if i >= 2 else 10))
        calls.append(call(server, fine, at, 20, ok=i != 0))
        # Old failures and old slowness are outside the window.
        calls.append(call(server, fine, now - timedelta(hours=2), 9000, ok=False))
    calls += [call(server, rare, now - timedelta(minutes=1), 9000, ok=False) for _ in range(5)]
    await record(ops, settings, calls)

    findings = await window_usage_findings(ops.db, settings, now)
    assert rules_of(findings) == {
        (RULE_ERROR_RATE, f"tool:{failing}"),
        (RULE_P95, f"tool:{slow}"),
        (RULE_P95, f"server:{server}"),
    }
    error = next(f for f in findings if f.rule == RULE_ERROR_RATE)
    assert "15 of 20 calls failed" in error.message


async def test_usage_anomaly_rule_with_silence_and_spike(
    ops: LocalOperations, settings: Settings
) -> None:
    now = datetime.now(UTC)
    settings = tuned(
        settings, alert_anomaly_weeks=4, alert_anomaly_mads=5, alert_anomaly_min_calls=20
    )
    server = await add_server(ops, "alpha")
    names = ("steady", "silent", "spiky", "new", "quiet")
    steady, silent, spiky, new, quiet = [await add_tool(ops, server, name) for name in names]
    last_hour = hour_start(hour_of(now) - 1) + timedelta(minutes=10)
    plan = {
        # tool: (calls in the same hour of each past week, calls in the last hour)
        steady: ([50, 46, 55, 49], 52),
        silent: ([50, 46, 55, 49], 0),
        spiky: ([10, 12, 9, 11], 200),
        quiet: ([2, 0, 1, 3], 0),  # too few calls for "silent" to mean anything
    }
    calls = []
    for tool, (history, observed) in plan.items():
        for week, count in enumerate(history, start=1):
            at = last_hour - timedelta(weeks=week)
            calls += [call(server, tool, at + timedelta(seconds=i), 5) for i in range(count)]
        calls += [call(server, tool, last_hour + timedelta(seconds=i), 5) for i in range(observed)]
    # A tool first called last week: one week of history is not a baseline.
    calls += [call(server, new, last_hour - timedelta(weeks=1), 5) for _ in range(3)]
    calls += [call(server, new, last_hour + timedelta(seconds=i), 5) for i in range(300)]
    await record(ops, settings, calls)

    findings = await anomaly_findings(ops.db, settings, now)
    assert rules_of(findings) == {(RULE_ANOMALY, f"tool:{silent}"), (RULE_ANOMALY, f"tool:{spiky}")}
    messages = {f.tool_id: f.message for f in findings}
    assert "silent: 0 calls" in messages[silent]
    assert "far more calls than usual: 200 calls" in messages[spiky]


async def test_a_tool_failing_in_a_row_is_auto_disabled_with_an_event_and_an_alert(
    ops: LocalOperations, settings: Settings
) -> None:
    supervisor = fast_supervisor(ops)
    engine = AlertEngine(ops.db, settings)
    engine.watch(ops.changes)
    try:
        await ops.create_server(scripted("flaky"), actor="test")
        await ops.start_server("flaky", actor="test")
        await ops.set_tool_auto_disable("fail", 3, actor="cli:alice", server_ref="flaky")
        await ops.call_tool("flaky", "fail", {}, source="cli")
        await ops.call_tool("flaky", "echo", {"text": "ok"}, source="cli")  # another tool's success
        await ops.call_tool("flaky", "fail", {}, source="cli")
        await ops.call_tool("flaky", "echo", {"text": "ok"}, source="cli")
        assert (await ops.get_tool("fail", "flaky")).enabled
        await ops.call_tool("flaky", "fail", {}, source="cli")
        # The third failure in a row did it.
        tool = await ops.get_tool("fail", "flaky")
        assert not tool.enabled
        events = await ops.list_events("flaky", kind=EventKind.TOOL_AUTO_DISABLED)
        assert len(events) == 1 and "3 failed calls in a row" in events[0].message

        async def alerted() -> list[Any]:
            return [a for a in await ops.list_alerts() if a.rule == RULE_TOOL_AUTO_DISABLED]

        [alert] = await eventually(alerted, within=5)
        assert alert.tool_id == tool.id and "it broke" in alert.message
        # A person re-enables it: the reason goes, and the alert resolves.
        await ops.set_tool_enabled("fail", True, actor="cli:alice", server_ref="flaky")
        await engine.evaluate(state_only=True)
        assert await alerted() == []
    finally:
        await engine.close()
        await supervisor.shutdown()


# ---- dedup, cooldown, resolution ----------------------------------------------------------------


async def test_one_incident_is_one_alert_with_a_count_and_a_cooldown(
    ops: LocalOperations, settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "delivered.txt"
    hook = command(
        f"import sys, json; open({str(log)!r}, 'a').write(json.load(sys.stdin)['rule'] + '\\n')"
    )
    engine = AlertEngine(ops.db, tuned(settings, alert_command=hook, alert_cooldown_s=600))
    seen: list[int] = []
    engine.subscribe(lambda alert: seen.append(alert.id))
    t0 = datetime.now(UTC)
    finding = Finding("error_rate", "tool:x", "x is failing", occurrence="1")

    assert await engine.apply([finding], ["error_rate"], now=t0) == 1
    await engine.apply([finding], ["error_rate"], now=t0 + timedelta(seconds=60))
    [alert] = await ops.list_alerts()
    assert (alert.count, alert.status) == (1, "open")  # the same occurrence: no new count
    await engine.apply(
        [Finding("error_rate", "tool:x", "x is failing again", occurrence="2")],
        ["error_rate"],
        now=t0 + timedelta(seconds=120),
    )
    [alert] = await ops.list_alerts()
    assert (alert.count, alert.message) == (2, "x is failing again")

    # The condition clears: resolved. Back within the cooldown: the same alert reopens quietly.
    await engine.apply([], ["error_rate"], now=t0 + timedelta(seconds=180))
    assert await ops.list_alerts() == []
    [resolved] = await ops.list_alerts(include_resolved=True)
    assert resolved.status == "resolved" and resolved.resolved_at is not None
    await engine.apply([finding], ["error_rate"], now=t0 + timedelta(seconds=240))
    [alert] = await ops.list_alerts(include_resolved=True)
    assert (alert.id, alert.status, alert.count) == (resolved.id, "open", 3)

    # Rules not evaluated in a run are left alone.
    await engine.apply([], ["p95_latency"], now=t0 + timedelta(seconds=300))
    assert len(await ops.list_alerts()) == 1

    # Resolved, then back after the cooldown: a new alert, delivered again.
    await engine.apply([], ["error_rate"], now=t0 + timedelta(seconds=300))
    await engine.apply([finding], ["error_rate"], now=t0 + timedelta(seconds=1000))
    alerts = await ops.list_alerts(include_resolved=True)
    assert [a.status for a in alerts] == ["open", "resolved"]
    await engine.drain()
    assert log.read_text().splitlines() == ["error_rate", "error_rate"]
    assert seen == [alerts[1].id, alerts[0].id]
    assert "command ok" in ((await ops.list_alerts())[0].delivery or "")


async def test_ack_names_who_and_is_audited(ops: LocalOperations, settings: Settings) -> None:
    engine = AlertEngine(ops.db, settings)
    await engine.apply([Finding("server_down", "server:x", "x is down")], ["server_down"])
    [alert] = await ops.list_alerts()
    acked = await ops.ack_alert(alert.id, actor="cli:alice")
    assert acked.acknowledged_by == "cli:alice" and acked.acknowledged_at is not None
    again = await ops.ack_alert(alert.id, actor="cli:bob")
    assert again.acknowledged_by == "cli:alice"
    [entry] = await ops.list_audit(actor="cli:alice")
    assert entry.kind == "alert_acked"
    with pytest.raises(NotFound):
        await ops.ack_alert(9999, actor="cli:alice")


# ---- delivery hooks --------------------------------------------------------------------------


def payload() -> dict[str, Any]:
    return {"id": 1, "rule": "server_down", "message": "alpha is down"}


async def test_webhook_delivers_and_retries_a_failing_receiver(settings: Settings) -> None:
    from app.governance.alert_delivery import AlertDelivery

    with webhook_receiver(500, 200) as receiver:
        delivery = AlertDelivery(
            tuned(settings, alert_webhook_url=receiver.url, alert_hook_retries=2)
        )
        assert await delivery.deliver(payload()) == "webhook ok (attempt 2)"
        assert receiver.requests == 2 and receiver.bodies == [payload()]
    with webhook_receiver(500, 500, 500, 500) as receiver:
        delivery = AlertDelivery(
            tuned(settings, alert_webhook_url=receiver.url, alert_hook_retries=1)
        )
        assert await delivery.deliver(payload()) == "webhook failed: HTTP 500"
        assert receiver.requests == 2  # bounded: one try and one retry


async def test_a_hanging_webhook_times_out(settings: Settings) -> None:
    from app.governance.alert_delivery import AlertDelivery

    with webhook_receiver("hang", "hang") as receiver:
        receiver.hang_s = 3
        delivery = AlertDelivery(
            tuned(
                settings,
                alert_webhook_url=receiver.url,
                alert_hook_timeout_s=0.3,
                alert_hook_retries=1,
            )
        )
        # Had the limit not held, the receiver would have answered 200 after its hang.
        assert await delivery.deliver(payload()) == "webhook failed: timed out after 0.3 s"


async def test_commands_get_the_json_and_failing_or_hanging_ones_are_bounded(
    settings: Settings, tmp_path: Path
) -> None:
    from app.governance.alert_delivery import AlertDelivery

    out = tmp_path / "alert.json"
    ok = AlertDelivery(
        tuned(
            settings,
            alert_command=command(f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"),
        )
    )
    assert await ok.deliver(payload()) == "command ok"
    assert json.loads(out.read_text()) == payload()

    failing = AlertDelivery(
        tuned(
            settings,
            alert_command=command("import sys; print('no route', file=sys.stderr); sys.exit(3)"),
            alert_hook_retries=1,
        )
    )
    assert await failing.deliver(payload()) == "command failed: exit 3: no route"

    pid_file = tmp_path / "pid"
    hanging = AlertDelivery(
        tuned(
            settings,
            alert_command=command(
                f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                "time.sleep(60)"
            ),
            alert_hook_timeout_s=1.0,
            alert_hook_retries=0,
        )
    )
    assert await hanging.deliver(payload()) == "command failed: timed out after 1 s"
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped, not left behind


async def test_a_hanging_hook_blocks_nothing(
    ops: LocalOperations, settings: Settings, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    engine = AlertEngine(
        ops.db,
        tuned(
            settings,
            # The hook hangs until the test opens the gate (or for the hour of its timeout).
            alert_command=command(
                f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
            ),
            alert_hook_timeout_s=3600,
            alert_hook_retries=0,
        ),
    )
    try:
        await engine.apply([Finding("server_down", "server:a", "a is down")], ["server_down"])
        await engine.raise_alert(Finding("resource_limit", "server:b", "b is over its limit"))
        # Raised and recorded while both hooks still hang: evaluation did not wait for them.
        alerts = await ops.list_alerts()
        assert len(alerts) == 2 and all(alert.delivery is None for alert in alerts)
    finally:
        gate.touch()
    await engine.drain()
    assert all(alert.delivery == "command ok" for alert in await ops.list_alerts())


# ---- the whole path: killed until auto-disabled ----------------------------------------------


@pytest.fixture
async def api(ops: LocalOperations) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=create_app(ops, tokens=None)),
        base_url="http://127.0.0.1",
        # As the CLI sends it: a change without it is refused as cross-site.
        headers={"X-Tooldeck-Client": "test"},
    ) as client:
        yield client


async def test_killed_until_auto_disabled_is_one_alert_everywhere_delivered_once(
    ops: LocalOperations,
    settings: Settings,
    api: httpx2.AsyncClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    supervisor = fast_supervisor(ops, stable_after_s=30)
    with webhook_receiver() as receiver:
        engine = AlertEngine(ops.db, tuned(settings, alert_webhook_url=receiver.url))
        engine.watch(ops.changes)
        ops.alerts = engine
        try:
            await ops.create_server(scripted("victim", max_failures=3), actor="test")
            await ops.start_server("victim", actor="test")
            killed: set[int] = set()

            async def restarted() -> int:  # a process not killed yet, 0 while there is none
                info = await ops.runtime_info("victim")
                fresh = info.status == "running" and info.pid not in killed
                return (info.pid or 0) if fresh else 0

            for _ in range(3):
                pid = await eventually(restarted, within=15)
                killed.add(pid)
                os.kill(pid, signal.SIGKILL)

            async def disabled() -> bool:
                return not (await ops.get_server("victim")).enabled

            await eventually(disabled, within=15)

            async def alerts() -> list[Any]:
                return await ops.list_alerts()

            [alert] = await eventually(alerts, within=5)
            assert alert.rule == RULE_SERVER_AUTO_DISABLED and "victim" in alert.message
            await ops.evaluate_alerts()  # the scheduled evaluation finds the same incident
            await engine.drain()
            assert len(receiver.bodies) == 1
            assert receiver.bodies[0]["rule"] == RULE_SERVER_AUTO_DISABLED
            assert receiver.bodies[0]["server_name"] == "victim"

            listed = (await api.get("/api/v1/alerts")).json()
            assert [item["id"] for item in listed] == [alert.id]
            acked = await api.post(
                f"/api/v1/alerts/{alert.id}/ack", headers={"X-Tooldeck-Actor": "cli:ops"}
            )
            assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "cli:ops"
            assert (await api.post("/api/v1/alerts/999/ack")).status_code == 404
        finally:
            await engine.close()
            await supervisor.shutdown()
    await ops.db.dispose()
    code = await asyncio.to_thread(cli_main, ["alerts", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and [item["id"] for item in out] == [alert.id]
    code = await asyncio.to_thread(cli_main, ["audit", "--server", "victim"])
    text = capsys.readouterr().out
    assert code == 0 and "auto-disabled after 3 consecutive failures" in text and "system" in text


async def test_tool_answers_show_the_auto_disable_setting(ops: LocalOperations) -> None:
    server = await add_server(ops, "alpha")
    await add_tool(ops, server, "echo")
    tool = await ops.set_tool_auto_disable("echo", 4, actor="cli:alice", server_ref="alpha")
    assert (tool.auto_disable_after, tool.disabled_reason) == (4, None)
    assert (await ops.get_tool("echo", "alpha")).auto_disable_after == 4
    assert (await ops.set_tool_auto_disable(tool.id, None, actor="t")).auto_disable_after is None


async def test_closing_cancels_a_hung_delivery_after_a_grace(
    ops: LocalOperations, settings: Settings, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    hang = command(
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)"
    )
    # Were closing to wait for the hook's own timeout, it would wait an hour.
    engine = AlertEngine(ops.db, tuned(settings, alert_command=hang, alert_hook_timeout_s=3600))
    await engine.apply([Finding("server_down", "server:a", "a is down")], ["server_down"])
    await eventually(lambda: asyncio.sleep(0, pid_file.exists()), within=10)
    await engine.close(grace_s=0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


async def test_a_hook_failure_does_not_quote_the_hooks_secrets(settings: Settings) -> None:
    from app.governance.alert_delivery import AlertDelivery

    script = "import sys; print('refused token', sys.argv[1], file=sys.stderr); sys.exit(2)"
    leaky = AlertDelivery(
        tuned(
            settings,
            alert_command=f"{sys.executable} -c {shlex.quote(script)} tok-cmd-0123456789",
            alert_hook_retries=0,
        )
    )
    outcome = await leaky.deliver(payload())
    assert outcome.startswith("command failed: exit 2: refused token ")
    assert "tok-cmd-0123456789" not in outcome
