"""Hard limits applied at spawn, and running a server as another account (spawn guard)."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.core.errors import Conflict, InvalidInput, StartFailed
from app.ops.facade import LocalOperations
from app.runtime import spawn_guard
from tests.conftest import PYTHON, TEST_SERVERS
from tests.daemon_helpers import alive, wait_for
from tests.runtime_helpers import fast_supervisor, scripted

GUARD = str(Path(spawn_guard.__file__).resolve())
NO_LIMITS = dict.fromkeys(
    ("rlimit_as_mb", "rlimit_nofile", "rlimit_cpu_s", "run_as_user", "run_as_group")
)
root_only = pytest.mark.skipif(not spawn_guard.can_switch_accounts(), reason="needs root")


def command_line(pid: int) -> str:
    return " ".join(Path(f"/proc/{pid}/cmdline").read_text().split("\0"))


def limits_of(pid: int) -> dict[str, str]:
    rows = Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    return {row[:26].strip(): row[26:47].strip() for row in rows}


async def test_a_server_runs_under_its_hard_limits_as_the_same_process(
    ops: LocalOperations,
) -> None:
    supervisor = fast_supervisor(ops)
    try:
        spec = {"name": "hungry", "command": PYTHON, "args": [str(TEST_SERVERS / "hungry.py")]}
        await ops.create_server(spec, actor="test")
        await ops.set_server_limits(
            "hungry",
            {"rlimit_nofile": 64, "rlimit_cpu_s": 3600, "rlimit_as_mb": 2048},
            actor="cli:alice",
        )
        await ops.start_server("hungry", actor="test")
        info = await ops.runtime_info("hungry")
        assert info.pid is not None
        # The guard exec'd the server: the pid the supervisor watches is the server itself.
        assert "hungry.py" in command_line(info.pid)
        limits = limits_of(info.pid)
        assert limits["Max open files"] == "64"
        assert limits["Max cpu time"] == "3600"
        assert limits["Max address space"] == str(2048 * 2**20)
        # Beyond the address-space limit, allocation fails inside the server; it lives on.
        result = await ops.call_tool("hungry", "grow", {"mb": 3000}, source="cli")
        assert result.is_error
        assert not (await ops.call_tool("hungry", "grow", {"mb": 1}, source="cli")).is_error
    finally:
        await supervisor.shutdown()


def test_guard_reports_what_it_cannot_do() -> None:
    missing = subprocess.run(
        [PYTHON, "-I", GUARD, "--nofile", "64", "--", "tooldeck-no-such-command"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == spawn_guard.EXIT_CANNOT
    assert "tooldeck: cannot run tooldeck-no-such-command" in missing.stderr
    ran = subprocess.run(
        [PYTHON, "-I", GUARD, "--nofile", "50", "--", "sh", "-c", "ulimit -n"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.stdout.strip() == "50"


@root_only
def test_guard_switches_account() -> None:
    nobody = pwd.getpwnam("nobody")
    ran = subprocess.run(
        [PYTHON, "-I", GUARD, "--user", "nobody", "--", "id", "-u"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == str(nobody.pw_uid)
    groups = subprocess.run(
        [PYTHON, "-I", GUARD, "--user", "nobody", "--", "id", "-g"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert groups.stdout.strip() == str(nobody.pw_gid)


async def test_run_as_is_refused_without_the_right_to_switch(
    ops: LocalOperations, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ops.create_server(scripted("plain"), actor="test")
    monkeypatch.setattr(spawn_guard, "can_switch_accounts", lambda: False)
    with pytest.raises(Conflict, match="no right to switch accounts"):
        await ops.set_server_limits("plain", {"run_as_user": "nobody"}, actor="test")
    monkeypatch.undo()
    if spawn_guard.can_switch_accounts():
        with pytest.raises(Conflict, match="no user 'no-such-user-here'"):
            await ops.set_server_limits("plain", {"run_as_user": "no-such-user-here"}, actor="t")


@root_only
async def test_a_server_the_account_cannot_run_fails_to_start_with_the_reason(
    ops: LocalOperations,
) -> None:
    supervisor = fast_supervisor(ops)
    try:
        await ops.create_server(scripted("locked", max_failures=1), actor="test")
        await ops.set_server_limits("locked", {"run_as_user": "nobody"}, actor="test")
        if os.access(sys.executable, os.X_OK) and _nobody_can_run(sys.executable):
            pytest.skip("nobody can run this interpreter here")
        with pytest.raises(StartFailed) as failed:
            await ops.start_server("locked", actor="test")
        assert "cannot run" in str(failed.value)
    finally:
        await supervisor.shutdown()


def _nobody_can_run(path: str) -> bool:
    ran = subprocess.run(
        [PYTHON, "-I", GUARD, "--user", "nobody", "--", path, "-c", "pass"],
        capture_output=True,
        timeout=30,
        cwd="/",
    )
    return ran.returncode == 0


def test_a_server_dies_with_its_parent_however_the_parent_dies(tmp_path: Path) -> None:
    """The parent-death signal: a `kill -9` of the process that spawned the server (Tooldeck)
    ends the server too, even one that ignores SIGTERM."""
    pid_file = tmp_path / "server.pid"
    parent = subprocess.Popen(
        [
            PYTHON,
            "-c",
            "import os, subprocess, sys, time\n"
            "guard = [sys.executable, '-I', '-S', sys.argv[1], '--die-with', str(os.getpid())]\n"
            "stubborn = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " time.sleep(600)'\n"
            "child = subprocess.Popen([*guard, '--', sys.executable, '-c', stubborn])\n"
            "open(sys.argv[2], 'w').write(str(child.pid))\n"
            "time.sleep(600)\n",
            GUARD,
            str(pid_file),
        ]
    )
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text())
        server = int(pid_file.read_text())
        wait_for(lambda: "time.sleep(600)" in command_line(server))  # exec'd: the server itself
        parent.kill()
        parent.wait()
        wait_for(lambda: not alive(server))
    finally:
        parent.kill()
        parent.wait()


def test_a_guard_whose_parent_is_already_gone_does_not_start_the_server() -> None:
    ran = subprocess.run(
        [PYTHON, "-I", "-S", GUARD, "--die-with", "1", "--", "echo", "started"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == spawn_guard.EXIT_PARENT_GONE
    assert ran.stdout == ""


def test_every_server_runs_through_the_guard_on_linux() -> None:
    prefix = spawn_guard.launcher(None)
    assert prefix is not None
    assert prefix[prefix.index("--die-with") + 1] == str(os.getpid())
    assert prefix[-1] == "--"


def test_a_missing_command_is_named_before_the_guard_runs(tmp_path: Path) -> None:
    assert spawn_guard.check_command("tooldeck-nope", {}, None) == (
        "command not found: tooldeck-nope"
    )
    assert spawn_guard.check_command("sh", {}, None) is None
    assert spawn_guard.check_command("sh", {}, str(tmp_path / "gone")) == (
        f"working directory not found: {tmp_path / 'gone'}"
    )
    assert spawn_guard.check_command("./run.sh", {}, str(tmp_path)) == (
        "command not found: ./run.sh"
    )


async def test_run_as_group_alone_and_root_are_refused(ops: LocalOperations) -> None:
    await ops.create_server(scripted("plain"), actor="test")
    with pytest.raises(InvalidInput, match="alone it would leave the server running as root"):
        await ops.set_server_limits("plain", {"run_as_group": "nogroup"}, actor="test")
    for account in ({"run_as_user": "root"}, {"run_as_user": "nobody", "run_as_group": "root"}):
        with pytest.raises(InvalidInput, match="may not run as root"):
            await ops.set_server_limits("plain", account, actor="test")


def test_the_guard_refuses_a_group_alone_and_root() -> None:
    # Whatever reached the guard anyway (an older row, a hand-written command) is refused there.
    for flags in (["--group", "nogroup"], ["--user", "root"]):
        ran = subprocess.run(
            [PYTHON, "-I", GUARD, *flags, "--", "id", "-u"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ran.returncode == spawn_guard.EXIT_CANNOT, ran.stdout
        assert "root" in ran.stderr


@root_only
def test_an_account_with_uid_0_under_another_name_is_refused() -> None:
    zero = [entry.pw_name for entry in pwd.getpwall() if entry.pw_uid == 0]
    assert spawn_guard.check_account(zero[0], None) is not None


def test_loader_variables_never_reach_the_guard_but_reach_the_command() -> None:
    launcher = spawn_guard.launcher(SimpleNamespace(**{**NO_LIMITS, "rlimit_nofile": 64}))
    assert launcher is not None
    env = {"PATH": os.environ["PATH"], "LD_PRELOAD": "/nonexistent/tooldeck-preload.so"}
    argv, guard_env = spawn_guard.guarded(launcher, env)
    assert "LD_PRELOAD" not in guard_env and guard_env["PATH"] == env["PATH"]
    ran = subprocess.run(
        [*argv, "sh", "-c", 'echo "$LD_PRELOAD"'],
        env=guard_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.stdout.strip() == env["LD_PRELOAD"]
    # The loader complains once per process it reaches: the command only, not the guard.
    assert ran.stderr.count("tooldeck-preload.so") == 1, ran.stderr
    unguarded = subprocess.run(
        [*launcher, "sh", "-c", "true"], env=env, capture_output=True, text=True, timeout=30
    )
    assert unguarded.stderr.count("tooldeck-preload.so") == 2, unguarded.stderr
