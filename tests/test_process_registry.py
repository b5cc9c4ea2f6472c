"""The record of process groups started, and the start-up sweep of what a killed run left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.ops.facade import LocalOperations
from app.runtime.process_registry import INSTANCE_ENV, ProcessRegistry
from tests.daemon_helpers import wait_for
from tests.runtime_helpers import alive, fast_supervisor, scripted

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


@pytest.fixture
def groups() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, 9)
        process.wait()


def stubborn_group(groups: list[subprocess.Popen[bytes]], marker: str) -> int:
    """A process group (leader and one child, both ignoring SIGTERM) carrying `marker`."""
    leader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.Popen([sys.executable, "
            f"'-c', {STUBBORN!r}]); exec({STUBBORN!r})",
        ],
        start_new_session=True,
        env={**os.environ, INSTANCE_ENV: marker},
    )
    groups.append(leader)
    return leader.pid


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid and alive(int(entry.name)):
                    members.append(int(entry.name))
            except OSError:
                continue
    return members


def test_a_group_left_running_is_ended_even_when_it_ignores_sigterm(
    tmp_path: Path, groups: list[subprocess.Popen[bytes]]
) -> None:
    registry = ProcessRegistry(tmp_path)
    marker = uuid.uuid4().hex
    pgid = stubborn_group(groups, marker)
    registry.record(pgid, "files", marker)
    wait_for(lambda: len(group_members(pgid)) == 2)
    [left] = registry.sweep()
    assert (left.server, left.pgid, left.killed) == ("files", pgid, True)
    assert len(left.pids) == 2
    wait_for(lambda: not group_members(pgid))
    assert registry.sweep() == []  # the record is gone with the group


def test_a_stranger_with_a_recorded_number_is_left_alone(
    tmp_path: Path, groups: list[subprocess.Popen[bytes]]
) -> None:
    """Ids are reused: a live group with the recorded number but without the server's marker
    is someone else's."""
    registry = ProcessRegistry(tmp_path)
    pgid = stubborn_group(groups, "someone else")
    registry.record(pgid, "files", uuid.uuid4().hex)
    wait_for(lambda: len(group_members(pgid)) == 2)
    assert registry.sweep() == []
    assert len(group_members(pgid)) == 2
    assert not list((tmp_path / "processes").iterdir())


def test_a_record_from_another_boot_is_dropped(
    tmp_path: Path, groups: list[subprocess.Popen[bytes]]
) -> None:
    registry = ProcessRegistry(tmp_path)
    marker = uuid.uuid4().hex
    pgid = stubborn_group(groups, marker)
    registry.record(pgid, "files", marker)
    path = tmp_path / "processes" / f"{pgid}.json"
    entry = json.loads(path.read_text())
    path.write_text(json.dumps({**entry, "boot": entry["boot"] - 86400}))
    assert registry.sweep() == []
    assert alive(pgid)
    assert not path.exists()


async def test_a_running_server_is_recorded_until_it_stops(ops: LocalOperations) -> None:
    supervisor = fast_supervisor(ops)
    records = ops.settings.data_dir / "processes"
    try:
        await ops.create_server(scripted("recorded"), actor="test")
        await ops.start_server("recorded", actor="test")
        pid = (await ops.runtime_info("recorded")).pid
        entry = json.loads((records / f"{pid}.json").read_text())
        assert entry["server"] == "recorded"
        assert records.stat().st_mode & 0o777 == 0o700
        assert (records / f"{pid}.json").stat().st_mode & 0o777 == 0o600
        await ops.stop_server("recorded", actor="test")
        assert not (records / f"{pid}.json").exists()
    finally:
        await supervisor.shutdown()
