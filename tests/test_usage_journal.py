"""Usage survives: the write-ahead journal, and a database that refuses writes."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.core.settings import Settings
from app.core.usage_record import UsageRecord
from app.governance.alerts import RULE_USAGE_NOT_WRITTEN, AlertEngine
from app.ops.facade import LocalOperations
from app.runtime import usage as usage_module
from app.runtime.usage import UsageRecorder
from app.runtime.usage_journal import UsageJournal
from storage.models import ToolUsage
from storage.rollups import UsageWriter
from tests.test_usage import START, assert_rollups_match_rows, make_tools, usage


async def rows(ops: LocalOperations) -> int:
    async with ops.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(ToolUsage)) or 0)


def segments(journal: Path) -> list[Path]:
    return sorted(journal.glob("*.jsonl"))


async def test_calls_recorded_before_a_kill_are_written_at_the_next_start(
    ops: LocalOperations, settings: Settings, tmp_path: Path
) -> None:
    """A process killed before its flush: the next recorder on the data dir writes its calls."""
    tools = await make_tools(ops, 2)
    journal = tmp_path / "journal"
    killed = UsageRecorder(ops.db, settings, journal_dir=journal)
    await killed.start()
    for call in range(150):
        killed.record(usage(tools[call % 2], START + timedelta(seconds=call), 1.0 + call))
    # Killed here: nothing flushed (the writer waits for its interval), the queue dies with it.
    killed._task.cancel()  # type: ignore[union-attr]
    assert await rows(ops) == 0
    assert segments(journal)

    restarted = UsageRecorder(ops.db, settings, journal_dir=journal)
    await restarted.start()
    await restarted.stop()
    stats = restarted.stats()
    assert (stats.recovered, stats.written, stats.dropped) == (150, 150, 0)
    assert await rows(ops) == 150
    assert segments(journal) == []
    await assert_rollups_match_rows(ops.db)


async def test_calls_already_written_are_not_written_twice(
    ops: LocalOperations, settings: Settings, tmp_path: Path
) -> None:
    """Killed between a commit and the deletion of the journal segment that held the batch."""
    tools = await make_tools(ops, 1)
    journal = tmp_path / "journal"
    recorder = UsageRecorder(ops.db, settings, journal_dir=journal)
    for call in range(40):
        recorder.record(usage(tools[0], START + timedelta(seconds=call), 2.0))
    [segment] = segments(journal)
    left_behind = segment.read_bytes()
    await recorder.flush()
    assert await rows(ops) == 40 and not segment.exists()
    segment.write_bytes(left_behind)  # as if the kill came before the deletion
    with segment.open("ab") as file:
        file.write(b'{"server_id": "cut sh')  # and a line the kill cut short
    restarted = UsageRecorder(ops.db, settings, journal_dir=journal)
    await restarted.start()
    await restarted.stop()
    assert restarted.stats().recovered == 0
    assert await rows(ops) == 40
    assert segments(journal) == []


async def test_the_journal_keeps_payloads_only_when_they_are_stored(
    ops: LocalOperations, settings: Settings, tmp_path: Path
) -> None:
    tools = await make_tools(ops, 1)
    secret = {"password": "hunter2", "blob": "x" * 5000}
    quiet = UsageRecorder(ops.db, settings, journal_dir=tmp_path / "quiet")
    quiet.record(usage(tools[0], START, 1.0, arguments=secret, result={"ok": True}))
    line = json.loads(segments(tmp_path / "quiet")[0].read_text())
    assert line["arguments"] is None and line["result"] is None
    kept = settings.model_copy(update={"store_call_payloads": True, "payload_max_bytes": 1024})
    stored = UsageRecorder(ops.db, kept, journal_dir=tmp_path / "kept")
    stored.record(usage(tools[0], START, 1.0, arguments=secret, result={"ok": True}))
    line = json.loads(segments(tmp_path / "kept")[0].read_text())
    assert len(line["arguments"].encode()) <= 1024 and json.loads(line["arguments"])["truncated"]
    assert (tmp_path / "kept").stat().st_mode & 0o777 == 0o700
    assert segments(tmp_path / "kept")[0].stat().st_mode & 0o777 == 0o600
    await quiet.flush()
    await stored.flush()


async def test_a_journal_that_cannot_be_written_never_stops_a_call(
    ops: LocalOperations, settings: Settings, tmp_path: Path
) -> None:
    tools = await make_tools(ops, 1)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    recorder = UsageRecorder(ops.db, settings, journal_dir=blocked / "journal")
    await recorder.start()
    for call in range(20):
        recorder.record(usage(tools[0], START + timedelta(seconds=call), 1.0))
    await recorder.stop()
    stats = recorder.stats()
    assert (stats.written, stats.dropped) == (20, 0)
    assert stats.journal_failures > 0


async def test_calls_not_written_at_shutdown_wait_in_the_journal(
    ops: LocalOperations, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database refusing writes for the whole shutdown: the calls are kept, not lost."""
    tools = await make_tools(ops, 1)
    journal = tmp_path / "journal"
    monkeypatch.setattr(usage_module, "STOP_RETRY_S", 0.2)
    monkeypatch.setattr(usage_module, "RETRY_FIRST_S", 0.05)

    def refuse(self: UsageWriter, conn: object, rows: object) -> None:
        raise OperationalError("INSERT", {}, Exception("database or disk is full"))

    with monkeypatch.context() as patched:
        patched.setattr(UsageWriter, "write", refuse)
        recorder = UsageRecorder(ops.db, settings, journal_dir=journal)
        await recorder.start()
        for call in range(30):
            recorder.record(usage(tools[0], START + timedelta(seconds=call), 1.0))
        await recorder.stop()
    stats = recorder.stats()
    assert (stats.written, stats.kept, stats.dropped) == (0, 30, 0)
    restarted = UsageRecorder(ops.db, settings, journal_dir=journal)
    await restarted.start()
    await restarted.stop()
    assert await rows(ops) == 30


