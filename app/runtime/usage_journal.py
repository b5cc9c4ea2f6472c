"""A write-ahead file for usage records: a call is on disk the moment it is recorded.

The recorder writes records to the database in batches (app.runtime.usage), every
`usage_flush_interval_s` (0.5 s by default) or every `usage_batch_size` records; a process
killed in between (SIGKILL, the OOM killer) lost what was queued: 26 of 150 calls in one trial.
Flushing more often costs a transaction and its rollups each time; appending one line to a file
costs a `write` into the page cache (a few microseconds). So each record is also appended here,
before `record()` returns, and a kill loses none.

The journal is a series of numbered segment files (`<n>.jsonl`, 0600, in a 0700 directory). New
records go to the open segment; the writer starts a new one each time it takes a batch, and a
segment is deleted once every record in it is written (or given up as unwritable). At start-up
the segments a killed process left are read back; records the database already has (a kill
between a commit and a deletion) are left out by the recorder, and the rest are written first.

What it does not cover: an operating-system crash or a power cut may lose the last seconds of
calls, as neither this file nor SQLite (synchronous=NORMAL under WAL) syncs to disk at every call.
A journal that cannot be written (a full disk, a read-only data dir) is skipped, loudly: calls
keep flowing and are still written to the database when it takes them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from app.core.usage_record import USAGE_FIELDS, UsageRecord
from storage.rollups import payload_json

logger = logging.getLogger(__name__)

PAYLOADS = ("arguments", "result")
WARNING_EVERY_S = 10.0
# The segment number of a record that is not in the journal (its write failed, or no journal).
UNJOURNALED = -1


@dataclass(frozen=True)
class Recovered:
    """What a killed process left: its records and the segment each came from."""

    records: list[UsageRecord]
    segments: list[int]


class UsageJournal:
    def __init__(self, directory: Path, *, payload_max_bytes: int | None) -> None:
        self.directory = directory
        # None: arguments and results are not stored, so they are not journaled either.
        self._payload_max_bytes = payload_max_bytes
        self._segment = 0
        self._fd: int | None = None
        self._pending: Counter[int] = Counter()
        self._failing = False
        self.failures = 0
        self.last_error: str | None = None
        self._last_warning = float("-inf")

    # ---- start-up --------------------------------------------------------------------

    def recover(self) -> Recovered:
        """Read what earlier processes left (blocking: call it off the loop). New segments are
        numbered after theirs; theirs stay until their records are written."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            paths = sorted(
                (int(path.stem), path)
                for path in self.directory.glob("*.jsonl")
                if path.stem.isdigit()
            )
        except OSError as exc:
            self._fail(exc)
            return Recovered([], [])
        records: list[UsageRecord] = []
        segments: list[int] = []
        for number, path in paths:
            self._segment = max(self._segment, number + 1)
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                self._fail(exc)
                continue
            found = 0
            for line in text.splitlines():
                record = self._decode(line)
                if record is not None:
                    records.append(record)
                    segments.append(number)
                    found += 1
            if found:
                self._pending[number] += found
            else:
                self._unlink(number)
        return Recovered(records, segments)

    # ---- the call path ---------------------------------------------------------------

    def append(self, record: UsageRecord) -> int:
        """Write one record to the open segment; its segment number, or UNJOURNALED when it
        could not be written (the call goes on; the record is still queued in memory)."""
        if self._failing:
            return UNJOURNALED
        try:
            if self._fd is None:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._fd = os.open(
                    self.directory / f"{self._segment}.jsonl",
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                    0o600,
                )
            line = self._encode(record)
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(f"short write: {written} of {len(line)} bytes")
        except (OSError, TypeError, ValueError) as exc:
            self._fail(exc)
            return UNJOURNALED
        self._pending[self._segment] += 1
        return self._segment

    # ---- the writer ------------------------------------------------------------------

    def rotate(self) -> None:
        """Start a new segment for the records to come (the writer is taking a batch). A
        journal that failed is tried again here."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if not self._pending[self._segment]:
                self._unlink(self._segment)
            self._segment += 1
        self._failing = False

    def settled(self, segments: Counter[int]) -> None:
        """These records are written (or given up): delete the segments that hold no more."""
        for number, count in segments.items():
            if number == UNJOURNALED:
                continue
            self._pending[number] -= count
            if self._pending[number] <= 0:
                del self._pending[number]
                if number != self._segment or self._fd is None:
                    self._unlink(number)

    def close(self) -> None:
        """At shutdown: segments with unwritten records stay for the next start."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self._pending[self._segment]:
            self._unlink(self._segment)

    # ---- lines -----------------------------------------------------------------------

    def _encode(self, record: UsageRecord) -> bytes:
        data: dict[str, Any] = {}
        for name in USAGE_FIELDS:
            value = getattr(record, name)
            if name in PAYLOADS:
                cap = self._payload_max_bytes
                value = None if cap is None else payload_json(value, cap)
            elif isinstance(value, datetime):
                value = value.isoformat()
            data[name] = value
        # orjson: the stdlib's encoder was a tenth of the daemon's busy time on the call path.
        return orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE)

    @staticmethod
    def _decode(line: str) -> UsageRecord | None:
        """A record from one line; None for a line a kill cut short."""
        try:
            data = json.loads(line)
            fields = {name: data[name] for name in USAGE_FIELDS if name in data}
            fields["called_at"] = datetime.fromisoformat(fields["called_at"])
            for name in PAYLOADS:
                if fields.get(name) is not None:
                    fields[name] = json.loads(fields[name])
            return UsageRecord(**fields)
        except (ValueError, KeyError, TypeError):
            return None

    def _unlink(self, number: int) -> None:
        try:
            (self.directory / f"{number}.jsonl").unlink(missing_ok=True)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self._failing = True
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self._fd is not None:
            # The segment may end in a torn line; a new one starts clean.
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
            self._segment += 1
        now = time.monotonic()
        if now - self._last_warning >= WARNING_EVERY_S:
            self._last_warning = now
            logger.warning(
                "the usage journal in %s cannot be written (%s): calls are still recorded, "
                "but a kill now would lose those not yet in the database",
                self.directory,
                self.last_error,
            )
