"""One supervisor per data dir: a lock file that also tells others where to reach it.

The holder keeps an exclusive `flock` on `<data dir>/tooldeck.lock` for its whole life and writes
its pid, kind, the unix socket where it serves the operations to its own CLI (every supervising
face does) and, for a daemon, its HTTP URL into it. The kernel drops the lock when the holder
dies, so a lock left by a crash is taken over by the next process without anyone deleting files.
Readers do not lock: they check that the recorded process is alive and is the one that wrote the
file (its start time), which a recycled pid cannot fake.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import psutil

from app.core.errors import Conflict
from app.core.private_files import private_dir, private_opener

LOCK_FILE_NAME = "tooldeck.lock"
HolderKind = Literal["daemon", "dashboard", "gateway", "cli"]
HOLDER_NAMES: dict[str, str] = {
    "daemon": "the daemon",
    "dashboard": "a dashboard",
    "gateway": "a stdio gateway",
}
# A process's start time as psutil reports it and as recorded may differ by rounding.
START_TIME_TOLERANCE_S = 1.0


def lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_FILE_NAME


@dataclass(frozen=True)
class LockInfo:
    pid: int
    kind: HolderKind
    process_started: float  # the holder's start time, to tell it from a recycled pid
    started_at: float  # when it took the lock (wall clock), for uptime
    url: str | None = None  # set by a daemon once it listens
    socket: str | None = None  # the operations on a unix socket, once served (any holder)
    gateway_socket: str | None = None  # the daemon's gateway socket, for `gateway --stdio`

    @property
    def uptime_s(self) -> float:
        return max(0.0, time.time() - self.started_at)


class AlreadyRunning(Conflict):
    def __init__(self, info: LockInfo | None, data_dir: Path) -> None:
        if info is None:
            message = f"another Tooldeck process supervises {data_dir}"
        else:
            what = HOLDER_NAMES.get(info.kind, "a Tooldeck process")
            where = f" at {info.url}" if info.url else ""
            message = f"{what} (pid {info.pid}{where}) already supervises {data_dir}"
        super().__init__(message)
        self.info = info


def _process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _parse(text: str) -> LockInfo | None:
    try:
        data = json.loads(text)
        return LockInfo(
            pid=int(data["pid"]),
            kind=data["kind"],
            process_started=float(data["process_started"]),
            started_at=float(data["started_at"]),
            url=data.get("url"),
            socket=data.get("socket"),
            gateway_socket=data.get("gateway_socket"),
        )
    except (ValueError, KeyError, TypeError):
        return None


def read_lock(data_dir: Path) -> LockInfo | None:
    """The live holder of this data dir's lock, or None (no file, empty, or its process died)."""
    try:
        info = _parse(lock_path(data_dir).read_text())
    except OSError:  # none, or not ours to read: nothing to attach to
        return None
    if info is None:
        return None
    started = _process_started(info.pid)
    if started is None or abs(started - info.process_started) > START_TIME_TOLERANCE_S:
        return None
    return info


class SupervisorLock:
    """Held by the one process that runs the supervisor on a data dir."""

    def __init__(self, data_dir: Path, kind: HolderKind) -> None:
        self.data_dir = data_dir
        self.kind = kind
        self._fd: int | None = None
        self._info: LockInfo | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> LockInfo:
        """Take the lock or raise AlreadyRunning naming the holder's pid."""
        private_dir(self.data_dir)
        # Never truncate on open: the file may be the live holder's, which we are about to read.
        fd = private_opener(str(lock_path(self.data_dir)), os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self._wait_for_holder(), self.data_dir) from None
        self._fd = fd
        now = time.time()
        started = _process_started(os.getpid()) or now
        self._info = LockInfo(
            pid=os.getpid(), kind=self.kind, process_started=started, started_at=now
        )
        self._write(self._info)
        return self._info

    def _wait_for_holder(self) -> LockInfo | None:
        # The holder may have locked but not yet written its pid: give it a moment.
        deadline = time.monotonic() + 1.0
        while True:
            info = read_lock(self.data_dir)
            if info is not None or time.monotonic() > deadline:
                return info
            time.sleep(0.05)

    def publish(
        self,
        url: str | None = None,
        *,
        socket: str | None = None,
        gateway_socket: str | None = None,
    ) -> LockInfo:
        """Tell CLIs, dashboards and stdio gateways where to attach: the daemon's URL, the
        operations' socket, the gateway's socket (None leaves what was published)."""
        if self._info is None:
            raise RuntimeError("publish() before acquire()")
        given = {"url": url, "socket": socket, "gateway_socket": gateway_socket}
        changes = {key: value for key, value in given.items() if value is not None}
        self._info = LockInfo(**{**asdict(self._info), **changes})
        self._write(self._info)
        return self._info

    def withdraw_socket(self) -> None:
        """The operations' socket is closed: say so before the holder goes on stopping."""
        if self._info is not None and self._info.socket is not None:
            self._info = LockInfo(**{**asdict(self._info), "socket": None})
            self._write(self._info)

    def _write(self, info: LockInfo) -> None:
        assert self._fd is not None
        payload = json.dumps(asdict(info)).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, payload, 0)
        os.fsync(self._fd)

    def release(self) -> None:
        """Empty the file, then unlock. The file stays: unlinking it would let two processes
        each lock a different inode of the same path."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            self._info = None
