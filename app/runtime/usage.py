"""The usage recorder: the call path only enqueues; a writer flushes in batches.

`record()` never waits: it appends to a bounded in-memory queue. A writer task flushes when
`usage_batch_size` records are waiting or `usage_flush_interval_s` has passed; each batch is one
transaction that also updates the hourly rollups and the tools' counters (storage.rollups). The
batch is written on a thread of its own with its own synchronous connection, so the work of a
large batch never stalls the event loop.

A full queue (a burst outrunning the database for longer than the queue lasts) drops the new
record, never silently: `stats().dropped` counts it, a warning is logged (at most every 10 s,
with the count), and once writing resumes a `usage_dropped` event row says how many were lost.
Waiting for room instead would turn a slow disk into slow tool calls, and the design promises
that recording never blocks a call.

`stop()` writes everything, including records that arrive while it drains.

Given a journal directory (the running core gives `<data dir>/usage-journal`), every record is
also appended to a write-ahead file as it is taken (app.runtime.usage_journal): a SIGKILL then
loses no call, where it lost up to one flush interval (0.5 s by default) of them. What a killed
process left is written first at the next start.

A database that refuses writes (locked by another process, a full disk, a read-only data dir)
never stops the calls: the batch is retried with backoff (up to 5 s apart), calls keep being
queued (and journaled, if the journal can be written), and after `FAILING_ALERT_AFTER_S` of
refusals `on_failing` is told, which raises an alert; it is told again (None) once writes work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from sqlalchemy import Connection, insert, select

from app.core.events import EventKind
from app.core.settings import Settings
from app.core.usage_record import UsageRecord
from app.runtime.usage_journal import UNJOURNALED, UsageJournal
from storage.db import Database, ThreadWriter, carried_through, is_transient
from storage.models import ServerEvent, ToolUsage
from storage.rollups import UsageWriter
from storage.usage_math import as_utc

logger = logging.getLogger(__name__)

# One transaction writes at most this many rows, so a backlog is written in steps that leave
# the database to other writers in between (about half a second each on a slow disk).
MAX_TRANSACTION_ROWS = 20_000
DROP_WARNING_EVERY_S = 10.0
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0
# How long stop() keeps retrying a database that refuses writes before giving up on the rest.
STOP_RETRY_S = 10.0
# A batch touches a thousand hot index and rollup pages; a larger cache keeps them in memory.
WRITER_CACHE_KIB = 65_536
# Writes refused this long in a row raise an alert: longer than a busy timeout, so a moment of
# contention says nothing, short enough that a full disk is known within the minute.
FAILING_ALERT_AFTER_S = 10.0

# A queued record and the journal segment that holds it (UNJOURNALED when none does).
Queued = tuple[UsageRecord, int]


@dataclass(frozen=True, slots=True)
class RecorderStats:
    accepted: int  # records taken by record()
    written: int  # records committed to the database
    dropped: int  # records lost: queue full, recorder stopped, or a batch that could not be written
    queued: int  # records waiting now
    flushes: int  # transactions committed
    failures: int  # failed write attempts (retried)
    last_error: str | None
    recovered: int = 0  # records a killed process left in the journal, written at this start
    kept: int = 0  # records not written at shutdown but kept in the journal for the next start
    journal_failures: int = 0  # appends or deletions the journal could not make


class UsageRecorder:
    """Takes usage records without waiting and writes them in batches. See the module doc."""

    def __init__(
        self, db: Database, settings: Settings, *, journal_dir: Path | None = None
    ) -> None:
        self.db = db
        self._batch_size = settings.usage_batch_size
        self._interval = settings.usage_flush_interval_s
        self._queue_max = settings.usage_queue_max
        payload_cap = settings.payload_max_bytes if settings.store_call_payloads else None
        self._writer = UsageWriter(payload_max_bytes=payload_cap)
        self._journal = (
            UsageJournal(journal_dir, payload_max_bytes=payload_cap) if journal_dir else None
        )
        # Told (with a message) when writes have been refused for a while, and (None) when they
        # work again.
        self.on_failing: Callable[[str | None], None] | None = None
        self._failing_since: float | None = None
        self._failing_told = False
        self._queue: deque[Queued] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._engine: ThreadWriter | None = None
        self._stopping = False
        self._closed = False
        self._accepted = 0
        self._written = 0
        self._dropped = 0
        self._unreported_drops = 0
        self._flushes = 0
        self._failures = 0
        self._last_error: str | None = None
        self._last_drop_warning = float("-inf")
        self._recovered = 0
        self._kept = 0
        # Records ever put in the queue, and those taken from its front and settled (written,
        # or lost with their batch): every record queued before `_settled` reached a count is
        # written or lost, which is how a flush knows its own records are done.
        self._enqueued = 0
        self._settled = 0

    # ---- the call path -----------------------------------------------------------------

    def record(self, record: UsageRecord) -> None:
        """Queue one record for writing; never waits. Call it from the event loop's thread.

        The recorder owns the record (and its arguments and result) from here on.
        """
        queue = self._queue
        if len(queue) >= self._queue_max or self._closed:
            self._drop(1, "the recorder is stopped" if self._closed else "the queue is full")
            return
        journal = self._journal
        queue.append((record, journal.append(record) if journal is not None else UNJOURNALED))
        self._accepted += 1
        self._enqueued += 1
        if len(queue) >= self._batch_size:
            self._wake.set()

    def stats(self) -> RecorderStats:
        return RecorderStats(
            accepted=self._accepted,
            written=self._written,
            dropped=self._dropped,
            queued=len(self._queue),
            flushes=self._flushes,
            failures=self._failures,
            last_error=self._last_error,
            recovered=self._recovered,
            kept=self._kept,
            journal_failures=self._journal.failures if self._journal is not None else 0,
        )

    # ---- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = self._closed = False
        if self._journal is not None:
            await self._recover(self._journal)
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def _recover(self, journal: UsageJournal) -> None:
        """Queue, first, what a killed process journaled but never wrote."""
        left = await asyncio.to_thread(journal.recover)
        if not left.records:
            return
        written = await self._already_written(left.records)
        fresh: list[Queued] = []
        settled: Counter[int] = Counter()
        for record, segment in zip(left.records, left.segments, strict=True):
            key = _identity(record)
            if written[key] > 0:
                written[key] -= 1
                settled[segment] += 1
            else:
                fresh.append((record, segment))
        journal.settled(settled)
        self._queue.extendleft(reversed(fresh))
        self._enqueued += len(fresh)
        self._recovered = len(fresh)
        if fresh:
            logger.warning(
                "writing %d tool call(s) a stopped Tooldeck recorded but had not written yet",
                len(fresh),
            )

    async def _already_written(
        self, records: list[UsageRecord]
    ) -> Counter[tuple[datetime, str | None, str]]:
        """Those of `records` the database has: killed between a commit and the deletion of
        its journal segment."""
        moments = [as_utc(record.called_at) for record in records]
        query = select(ToolUsage.called_at, ToolUsage.server_id, ToolUsage.tool_name).where(
            ToolUsage.called_at >= min(moments), ToolUsage.called_at <= max(moments)
        )
        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
        return Counter((as_utc(at), server_id, name) for at, server_id, name in rows)

    async def stop(self) -> None:
        """Write everything queued (and whatever arrives meanwhile), then stop taking records."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await self._task
            finally:
                self._task = None
        # Records may have come in after the writer's last look at the queue.
        await self._drain()
        self._closed = True
        if self._queue:
            kept = sum(1 for _record, segment in self._queue if segment != UNJOURNALED)
            lost = len(self._queue) - kept
            self._queue.clear()
            if kept:
                self._kept += kept
                logger.warning(
                    "%d tool call(s) could not be written at shutdown (%s): kept in the usage "
                    "journal, they are written at the next start",
                    kept,
                    self._last_error,
                )
            if lost:
                self._drop(lost, f"they could not be written at shutdown ({self._last_error})")
        if self._journal is not None:
            await asyncio.to_thread(self._journal.close)
        await self._close_writer()

    async def flush(self) -> None:
        """Write every record queued now. Raises if the database refuses the write.

        Records queued while it waits are not its concern: a flush that finds another under
        way waits for that one, and writes again only if its own records were not in it. Reads
        that each flush first (a refresh asks four at once) then share one or two writes
        instead of each writing the calls that came in behind the one before.
        """
        target = self._enqueued
        while self._settled < target:
            # The lock is held by a write under way: its batch has left the queue but is not
            # written yet, so an empty queue alone does not mean the records are in.
            async with self._lock:
                if self._settled >= target or not self._queue:
                    return
                await self._write_some()

    async def __aenter__(self) -> UsageRecorder:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---- the writer task ---------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if len(self._queue) < self._batch_size and not self._stopping:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                except TimeoutError:
                    pass
            if self._stopping:
                await self._drain()
                return
            if self._queue:
                await self._write_with_retry(deadline=None)

    async def _drain(self) -> None:
        deadline = time.monotonic() + STOP_RETRY_S
        while self._queue:
            if not await self._write_with_retry(deadline=deadline):
                return

    async def _write_with_retry(self, *, deadline: float | None) -> bool:
        """One batch; a refusal by the database is retried with backoff (until `deadline`)."""
        delay = RETRY_FIRST_S
        while True:
            try:
                async with self._lock:
                    await self._write_some()
                self._writes_work()
                return True
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # Locked, busy, out of disk or unreachable: the records stay queued and are
                # tried again.
                self._failures += 1
                self._last_error = str(getattr(exc, "orig", None) or exc)
                logger.warning("writing usage failed, retrying in %.1fs: %s", delay, exc)
                self._writes_fail()
            if deadline is not None and time.monotonic() + delay > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _writes_fail(self) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if not self._failing_told and now - self._failing_since >= FAILING_ALERT_AFTER_S:
            self._failing_told = True
            self._tell(
                f"usage cannot be written to the database for {now - self._failing_since:.0f} s "
                f"({self._last_error}); {len(self._queue)} call(s) wait in memory"
                + (" and in the journal" if self._journal is not None else "")
            )

    def _writes_work(self) -> None:
        self._failing_since = None
        if self._failing_told:
            self._failing_told = False
            self._tell(None)

    def _tell(self, message: str | None) -> None:
        if self.on_failing is not None:
            try:
                self.on_failing(message)
            except Exception:
                logger.exception("reporting the state of the usage writer failed")

    async def _write_some(self) -> None:
        queue = self._queue
        count = min(len(queue), max(self._batch_size, MAX_TRANSACTION_ROWS))
        if count == 0:
            return
        if self._journal is not None:
            # Records from now on go to a new segment: the batch's ones can then be deleted.
            self._journal.rotate()
        taken = [queue.popleft() for _ in range(count)]
        batch = [record for record, _segment in taken]
        drops = self._unreported_drops
        written: asyncio.Future[None] | None = None
        try:
            # The thread's transaction is this process's write of the moment: other writers
            # wait their turn in asyncio, not in SQLite's busy handler.
            async with self.db.write_turn():
                loop = asyncio.get_running_loop()
                written = loop.run_in_executor(self._thread(), self._write_batch, batch, drops)
                await carried_through(written)
        except BaseException as exc:
            if _succeeded(written):
                # Committed, and then the wait for it was cancelled: count it, then leave.
                self._count_written(taken, drops)
                raise
            if (
                isinstance(exc, asyncio.CancelledError)
                or not isinstance(exc, Exception)
                or is_transient(exc)
            ):
                # Refused (locked, busy, out of disk) or cut short before it was written: the
                # batch goes back to the front of the queue, to be written first.
                queue.extendleft(reversed(taken))
                raise
            # Not the database refusing but a batch it cannot take: retrying would block every
            # later record behind it, so it is counted as lost, loudly.
            self._failures += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            logger.exception("a batch of %d usage records could not be written", count)
            self._drop(count, "their batch could not be written")
            self._settle(taken)
            return
        self._count_written(taken, drops)

    def _count_written(self, taken: list[Queued], drops: int) -> None:
        self._unreported_drops -= drops
        self._written += len(taken)
        self._flushes += 1
        self._settle(taken)

    def _settle(self, taken: list[Queued]) -> None:
        self._settled += len(taken)
        if self._journal is not None:
            self._journal.settled(Counter(segment for _record, segment in taken))

    def _write_batch(self, batch: list[UsageRecord], drops: int) -> None:
        """On the writer thread: one transaction for the batch, its rollups and counters."""
        if self._engine is None:
            self._engine = self.db.create_thread_writer(f"cache_size=-{WRITER_CACHE_KIB}")

        def write(conn: Connection) -> None:
            self._writer.write(conn, batch)
            if drops:
                conn.execute(
                    insert(ServerEvent).values(
                        server_id=None,
                        kind=str(EventKind.USAGE_DROPPED),
                        message=f"{drops} tool call(s) were not recorded (see the log)",
                        actor="system",
                        created_at=datetime.now(UTC),
                    )
                )

        try:
            self._engine.transaction(write)
        except BaseException:
            # Ids of series created in the rolled-back transaction may be given out again.
            self._writer.forget_series()
            raise

    def _thread(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-writer")
        return self._executor

    async def _close_writer(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        engine, self._engine = self._engine, None
        if engine is not None:
            await asyncio.get_running_loop().run_in_executor(executor, engine.dispose)
        executor.shutdown(wait=False)

    def _drop(self, count: int, why: str) -> None:
        self._dropped += count
        self._unreported_drops += count
        now = time.monotonic()
        if now - self._last_drop_warning >= DROP_WARNING_EVERY_S:
            self._last_drop_warning = now
            logger.warning(
                "usage not recorded: %d record(s) dropped because %s (%d dropped in all)",
                count,
                why,
                self._dropped,
            )


def _identity(record: UsageRecord) -> tuple[datetime, str | None, str]:
    return as_utc(record.called_at), record.server_id, record.tool_name


def _succeeded(future: asyncio.Future[None] | None) -> bool:
    return (
        future is not None
        and future.done()
        and not future.cancelled()
        and future.exception() is None
    )