async def test_writes_refused_for_a_while_raise_an_alert_that_resolves(
    ops: LocalOperations, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls keep flowing while the database refuses; the alert is listed even though the
    database will not store it, is stored once it can be, and resolves when writes work."""
    tools = await make_tools(ops, 1)
    monkeypatch.setattr(usage_module, "FAILING_ALERT_AFTER_S", 0.0)
    monkeypatch.setattr(usage_module, "RETRY_FIRST_S", 0.01)
    monkeypatch.setattr(usage_module, "RETRY_MAX_S", 0.05)
    engine = AlertEngine(ops.db, settings)
    ops.alerts = engine
    raised = asyncio.Event()
    engine.subscribe(lambda _alert: raised.set())
    refusing = True
    original_write = UsageWriter.write
    original_apply = AlertEngine.apply

    def write(self: UsageWriter, conn: object, batch: object) -> None:
        if refusing:
            raise OperationalError("INSERT", {}, Exception("database or disk is full"))
        original_write(self, conn, batch)  # type: ignore[arg-type]

    async def apply(self: AlertEngine, *args: object, **kwargs: object) -> int:
        if refusing:  # the alert's own write fails on the same full disk
            raise OperationalError("INSERT", {}, Exception("database or disk is full"))
        return await original_apply(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(UsageWriter, "write", write)
    monkeypatch.setattr(AlertEngine, "apply", apply)
    recorder = UsageRecorder(ops.db, settings)
    recorder.on_failing = engine.usage_writes
    await recorder.start()
    for call in range(10):
        recorder.record(usage(tools[0], START + timedelta(seconds=call), 1.0))
    recorder._wake.set()
    async with asyncio.timeout(30):
        await raised.wait()
    [alert] = await ops.list_alerts()
    assert alert.rule == RULE_USAGE_NOT_WRITTEN and "database or disk is full" in alert.message
    assert recorder.stats().written == 0 and recorder.stats().queued == 10

    refusing = False
    await engine.evaluate()  # the next evaluation stores it
    # (Resolved already if the writer's retry got through meanwhile: stored all the same.)
    [stored] = await ops.list_alerts(include_resolved=True)
    assert stored.id > 0 and stored.rule == RULE_USAGE_NOT_WRITTEN
    await recorder.stop()
    await engine.drain()
    assert recorder.stats().written == 10
    assert await ops.list_alerts() == []  # resolved once writes worked
    await engine.close()


def test_a_record_reads_back_from_the_journal_as_it_was_written(tmp_path: Path) -> None:
    """Every field survives the line, non-ASCII text, payloads and an outcome included."""
    record = UsageRecord(
        server_id="s-1",
        tool_id="t-1",
        tool_name="éclair__echo",
        called_at=START + timedelta(microseconds=123456),
        response_time_ms=0.1 + 0.2,
        success=False,
        error_message="délai dépassé ✗",
        source="gateway",
        client_name="claude-code",
        arguments={"message": "héllo", "n": 3},
        result={"content": [{"type": "text", "text": "Echo: héllo"}]},
        outcome="error",
    )
    UsageJournal(tmp_path / "j", payload_max_bytes=4096).append(record)
    recovered = UsageJournal(tmp_path / "j", payload_max_bytes=4096).recover()
    assert recovered.records == [record]
