"""Named, scoped API tokens against a real daemon on 127.0.0.1: what each scope may do, the
profile a gateway token is bound to, hashed storage, revocation, and the audit actor."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import mcp_types as types
import pytest

from app.core.access import SCOPES
from app.faces.http.scopes import needed_access
from app.ops.table import OPERATIONS
from tests.cli_runner import one_line_error, tooldeck
from tests.conftest import stdio_server_spec
from tests.daemon_helpers import Daemon, start_daemon
from tests.gateway_helpers import INITIALIZE, MCP_ACCEPT, RecordingClient, over_http

SERVERS = "/api/v1/toolservers/servers"
TOKENS = "/api/v1/tokens"
SECRET = "s3cret-value"


@dataclass
class Fleet:
    daemon: Daemon
    admin: httpx2.Client  # the token file's token
    tokens: dict[str, str]  # name -> value

    def as_(self, name: str) -> httpx2.Client:
        return httpx2.Client(
            base_url=self.daemon.url,
            headers={"Authorization": f"Bearer {self.tokens[name]}"},
            trust_env=False,
            timeout=30,
        )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    daemon = start_daemon(tmp_path_factory.mktemp("tokens") / "home")
    try:
        with daemon.client() as admin:
            made = admin.post(
                SERVERS,
                json=stdio_server_spec("target", "tiny", auto_start=False, env={"KEY": SECRET}),
            )
            assert made.status_code == 201, made.text
            for name, servers in (("narrow", ["calculator"]), ("other", ["target"])):
                profile = admin.post(
                    "/api/v1/gateway/profiles", json={"name": name, "servers": servers}
                )
                assert profile.status_code == 201, profile.text
            tokens: dict[str, str] = {}
            for name, scope, profile_name in (
                ("adm", "admin", None),
                ("op", "operator", None),
                ("ro", "read", None),
                ("gw", "gateway", None),
                ("gw-narrow", "gateway", "narrow"),
            ):
                body: dict[str, Any] = {"name": name, "scope": scope}
                if profile_name:
                    body["profile"] = profile_name
                issued = admin.post(TOKENS, json=body)
                assert issued.status_code == 201, issued.text
                tokens[name] = issued.json()["token"]
            yield Fleet(daemon, admin, tokens)
    finally:
        daemon.stop()


# scope (token name) × request → status. A 404 or 409 shows the request got past the scope
# check (to a lookup or a state check); a 403 is the scope's refusal.
MATRIX: list[tuple[str, str, str, dict[str, Any], int]] = [
    # a gateway token: the MCP endpoints only
    ("gw", "POST", SERVERS, {"json": {"name": "evil", "command": "/bin/sh"}}, 403),
    ("gw", "GET", f"{SERVERS}/target", {"params": {"reveal": "true"}}, 403),
    ("gw", "GET", SERVERS, {}, 403),
    ("gw", "POST", f"{SERVERS}/target/stop", {}, 403),
    ("gw", "GET", TOKENS, {}, 403),
    ("gw", "POST", "/mcp", {"json": INITIALIZE, "headers": MCP_ACCEPT}, 200),
    ("gw", "POST", "/mcp/servers/calculator", {"json": INITIALIZE, "headers": MCP_ACCEPT}, 200),
    # a gateway token bound to the profile "narrow": that endpoint only
    (
        "gw-narrow",
        "POST",
        "/mcp/profiles/narrow",
        {"json": INITIALIZE, "headers": MCP_ACCEPT},
        200,
    ),
    ("gw-narrow", "POST", "/mcp", {"json": INITIALIZE, "headers": MCP_ACCEPT}, 403),
    ("gw-narrow", "POST", "/mcp/profiles/other", {"json": INITIALIZE, "headers": MCP_ACCEPT}, 403),
    (
        "gw-narrow",
        "POST",
        "/mcp/servers/calculator",
        {"json": INITIALIZE, "headers": MCP_ACCEPT},
        403,
    ),
    ("gw-narrow", "GET", SERVERS, {}, 403),
    # an operator: actions on what exists, no definitions, no secrets
    ("op", "POST", SERVERS, {"json": {"name": "evil", "command": "/bin/sh"}}, 403),
    ("op", "PUT", f"{SERVERS}/target", {"json": {"description": "edited"}}, 403),
    ("op", "DELETE", f"{SERVERS}/target", {}, 403),
    ("op", "GET", f"{SERVERS}/target", {"params": {"reveal": "true"}}, 403),
    ("op", "GET", "/api/v1/toolservers/export", {"params": {"include_secrets": "1"}}, 403),
    ("op", "POST", "/api/v1/toolservers/probe", {"json": {"name": "x", "command": "id"}}, 403),
    ("op", "POST", f"{SERVERS}/import", {"json": {"document": {"mcpServers": {}}}}, 403),
    ("op", "POST", TOKENS, {"json": {"name": "mine", "scope": "admin"}}, 403),
    ("op", "POST", "/mcp", {"json": INITIALIZE, "headers": MCP_ACCEPT}, 403),
    ("op", "GET", f"{SERVERS}/target", {}, 200),
    ("op", "GET", f"{SERVERS}/target", {"params": {"reveal": "false"}}, 200),
    ("op", "POST", f"{SERVERS}/target/disable", {"json": {"reason": "maintenance"}}, 200),
    ("op", "POST", f"{SERVERS}/target/enable", {}, 200),
    ("op", "POST", f"{SERVERS}/target/stop", {}, 200),
    ("op", "POST", "/api/v1/alerts/99999/ack", {}, 404),
    # a read token: GET only
    ("ro", "GET", SERVERS, {}, 200),
    ("ro", "GET", f"{SERVERS}/target/events", {}, 200),
    ("ro", "GET", "/metrics", {}, 200),
    ("ro", "GET", "/api/v1/nothing-here", {}, 404),
    ("ro", "GET", f"{SERVERS}/target", {"params": {"reveal": "true"}}, 403),
    ("ro", "POST", f"{SERVERS}/target/stop", {}, 403),
    ("ro", "POST", "/api/v1/gateway/profiles/preview", {"json": {"servers": ["*"]}}, 403),
    ("ro", "DELETE", f"{SERVERS}/target", {}, 403),
    ("ro", "POST", "/api/v1/nothing-here", {}, 403),
    ("ro", "POST", "/mcp", {"json": INITIALIZE, "headers": MCP_ACCEPT}, 403),
    ("ro", "GET", TOKENS, {}, 403),
    # a named admin token: everything
    ("adm", "GET", f"{SERVERS}/target", {"params": {"reveal": "true"}}, 200),
    ("adm", "GET", TOKENS, {}, 200),
    ("adm", "POST", "/mcp", {"json": INITIALIZE, "headers": MCP_ACCEPT}, 200),
    ("adm", "DELETE", f"{SERVERS}/nobody", {}, 404),
]


@pytest.mark.parametrize(
    ("token", "method", "path", "request_args", "status"),
    MATRIX,
    ids=[f"{row[0]}-{row[1]}-{row[2]}-{row[4]}" for row in MATRIX],
)
def test_what_each_scope_may_do(
    fleet: Fleet, token: str, method: str, path: str, request_args: dict[str, Any], status: int
) -> None:
    with fleet.as_(token) as client:
        answer = client.request(method, path, **request_args)
    assert answer.status_code == status, answer.text
    if status == 403:
        body = answer.json()
        assert body["error"] == "Forbidden" and repr(token) in body["message"]
    if token != "adm":
        assert SECRET not in answer.text


def test_only_an_admin_sees_a_secret_and_makes_a_server(fleet: Fleet) -> None:
    with fleet.as_("adm") as admin:
        revealed = admin.get(f"{SERVERS}/target", params={"reveal": "true"})
        assert revealed.json()["env"] == {"KEY": SECRET}
        made = admin.post(SERVERS, json=stdio_server_spec("by-admin", "tiny", auto_start=False))
        assert made.status_code == 201
    with fleet.as_("op") as operator:
        assert operator.get(f"{SERVERS}/target").json()["env"] == {"KEY": "********"}


async def test_a_bound_gateway_token_sees_only_its_profile(fleet: Fleet) -> None:
    url = f"{fleet.daemon.url}/mcp/profiles/narrow"
    async with over_http(url, RecordingClient(), fleet.tokens["gw-narrow"]) as session:
        listed = await session.list_tools()
        names = {tool.name for tool in listed.tools}
        assert names and all(name.startswith("calculator") for name in names), names
        added = await session.call_tool(
            next(n for n in names if n.endswith("add")), {"a": 2, "b": 3}
        )
        assert not added.is_error
        assert isinstance(added.content[0], types.TextContent) and "5" in added.content[0].text


def test_tokens_are_stored_as_hashes_only(fleet: Fleet) -> None:
    database = fleet.daemon.data_dir / "tooldeck.db"
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT name, token_hash FROM api_tokens").fetchall()
        dump = "\n".join(conn.iterdump())
    stored = dict(rows)
    for name, value in fleet.tokens.items():
        assert value not in dump
        assert stored[name] == hashlib.sha256(value.encode()).hexdigest()


def test_the_list_names_scopes_and_last_use_never_values(fleet: Fleet) -> None:
    with fleet.as_("ro") as reader:
        assert reader.get(SERVERS).status_code == 200
    listed = fleet.admin.get(TOKENS)
    assert listed.status_code == 200
    by_name = {token["name"]: token for token in listed.json()}
    assert by_name["ro"]["scope"] == "read" and by_name["ro"]["last_used_at"] is not None
    assert by_name["gw-narrow"]["profile"] == "narrow"
    assert by_name["ro"]["created_by"] == "admin"
    for value in fleet.tokens.values():
        assert value not in listed.text
    assert "token" not in by_name["ro"]


def test_a_revoked_token_is_refused_at_once(fleet: Fleet) -> None:
    issued = fleet.admin.post(TOKENS, json={"name": "short-lived", "scope": "read"})
    value = issued.json()["token"]
    headers = {"Authorization": f"Bearer {value}"}
    assert fleet.admin.get(SERVERS, headers=headers).status_code == 200
    assert fleet.admin.delete(f"{TOKENS}/short-lived").status_code == 204
    refused = fleet.admin.get(SERVERS, headers=headers)
    assert refused.status_code == 401
    assert fleet.admin.delete(f"{TOKENS}/short-lived").status_code == 404
    # Who made and who revoked it is in the audit trail; its value is not.
    audit = fleet.admin.get("/api/v1/audit", params={"actor": "admin"}).json()
    trail = [
        (entry["kind"], entry["message"]) for entry in audit if "short-lived" in entry["message"]
    ]
    assert trail == [
        ("token_revoked", "token short-lived revoked"),
        ("token_added", "token short-lived added (read)"),
    ]
    assert value not in str(audit)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "op", "scope": "read"}, 409, "name"),
        ({"name": "admin", "scope": "read"}, 422, "name"),
        ({"name": "Bad Name", "scope": "read"}, 422, "name"),
        ({"name": "x", "scope": "root"}, 422, "scope"),
        ({"name": "x", "scope": "read", "profile": "narrow"}, 422, "profile"),
        ({"name": "x", "scope": "gateway", "profile": "ghost"}, 404, "profile"),
    ],
)
def test_bad_token_requests_are_clear_4xx(
    fleet: Fleet, body: dict[str, Any], status: int, field: str
) -> None:
    answer = fleet.admin.post(TOKENS, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json().get("field") == field


def test_the_actor_is_the_token_and_an_admin_names_whom_it_acts_for(fleet: Fleet) -> None:
    spoofed = {"X-Tooldeck-Actor": "cli:mallory"}
    with fleet.as_("op") as operator:
        assert operator.post(f"{SERVERS}/target/disable", headers=spoofed).status_code == 200
    with fleet.as_("adm") as admin:
        assert (
            admin.post(
                f"{SERVERS}/target/enable", headers={"X-Tooldeck-Actor": "cli:alice"}
            ).status_code
            == 200
        )
    events = fleet.admin.get(f"{SERVERS}/target/events").json()
    actors = [(event["kind"], event["actor"]) for event in events[:2]]
    assert actors == [("enabled", "adm on behalf of cli:alice"), ("disabled", "op")]
    for who in ("cli:alice", "adm"):
        audit = fleet.admin.get("/api/v1/audit", params={"actor": who}).json()
        assert audit and all(who in entry["actor"] for entry in audit)
    assert fleet.admin.get("/api/v1/audit", params={"actor": "cli:mallory"}).json() == []


def test_no_change_is_open_to_a_read_token() -> None:
    # Whatever a row of the table says, a read token only ever looks.
    for spec in OPERATIONS:
        if spec.method != "GET":
            assert spec.needs != "read", spec.route
    assert needed_access("POST", "/api/v1/unknown") == "admin"
    assert needed_access("GET", f"{SERVERS}/x", b"reveal=yes") == "admin"
    assert needed_access("GET", f"{SERVERS}/x", b"reveal=false") == "read"
    assert needed_access("POST", "/mcp/profiles/p") == "gateway"
    assert set(SCOPES) == {"admin", "operator", "read", "gateway"}


def test_the_token_file_still_works_as_admin(fleet: Fleet) -> None:
    assert fleet.admin.get(TOKENS).status_code == 200
    assert fleet.admin.get(f"{SERVERS}/target", params={"reveal": "true"}).status_code == 200


def test_the_cli_adds_lists_and_revokes_through_the_daemon(fleet: Fleet) -> None:
    home = {"TOOLDECK_HOME": str(fleet.daemon.data_dir)}
    added = tooldeck("token", "add", "ci", "--scope", "read", env=home)
    assert added.returncode == 0, added.stderr
    value = added.stdout.strip()
    assert value.startswith("tdk_") and "shown this once" in added.stderr
    headers = {"Authorization": f"Bearer {value}"}
    assert fleet.admin.get(SERVERS, headers=headers).status_code == 200

    listed = tooldeck("token", "list", env=home)
    assert listed.returncode == 0 and value not in listed.stdout
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["ci"][1] == "read" and rows["ci"][2].endswith("s")  # last used seconds ago
    assert rows["admin"][1] == "admin"  # the token file's, listed first
    assert rows["gw-narrow"][1:3] == ["gateway", "narrow"]

    assert tooldeck("token", "revoke", "ci", env=home).returncode == 0
    assert fleet.admin.get(SERVERS, headers=headers).status_code == 401
    again = one_line_error(tooldeck("token", "revoke", "ci", env=home))
    assert again == "tooldeck: no token 'ci'"
    wrong = one_line_error(tooldeck("token", "add", "x", "--scope", "read", "--profile", "narrow"))
    assert "only a gateway token is bound to a profile" in wrong


REQUEST_ID = "x-request-id"


def lean_and_middleware(client: httpx2.Client, path: str, **request_args: Any) -> httpx2.Response:
    """POST `path` through the daemon's middleware, then through its lean gateway path, and
    check both give the same answer. `Expect: 100-continue` is what makes the lean path hand a
    request on to the middleware; only the middleware stamps a request id on its answers."""
    headers = request_args.pop("headers", {})
    through_middleware = client.post(
        path, headers={**headers, "Expect": "100-continue"}, **request_args
    )
    lean = client.post(path, headers=headers, **request_args)
    assert REQUEST_ID in through_middleware.headers
    assert REQUEST_ID not in lean.headers, "answered by the middleware, not the lean path"
    assert lean.status_code == through_middleware.status_code, lean.text
    assert lean.json() == through_middleware.json()
    return lean


def test_the_lean_gateway_path_refuses_what_the_middleware_refuses(fleet: Fleet) -> None:
    port = fleet.daemon.url.rsplit(":", 1)[1]
    mcp = {"json": INITIALIZE, "headers": MCP_ACCEPT}
    # A rebound Host and a foreign Origin, with a valid admin token.
    rebound = lean_and_middleware(
        fleet.admin, "/mcp", json=INITIALIZE,
        headers={**MCP_ACCEPT, "Host": f"rebind.evil.example:{port}"},
    )  # fmt: skip
    assert (rebound.status_code, rebound.json()["error"]) == (421, "MisdirectedHost")
    for origin in ("http://evil.example", "null"):
        foreign = lean_and_middleware(
            fleet.admin, "/mcp", json=INITIALIZE, headers={**MCP_ACCEPT, "Origin": origin}
        )
        assert (foreign.status_code, foreign.json()["field"]) == (403, "Origin")
    # A cross-site form, without a token: refused for that before the token is asked for.
    with httpx2.Client(base_url=fleet.daemon.url, trust_env=False, timeout=30) as anonymous:
        form = lean_and_middleware(
            anonymous, "/mcp", content=b"{}", headers={"Content-Type": "text/plain"}
        )
        assert (form.status_code, form.json()["field"]) == (403, "Content-Type")
        missing = lean_and_middleware(anonymous, "/mcp", **mcp)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    # Scopes: a read token reaches no gateway path, a bound gateway token only its profile.
    for token, path in (
        ("ro", "/mcp"),
        ("ro", "/mcp/profiles/narrow"),
        ("gw-narrow", "/mcp"),
        ("gw-narrow", "/mcp/profiles/other"),
        ("gw-narrow", "/mcp/servers/calculator"),
    ):
        with fleet.as_(token) as client:
            refused = lean_and_middleware(client, path, **mcp)
        assert refused.status_code == 403, (token, path, refused.text)
        assert refused.json()["error"] == "Forbidden" and repr(token) in refused.json()["message"]
    with fleet.as_("gw-narrow") as client:
        assert lean_and_middleware(client, "/mcp/profiles/narrow", **mcp).status_code == 200


def test_a_revoked_gateway_token_is_refused_at_once_on_the_lean_path(fleet: Fleet) -> None:
    issued = fleet.admin.post(TOKENS, json={"name": "gw-brief", "scope": "gateway"})
    headers = {**MCP_ACCEPT, "Authorization": f"Bearer {issued.json()['token']}"}
    with httpx2.Client(base_url=fleet.daemon.url, trust_env=False, timeout=30) as client:
        assert lean_and_middleware(client, "/mcp", json=INITIALIZE, headers=headers).is_success
        assert fleet.admin.delete(f"{TOKENS}/gw-brief").status_code == 204
        refused = client.post("/mcp", json=INITIALIZE, headers=headers)
    assert refused.status_code == 401, refused.text
