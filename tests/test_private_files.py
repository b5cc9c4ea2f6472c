"""Private by default: the data dir 0700 and every file Tooldeck writes there 0600, whatever
the umask; wider modes left from before are narrowed at start, with a warning naming them."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.daemon_helpers import daemon_env, start_daemon, tooldeck_on


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_loose(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`tooldeck ARGS` under umask 000, the loosest a user can have."""
    return tooldeck_on(home, *args, umask=0)


def test_a_fresh_data_dir_is_private_under_umask_000(tmp_path: Path) -> None:
    home = tmp_path / "home"
    added = run_loose(home, "server", "add", "demo", "--command", "x", "--env", "KEY=s3cret")
    assert added.returncode == 0, added.stderr
    exported = run_loose(home, "export", "demo", "-o", str(tmp_path / "out.json"))
    assert exported.returncode == 0, exported.stderr
    assert mode(home) == 0o700
    assert mode(home / "tooldeck.db") == 0o600
    for end in ("-wal", "-shm"):
        sidecar = home / f"tooldeck.db{end}"
        assert not sidecar.exists() or mode(sidecar) == 0o600, end
    assert mode(tmp_path / "out.json") == 0o600
    assert "now private" not in added.stderr + exported.stderr


def test_the_daemon_its_logs_and_the_token_are_private_under_umask_000(tmp_path: Path) -> None:
    home = tmp_path / "home"
    old = os.umask(0)
    try:
        daemon = start_daemon(home, env=daemon_env(home))
    finally:
        os.umask(old)
    try:
        with daemon.client() as http:
            assert http.get("/api/v1/toolservers/servers").status_code == 200
        files = [home / "tooldeck.db", home / "api-token", home / "logs" / "daemon.log"]
        files += [home / "tooldeck.db-wal", home / "tooldeck.db-shm"]
        files += sorted((home / "logs").glob("*.log"))
        for path in files:
            assert mode(path) == 0o600, path
        assert mode(home) == 0o700 and mode(home / "logs") == 0o700
    finally:
        assert daemon.stop() == 0


def test_wider_modes_from_before_are_narrowed_with_a_warning(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_loose(home, "server", "list").returncode == 0
    (home / "logs").mkdir(exist_ok=True)
    (home / "logs" / "demo.log").write_text("old\n")
    loose = [home / "tooldeck.db", home / "logs" / "demo.log"]
    for path in loose:
        path.chmod(0o644)
    home.chmod(0o755)
    listed = run_loose(home, "server", "list")
    assert listed.returncode == 0, listed.stderr
    warnings = "\n".join(line for line in listed.stderr.splitlines() if "now private" in line)
    for path in loose:
        assert mode(path) == 0o600
        assert f"{path} (0644 -> 0600)" in warnings, listed.stderr
    assert f"{home} (0755 -> 0700)" in warnings and mode(home) == 0o700
    again = run_loose(home, "server", "list")
    assert "now private" not in again.stderr
