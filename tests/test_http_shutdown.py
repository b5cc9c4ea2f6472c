"""SIGTERM under load: the daemon exits 0 without waiting for the calls in flight, loses no
usage and leaves no child.

One scenario, run once for the module: a daemon with the calculator and a scripted server,
six workers calling `add` in a loop, and one call of a tool that sleeps for an hour, in flight
when SIGTERM arrives. The tests below each check one outcome of it. How long the stop takes is
for `make bench`; here a daemon that waited for the call would overstay any bound by an hour.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx2
import psutil
import pytest

from app.runtime.lock import read_lock
from tests.conftest import stdio_server_spec
from tests.daemon_helpers import Daemon, start_daemon, wait_for

WORKERS = 6
SERVERS = "/api/v1/toolservers/servers"
CALL = "/api/v1/toolservers/tools/{tool}/call"
# Bounds on the load: it stops by itself even if the daemon never goes away.
MAX_LOAD_S = 20.0
# The in-flight call that only a stop which cuts calls short can end.
HOUR_S = 3600
# What the stop may take before the daemon counts as hung: far above a loaded machine's stop,
# far below the hour a stop that waited for the call would take.
STOP_GUARD_S = 60.0


class Load:
    """Workers calling a tool in a loop until the daemon stops answering."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.ok = 0
        self.other: list[int] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(WORKERS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=MAX_LOAD_S)

    def _work(self) -> None:
        deadline = time.monotonic() + MAX_LOAD_S
        with self.daemon.client() as http:
            while time.monotonic() < deadline:
                try:
                    answer = http.post(
                        CALL.format(tool="add"),
                        params={"server": "calculator"},
                        json={"arguments": {"a": 1, "b": 2}},
                    )
                except httpx2.TransportError:
                    return  # the daemon stopped accepting: this worker is done
                with self._lock:
                    if answer.status_code == 200 and not answer.json()["is_error"]:
                        self.ok += 1
                    else:
                        self.other.append(answer.status_code)


@dataclass
class Outcome:
    daemon: Daemon
    exit_code: int
    load: Load
    children: list[psutil.Process]
    slow_answer: httpx2.Response | None = None
    slow_error: str = ""
    rows: list[tuple[str, int, str | None]] = field(default_factory=list)


def _slow_call(daemon: Daemon, outcome: Outcome) -> None:
    with daemon.client() as http:
        try:
            outcome.slow_answer = http.post(
                CALL.format(tool="sleep"),
                params={"server": "slow"},
                json={"arguments": {"seconds": HOUR_S}},
            )
        except httpx2.TransportError as exc:
            outcome.slow_error = repr(exc)


@pytest.fixture(scope="module")
def stopped_under_load(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    daemon = start_daemon(tmp_path_factory.mktemp("shutdown") / "home")
    try:
        with daemon.client() as http:
            slow_spec = stdio_server_spec("slow", "scripted", call_timeout_s=HOUR_S)
            assert http.post(SERVERS, json=slow_spec).is_success
            assert http.post(f"{SERVERS}/slow/start").is_success
            for name in ("calculator", "slow"):
                wait_for(
                    lambda name=name: http.get(f"{SERVERS}/{name}").json()["status"] == "running"
                )
        children = psutil.Process(daemon.pid).children(recursive=True)
        load = Load(daemon)
        outcome = Outcome(daemon, -1, load, children)
        slow = threading.Thread(target=_slow_call, args=(daemon, outcome), daemon=True)
        slow.start()
        load.start()
        wait_for(lambda: load.ok >= 50, timeout_s=MAX_LOAD_S)
        outcome.exit_code = daemon.stop(signal.SIGTERM, timeout_s=STOP_GUARD_S)
        load.join()
        slow.join(timeout=MAX_LOAD_S)
    finally:
        daemon.kill()
    with sqlite3.connect(daemon.data_dir / "tooldeck.db") as db:
        outcome.rows = db.execute(
            "SELECT tool_name, success, error_message FROM tool_usage WHERE source = 'api'"
        ).fetchall()
    yield outcome


def test_exits_0_and_leaves_no_child(stopped_under_load: Outcome) -> None:
    outcome = stopped_under_load
    assert outcome.exit_code == 0, outcome.daemon.stderr()
    assert len(outcome.children) >= 2, "the calculator and the scripted server are children"
    assert not [child.pid for child in outcome.children if _alive(child)]
    # A clean stop leaves no lock to take over, and says so in its log.
    assert read_lock(outcome.daemon.data_dir) is None
    assert "stopped" in [line.get("message") for line in outcome.daemon.log_lines()]


def test_every_call_a_client_saw_succeed_was_recorded(stopped_under_load: Outcome) -> None:
    load = stopped_under_load.load
    recorded = sum(1 for tool, success, _ in stopped_under_load.rows if tool == "add" and success)
    # At most one call per worker may have been recorded whose answer never reached its client.
    assert load.ok <= recorded <= load.ok + WORKERS, (load.ok, recorded)
    assert not load.other, load.other


def test_a_call_cut_short_is_answered_503_as_json(stopped_under_load: Outcome) -> None:
    answer = stopped_under_load.slow_answer
    assert answer is not None, stopped_under_load.slow_error
    assert answer.status_code == 503
    assert answer.json() == {
        "error": "Unavailable",
        "message": "cancelled: the daemon is shutting down",
    }


def test_a_call_cut_short_is_recorded_as_failed(stopped_under_load: Outcome) -> None:
    slow = [(success, error) for tool, success, error in stopped_under_load.rows if tool == "sleep"]
    assert len(slow) == 1 and not slow[0][0], slow


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
