"""The process groups Tooldeck started, recorded in the data dir so that the next start can end
what a killed Tooldeck left behind.

The parent-death signal (app.runtime.spawn_guard) ends each server when Tooldeck dies, however
it dies; it cannot reach what a server started itself. Each stdio server leads its own process
group, so its group holds all of that: the group is recorded (`<data dir>/processes/<pgid>.json`)
when the server starts and forgotten once the group is ended. At start-up, before any server
starts, `sweep` ends every group still recorded.

A group id is a process id, and ids are reused: a recorded group is ended only when it still
exists since the same boot and at least one of its members carries the server's instance marker
in its environment (a random value given to that server alone). Anything else is a stranger
that happens to have the same number, and is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

# Given to each stdio server alone (a random value): it tells our processes from others.
INSTANCE_ENV = "TOOLDECK_INSTANCE"
REGISTRY_DIR = "processes"
# A boot time as recorded and as psutil reports it later may differ by rounding.
BOOT_TOLERANCE_S = 2.0
GRACE_S = 1.0
POLL_S = 0.02


@dataclass(frozen=True)
class LeftBehind:
    """Processes of a previous run, found and ended at start-up."""

    server: str
    pgid: int
    pids: tuple[int, ...]
    killed: bool  # still there after SIGTERM and the grace period: SIGKILL was needed


class ProcessRegistry:
    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / REGISTRY_DIR

    def record(self, pgid: int, server: str, marker: str) -> None:
        """Note a group just started (blocking: one small file write)."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            entry = {"pgid": pgid, "server": server, "marker": marker, "boot": psutil.boot_time()}
            path = self.directory / f"{pgid}.json"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as file:
                json.dump(entry, file)
        except OSError as exc:
            # A data dir that refuses writes must not stop a server from starting; its
            # parent-death signal still ends it with Tooldeck.
            logger.warning("could not record process group %s of %s: %s", pgid, server, exc)

    def forget(self, pgid: int) -> None:
        with suppress(FileNotFoundError):
            (self.directory / f"{pgid}.json").unlink()

    def sweep(self) -> list[LeftBehind]:
        """End every recorded group left by a previous run; blocking (reads /proc, waits up to
        a second per group for SIGTERM to work): call it off the event loop."""
        if not self.directory.is_dir():
            return []
        ended: list[LeftBehind] = []
        boot = psutil.boot_time()
        for path in sorted(self.directory.glob("*.json")):
            try:
                entry = json.loads(path.read_text())
                pgid, server, marker = int(entry["pgid"]), str(entry["server"]), entry["marker"]
                same_boot = abs(float(entry["boot"]) - boot) <= BOOT_TOLERANCE_S
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
                continue
            members = _members(pgid) if same_boot else []
            if any(_carries(pid, marker) for pid in members):
                killed = _end_group(pgid)
                ended.append(LeftBehind(server, pgid, tuple(members), killed))
            path.unlink(missing_ok=True)
        return ended

    def kill_groups_of(self, servers: set[str]) -> list[int]:
        """SIGKILL at once the recorded groups of these servers; returns the groups ended.

        For fencing (app.runtime.fence): no grace period, since another node may start the
        same server as soon as the lease this node lost expires."""
        if not servers or not self.directory.is_dir():
            return []
        ended = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                entry = json.loads(path.read_text())
                pgid, server, marker = int(entry["pgid"]), str(entry["server"]), entry["marker"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if server not in servers:
                continue
            if _carries(pgid, marker) or any(_carries(pid, marker) for pid in _members(pgid)):
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                    ended.append(pgid)
        return ended


def _members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the group."""
    members = []
    for pid in psutil.pids():
        with suppress(OSError, psutil.Error):
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                members.append(pid)
    return members


def _carries(pid: int, marker: str) -> bool:
    try:
        return psutil.Process(pid).environ().get(INSTANCE_ENV) == marker
    except psutil.Error:
        return False


def _end_group(pgid: int) -> bool:
    """SIGTERM, then SIGKILL after the grace period; True when SIGKILL was needed."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        if not _members(pgid):
            return False
        time.sleep(POLL_S)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    return True
