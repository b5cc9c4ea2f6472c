"""A server another node runs, seen from this node: its log tail comes from its owner over the
owner's one API route a node's credential opens, and an owner that is gone is named, quickly.
Real `tooldeck --headless` nodes on a real PostgreSQL."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import httpx2

from app.runtime.node_credentials import fleet_keys
from storage.db import Database
from tests.daemon_helpers import wait_for
from tests.fleet_helpers import (
    nodes_seen_by,
    servers_of,
    start_node,
    usage_by_source,
    usage_rows,
)
from tests.runtime_helpers import eventually

SCRIPTED = Path(__file__).resolve().parent / "servers" / "scripted.py"
SERVER = "logs-on-alpha"
READY_LINE = "scripted server ready"
CALLER = "remote-call-test"


async def node_credential(url: str, node: str) -> str:
    db = Database(url)
    try:
        return (await fleet_keys(db)).credential(node)
    finally:
        await db.dispose()


async def test_logs_of_a_server_on_another_node_come_from_its_owner(
    tmp_path: Path, new_pg_database: Callable[..., str]
) -> None:
    url = new_pg_database()
    nodes = {name: start_node(tmp_path, url, name) for name in ("alpha", "beta")}
    alpha, beta = nodes["alpha"], nodes["beta"]
    try:
        wait_for(lambda: {n for n, e in nodes_seen_by(beta).items() if e["alive"]} == set(nodes))
        spec = {
            "name": SERVER,
            "command": sys.executable,
            "args": [str(SCRIPTED)],
            "placement": "alpha",
        }
        with alpha.client() as client:
            answer = client.post("/api/v1/toolservers/servers", json=spec)
            assert answer.status_code == 201, answer.text
        wait_for(lambda: servers_of(beta)[SERVER]["status"] == "running", timeout_s=30)
        server_id = servers_of(beta)[SERVER]["id"]
        logs = f"/api/v1/toolservers/servers/{server_id}/logs"
        # Beta has no log of its own for the server: the line is alpha's file.
        assert not list((beta.data_dir).rglob(f"*{SERVER}*"))
        with beta.client() as client:
            wait_for(lambda: READY_LINE in "\n".join(client.get(logs).json()))

        # The node credential reads the logs route and nothing else of the API.
        as_node = {"Authorization": f"Bearer {await node_credential(url, 'beta')}"}
        async with httpx2.AsyncClient(base_url=alpha.url, trust_env=False, timeout=30) as http:
            answer = await http.get(logs, headers=as_node, params={"lines": 5})
            assert answer.status_code == 200, answer.text
            for method, path in (
                ("GET", "/api/v1/toolservers/servers"),
                ("GET", f"/api/v1/toolservers/servers/{server_id}"),
                ("GET", "/api/v1/tokens"),
                ("POST", f"/api/v1/toolservers/servers/{server_id}/stop"),
                ("POST", f"{logs}/x"),
                ("DELETE", logs),
            ):
                refused = await http.request(method, path, headers=as_node)
                assert refused.status_code == 401, (method, path, refused.text)

        # A call made through beta's API is answered by alpha's server and metered once, by
        # alpha, under the caller's name and as made through the API.
        with beta.client() as client:
            answer = client.post(
                "/api/v1/toolservers/tools/echo/call",
                params={"server": SERVER},
                json={"arguments": {"text": "through beta"}, "client_name": CALLER},
            )
            assert answer.status_code == 200, answer.text
            result = answer.json()
            assert not result["is_error"], result
            assert result["content"][0]["text"] == "through beta"
        # The owner flushes its usage every 0.5 s; beta records nothing.
        assert await eventually(lambda: usage_by_source(url)) == [(CALLER, "api", 1)]

        # Owner killed: beta names it, without a 500 and without hanging.
        alpha.process.send_signal(signal.SIGKILL)
        alpha.process.wait()
        with beta.client() as client:
            answer = client.get(logs)
            assert answer.status_code in (502, 503), answer.text
            assert "node alpha" in answer.json()["message"], answer.text
            # Once its heartbeat is old, alpha is called down.
            wait_for(
                lambda: "which is down" in client.get(logs).json().get("message", ""),
                timeout_s=30,
            )
        # Stopped, beta has flushed whatever it recorded: still the one row, alpha's.
        assert beta.stop() == 0
        assert await usage_rows(url) == [(CALLER, 1)]
    finally:
        for node in (beta, alpha):
            if node.process.poll() is None:
                node.stop()
