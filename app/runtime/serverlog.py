"""Server logs: a stdio server's stderr, in memory (the last lines) and in a rotated file.

Free of MCP imports: `tooldeck server logs` reads a log file without loading the SDK.
"""

from __future__ import annotations

import codecs
import logging
import os
import queue
import threading
import time
from collections import deque
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from app.core.private_files import open_private, private_dir
from app.core.scrub import NO_SECRETS, Scrubber

if TYPE_CHECKING:
    from app.core.settings import Settings

logger = logging.getLogger(__name__)

TAIL_LINES = 200
# A line longer than this is cut: a child writing megabytes without a newline must not grow us.
MAX_LINE_CHARS = 2000


def _capped(line: str) -> str:
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " [cut]"


def log_path(settings: Settings, server_name: str) -> Path:
    return settings.logs_dir / f"{server_name}.log"


class LogWriter:
    """Appends server logs to rotated, size-capped files from one background thread.

    One thread for every server: file writes never run on the event loop, and fifty servers
    do not need fifty threads.
    """

    def __init__(self, max_bytes: int, backups: int) -> None:
        self.max_bytes = max_bytes
        self.backups = backups
        # (path, None) closes that file; None alone ends the thread.
        self._queue: queue.SimpleQueue[tuple[Path, str | None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._files: dict[Path, tuple[TextIO, int]] = {}

    def write(self, path: Path, text: str) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="tooldeck-server-logs", daemon=True
                    )
                    self._thread.start()
        self._queue.put((path, text))

    def release(self, path: Path) -> None:
        """Close one file (its server is gone) once what is queued for it is written."""
        if self._thread is not None:
            self._queue.put((path, None))

    def close(self) -> None:
        """Write what is queued, close the files and end the thread (blocking: call off-loop)."""
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            path, text = item
            if text is None:
                opened = self._files.pop(path, None)
                if opened is not None:
                    with suppress(OSError):
                        opened[0].close()
                continue
            try:
                self._append(path, text)
            except OSError:
                logger.warning("cannot write server log %s", path, exc_info=True)
        for handle, _size in self._files.values():
            with suppress(OSError):
                handle.close()
        self._files.clear()

    def _append(self, path: Path, text: str) -> None:
        handle, size = self._open(path)
        data = text.encode("utf-8", "replace")
        if size and size + len(data) > self.max_bytes:
            handle.close()
            self._rotate(path)
            handle, size = self._open(path)
        handle.write(text)
        handle.flush()
        self._files[path] = (handle, size + len(data))

    def _open(self, path: Path) -> tuple[TextIO, int]:
        if path not in self._files:
            private_dir(path.parent)
            handle = open_private(path, "a", encoding="utf-8", errors="replace")
            self._files[path] = (handle, handle.tell())
        return self._files[path]

    def _rotate(self, path: Path) -> None:
        del self._files[path]
        if self.backups == 0:
            path.unlink(missing_ok=True)
            return
        for index in range(self.backups - 1, 0, -1):
            older = path.with_name(f"{path.name}.{index}")
            if older.exists():
                older.replace(path.with_name(f"{path.name}.{index + 1}"))
        path.replace(path.with_name(f"{path.name}.1"))


class ServerLog:
    """A server's stderr: the last lines in memory, and everything in its log file if it has one."""

    def __init__(
        self, path: Path | None = None, writer: LogWriter | None = None, lines: int = TAIL_LINES
    ) -> None:
        self.path = path
        # Set per run by the supervisor: the secrets of the server this log is for.
        self.scrub: Scrubber = NO_SECRETS
        self._writer = writer if path is not None else None
        self._tail: deque[str] = deque(maxlen=lines)
        self._partial = ""
        # Incremental: a character split across two reads must not turn into two U+FFFDs.
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> None:
        text = self._partial + self._decoder.decode(data)
        *complete, self._partial = text.split("\n")
        for line in complete:
            self._add(_capped(line.rstrip("\r")))
        if len(self._partial) > MAX_LINE_CHARS:
            self._add(_capped(self._partial))
            self._partial = ""

    def finish(self) -> None:
        """The stream ended: keep a last line that had no newline."""
        if self._partial:
            self._add(self._partial)
            self._partial = ""

    def note(self, text: str) -> None:
        """A line from Tooldeck itself (start, stop, exit), so the log reads as a story."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._add(f"[tooldeck {stamp}] {text}")

    def tail(self, lines: int) -> list[str]:
        if lines <= 0:
            return []
        return list(self._tail)[-lines:]

    def recent(self, lines: int = 3) -> str:
        """The last few lines as one string, for an error message."""
        picked: list[str] = []
        for line in reversed(self._tail):
            text = line.strip()
            # A server failing the same way on every attempt writes the same line each time:
            # once is enough in a message.
            if text and not text.startswith("[tooldeck ") and text not in picked:
                picked.append(text)
                if len(picked) == lines:
                    break
        return " | ".join(reversed(picked))

    def _add(self, line: str) -> None:
        line = self.scrub(line)
        self._tail.append(line)
        if self._writer is not None and self.path is not None:
            self._writer.write(self.path, line + "\n")


def read_log_tail(path: Path, lines: int, *, chunk: int = 65536) -> list[str]:
    """The last `lines` lines of a log file, reading from the end (blocking; call off-loop)."""
    if lines <= 0 or not path.is_file():
        return []
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        data = b""
        while end > 0 and data.count(b"\n") <= lines:
            start = max(0, end - chunk)
            handle.seek(start)
            data = handle.read(end - start) + data
            end = start
    return data.decode("utf-8", "replace").splitlines()[-lines:]
