"""Host, Origin and cross-site checks on every HTTP path, with a token and with `--no-auth`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest

from app.faces.http.access_guard import HostPolicy, host_name
from app.faces.http.api import create_app
from app.ops.facade import LocalOperations
from app.ops.remote import CLIENT_HEADER
from tests.daemon_helpers import Daemon, daemon_env, start_daemon
from tests.gateway_helpers import INITIALIZE, MCP_ACCEPT

SERVERS = "/api/v1/toolservers/servers"
HARMLESS = {"name": "x", "command": "/bin/true", "auto_start": False}


@pytest.fixture(scope="module")
def no_auth_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    data_dir = tmp_path_factory.mktemp("access") / "home"
    env = daemon_env(data_dir, TOOLDECK_ALLOWED_HOSTS="deck.example")
    daemon = start_daemon(data_dir, "--no-auth", env=env)
    try:
        yield daemon
    finally:
        daemon.stop()


def names(daemon: Daemon) -> list[str]:
    with daemon.client() as http:
        return [server["name"] for server in http.get(SERVERS).json()]


def test_a_rebound_host_cannot_create_a_server_without_auth(no_auth_daemon: Daemon) -> None:
    port = no_auth_daemon.url.rsplit(":", 1)[1]
    with no_auth_daemon.client() as http:
        for path in (SERVERS, "/mcp", "/nowhere"):
            answer = http.post(path, json=HARMLESS, headers={"Host": f"rebind.evil.example:{port}"})
            assert answer.status_code == 421, answer.text
            assert answer.json()["error"] == "MisdirectedHost"
            assert "rebind.evil.example" in answer.json()["message"]
        # Reads too: a rebound page would read the fleet's definitions.
        assert http.get(SERVERS, headers={"Host": "rebind.evil.example"}).status_code == 421
    assert "x" not in names(no_auth_daemon)


def test_loopback_names_and_listed_hosts_are_answered(no_auth_daemon: Daemon) -> None:
    port = no_auth_daemon.url.rsplit(":", 1)[1]
    with no_auth_daemon.client() as http:
        for host in ("127.0.0.1", "localhost", "[::1]", "deck.example"):
            answer = http.get(SERVERS, headers={"Host": f"{host}:{port}"})
            assert answer.status_code == 200, (host, answer.text)


def test_a_cross_site_form_cannot_change_anything(no_auth_daemon: Daemon) -> None:
    with no_auth_daemon.client() as http:
        created = http.post(
            SERVERS,
            content=b'{"name": "y", "command": "/bin/true", "auto_start": false}',
            headers={"Content-Type": "text/plain"},
        )
        assert created.status_code == 403, created.text
        assert created.json()["field"] == "Content-Type"
        for verb in ("stop", "disable", "restart"):
            answer = http.post(f"{SERVERS}/calculator/{verb}")
            assert answer.status_code == 403, (verb, answer.text)
        assert http.post("/api/v1/scheduler/jobs/health/run").status_code == 403
        acknowledged = http.post(
            "/api/v1/alerts/1/acknowledge",
            content=b"a=b",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert acknowledged.status_code == 403
        servers = {s["name"]: s for s in http.get(SERVERS).json()}
    assert "y" not in servers and servers["calculator"]["enabled"]


def test_a_foreign_origin_is_refused_even_with_json(no_auth_daemon: Daemon) -> None:
    with no_auth_daemon.client() as http:
        for origin in ("https://evil.example", "null", "http://deck.example.evil.example"):
            answer = http.post(SERVERS, json=HARMLESS, headers={"Origin": origin})
            assert answer.status_code == 403, (origin, answer.text)
            assert answer.json()["field"] == "Origin"
        assert "x" not in names(no_auth_daemon)
        local = http.post(
            SERVERS, json={**HARMLESS, "name": "z"}, headers={"Origin": "http://localhost:3000"}
        )
        assert local.status_code == 201, local.text
        assert http.delete(f"{SERVERS}/z", headers={CLIENT_HEADER: "test"}).status_code == 204


# ---- in-process: the policy itself ---------------------------------------------------------


@pytest.fixture
async def api(ops: LocalOperations) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(ops, tokens=None, hosts=HostPolicy(["*"]))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://any.example") as http:
        yield http


async def test_a_star_accepts_any_host_but_still_checks_mutations(
    api: httpx2.AsyncClient,
) -> None:
    assert (await api.get(SERVERS)).status_code == 200
    assert (await api.post(SERVERS, content=b"{}")).status_code == 403


def test_host_names_and_the_listening_address() -> None:
    assert host_name("LocalHost:8765") == "localhost"
    assert host_name("[::1]:80") == "::1"
    assert host_name("::1") == "::1"
    policy = HostPolicy(["Deck.Example:443"], listen_host="192.0.2.7")
    assert policy.allows("deck.example") and policy.allows("192.0.2.7")
    assert policy.allows("127.0.0.2") and policy.allows("app.localhost")
    assert not policy.allows("192.0.2.8") and not policy.allows("")
    assert not HostPolicy(listen_host="0.0.0.0").allows("0.0.0.0")


def test_the_gateway_answers_a_listed_host_like_the_api(no_auth_daemon: Daemon) -> None:
    with no_auth_daemon.client() as http:
        answer = http.post(
            "/mcp",
            json=INITIALIZE,
            headers={"Host": "deck.example", **MCP_ACCEPT},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["serverInfo"]
