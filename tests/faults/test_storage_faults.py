"""Storage faults: the database locked by another process for longer than the busy timeout.

While another process holds the write lock, reads are answered (WAL: readers never wait for the
writer), tool calls are answered and their usage waits in memory and in the journal, and a
person's change is refused with a 503 saying why, after the busy timeout (5 s), not a 500 and
not a hang. Once the lock is let go, every call is in the database.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import PYTHON, TEST_SERVERS
from tests.daemon_helpers import daemon_env, start_daemon, wait_for
from tests.faults.fault_helpers import statuses
from tests.faults.test_signals import with_servers

BARE = str(TEST_SERVERS / "bare.py")
SERVERS = "/api/v1/toolservers/servers"
# Another program holding the write lock until told to let go (a line on its stdin).
HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN IMMEDIATE")
db.execute("UPDATE tool_servers SET description = description")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


def usage_rows(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "tooldeck.db", timeout=30) as db:
        return int(db.execute("SELECT count(*) FROM tool_usage").fetchone()[0])


def test_a_database_locked_by_another_process_loses_nothing(tmp_path: Path) -> None:
    server = {"name": "steady", "command": PYTHON, "args": ["-I", "-S", BARE]}
    home = asyncio.run(with_servers(tmp_path / "home", server))
    daemon = start_daemon(home, env=daemon_env(home, MCP_ENABLED="false"))
    holder: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: statuses(home).get("steady") == "running", timeout_s=60)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(home / "tooldeck.db")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with daemon.client() as client:
            listed = client.get(SERVERS)
            assert listed.status_code == 200 and listed.json()[0]["name"] == "steady"
            server_id = listed.json()[0]["id"]
            for _ in range(20):
                answer = client.post(
                    "/api/v1/toolservers/tools/whoami/call", params={"server": "steady"}, json={}
                )
                assert answer.status_code == 200, answer.text
            change = client.put(f"{SERVERS}/{server_id}", json={"description": "changed"})
            assert change.status_code == 503, change.text
            assert "database is locked" in change.json()["message"]
        assert usage_rows(home) == 0  # all of it still waits for the lock
        holder.communicate("go\n", timeout=30)
        wait_for(lambda: usage_rows(home) == 20, timeout_s=30)
        with daemon.client() as client:
            assert client.get(SERVERS).status_code == 200
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
        daemon.stop()
