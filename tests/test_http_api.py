"""The HTTP layer itself, in-process: auth, every error code, limits, ids, OpenAPI, /metrics."""

from __future__ import annotations

import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from app.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
)
from app.faces.http.api import MAX_BODY_BYTES, create_app
from app.faces.http.prometheus import render_metrics
from app.ops.facade import LocalOperations
from app.ops.remote import RemoteOperations
from app.runtime.api_token import TokenStore, load_or_create_token, rotate_token, token_path
from app.runtime.call_latency import LATENCY_BOUNDS_MS, CallLatency
from tests.conftest import stdio_server_spec

SERVERS = "/api/v1/toolservers/servers"


@pytest.fixture
def tokens(data_dir: Path) -> TokenStore:
    return TokenStore(data_dir)


@pytest.fixture
async def client(ops: LocalOperations, tokens: TokenStore) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=create_app(ops, tokens=tokens))
    async with httpx2.AsyncClient(
        transport=transport,
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {tokens.current()}"},
    ) as http:
        yield http


def error_of(response: httpx2.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) <= {"error", "message", "field"} and body["message"], body
    return body


# ---- auth ----------------------------------------------------------------------------------


async def test_no_token_wrong_token_right_token(
    client: httpx2.AsyncClient, tokens: TokenStore
) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Basic abc"}):
        none = await client.get(SERVERS, headers=headers)
        assert none.status_code == 401
        assert none.headers["www-authenticate"] == "Bearer"
        assert error_of(none)["error"] == "Unauthorized"
    wrong = await client.get(SERVERS, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and "wrong token" in error_of(wrong)["message"]
    right = await client.get(SERVERS)
    assert right.status_code == 200 and right.json() == []


async def test_every_route_but_the_public_ones_needs_the_token(
    client: httpx2.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    checked = 0
    for template, operations in document["paths"].items():
        path = re.sub(r"\{[^}]+\}", "x", template)
        for method in operations:
            answer = await client.request(method, path, headers={"Authorization": ""})
            assert (answer.status_code != 401) == (path == "/healthz"), (method, path)
            checked += 1
    assert checked >= 40
    for public in ("/openapi.json", "/docs"):
        assert (await client.get(public, headers={"Authorization": ""})).status_code == 200


async def test_healthz_and_docs_need_no_token(client: httpx2.AsyncClient) -> None:
    anonymous = {"Authorization": ""}
    assert (await client.get("/healthz", headers=anonymous)).json()["status"] == "ok"
    document = (await client.get("/openapi.json", headers=anonymous)).json()
    assert "/api/v1/toolservers/servers/{id}/restart" in document["paths"]
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    assert (await client.get("/docs", headers=anonymous)).status_code == 200


async def test_the_docs_page_runs_no_script_from_anywhere(client: httpx2.AsyncClient) -> None:
    page = await client.get("/docs", headers={"Authorization": ""})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text.lower()
    assert (
        "<script" not in html
        and "cdn" not in html
        # No address of anywhere else (routes may say "HTTP server" in words).
        and "http://" not in html
        and "https://" not in html
        and 'src="//' not in html
    )
    assert "script-src" not in page.headers["content-security-policy"]
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert "/api/v1/toolservers/servers/{id}/restart" in page.text
    # Swagger's and ReDoc's pages, which loaded their scripts from a CDN, are gone.
    for old in ("/redoc", "/docs/oauth2-redirect"):
        assert (await client.get(old)).status_code == 404


async def test_an_unknown_path_without_a_token_is_401_not_404(client: httpx2.AsyncClient) -> None:
    # Paths are not probed without the token.
    answer = await client.get("/api/v1/secret-admin", headers={"Authorization": ""})
    assert answer.status_code == 401


async def test_the_token_file_is_private_and_rotation_takes_effect_at_once(
    client: httpx2.AsyncClient, data_dir: Path, tokens: TokenStore
) -> None:
    assert stat.S_IMODE(token_path(data_dir).stat().st_mode) == 0o600
    old = load_or_create_token(data_dir)
    assert old == tokens.current()
    new = rotate_token(data_dir)
    assert new != old
    assert stat.S_IMODE(token_path(data_dir).stat().st_mode) == 0o600
    assert (await client.get(SERVERS)).status_code == 401
    fresh = await client.get(SERVERS, headers={"Authorization": f"Bearer {new}"})
    assert fresh.status_code == 200


async def test_without_a_token_store_no_auth_is_asked(ops: LocalOperations) -> None:
    transport = httpx2.ASGITransport(app=create_app(ops, tokens=None))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        assert (await http.get(SERVERS)).status_code == 200


# ---- every error code ------------------------------------------------------------------------


async def test_400_for_a_body_that_is_not_json(client: httpx2.AsyncClient) -> None:
    answer = await client.post(
        SERVERS, content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert error_of(answer) | {} == {
        "error": "BadRequest",
        "field": "body",
        "message": answer.json()["message"],
    }
    assert "not valid JSON" in answer.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", SERVERS, {"name": "Bad Name", "command": "x"}, "name"),
        ("POST", SERVERS, {"name": "ok"}, "command"),
        ("POST", SERVERS, {"name": "ok", "command": "x", "max_failures": "many"}, "max_failures"),
        ("POST", SERVERS, {"name": "ok", "command": "x", "extra": 1}, "extra"),
        ("POST", SERVERS, ["not", "an", "object"], "body"),
        ("POST", SERVERS, None, "body"),
        ("POST", f"{SERVERS}/bulk", {"server_ids": ["a"], "operation": "explode"}, "operation"),
        ("GET", f"{SERVERS}?status=sleeping", None, "status"),
        ("GET", f"{SERVERS}?enabled=perhaps", None, "enabled"),
        ("GET", "/api/v1/toolservers/events?limit=0", None, "limit"),
        ("GET", "/api/v1/toolservers/events?limit=lots", None, "limit"),
    ],
)
async def test_422_names_the_field(
    client: httpx2.AsyncClient, method: str, path: str, body: Any, field: str
) -> None:
    answer = await client.request(method, path, json=body)
    assert answer.status_code == 422, answer.text
    assert error_of(answer)["error"] == "InvalidInput"
    assert answer.json()["field"] == field


async def test_form_encoded_bodies_are_told_to_send_json(client: httpx2.AsyncClient) -> None:
    # What `curl -d` sends by default.
    answer = await client.post(SERVERS, data={"name": "x"})
    assert answer.status_code == 422
    assert "application/json" in error_of(answer)["message"]


async def test_404_for_unknown_ids_and_paths(client: httpx2.AsyncClient) -> None:
    for path in (f"{SERVERS}/ghost", f"{SERVERS}/ghost/tools", "/api/v1/toolservers/tools/ghost"):
        answer = await client.get(path)
        assert answer.status_code == 404
        assert error_of(answer)["error"] == "NotFound"
    assert (await client.post(f"{SERVERS}/ghost/stop")).status_code == 404
    unknown = await client.get("/api/v2/nothing")
    assert unknown.status_code == 404 and error_of(unknown)["error"] == "NotFound"


async def test_405_is_json_too(client: httpx2.AsyncClient) -> None:
    answer = await client.patch(SERVERS)
    assert answer.status_code == 405 and error_of(answer)["error"] == "MethodNotAllowed"


async def test_409_for_a_duplicate_and_for_runtime_work_without_a_supervisor(
    client: httpx2.AsyncClient,
) -> None:
    spec = stdio_server_spec("dup", "tiny")
    assert (await client.post(SERVERS, json=spec)).status_code == 201
    duplicate = await client.post(SERVERS, json=spec)
    assert duplicate.status_code == 409 and error_of(duplicate)["field"] == "name"
    start = await client.post(f"{SERVERS}/dup/start")
    assert start.status_code == 409 and error_of(start)["error"] == "NotRunning"


async def test_413_for_a_body_over_one_megabyte(client: httpx2.AsyncClient) -> None:
    padding = "x" * MAX_BODY_BYTES
    declared = await client.post(SERVERS, json={"name": "big", "description": padding})
    assert declared.status_code == 413 and error_of(declared)["error"] == "PayloadTooLarge"

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit must hold on a streamed body too.
        for _ in range(17):
            yield b" " * 65536

    streamed = await client.post(
        SERVERS, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    just_under = await client.post(
        SERVERS, json={"name": "fits", "command": "x", "description": "y" * 3000}
    )
    assert just_under.status_code == 201


async def test_413_for_a_streamed_body_over_the_limit_of_a_mounted_gateway(
    ops: LocalOperations, tokens: TokenStore
) -> None:
    """The gateway's ASGI side is no FastAPI route: the limit's exception once became a 500."""
    read: list[int] = []

    async def reads_the_whole_body(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            read.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    app = create_app(ops, tokens=tokens, mcp_app=reads_the_whole_body, mcp_max_bytes=100_000)
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"Authorization": f"Bearer {tokens.current()}", "Content-Type": "application/json"}
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b" " * 40_000

        streamed = await http.post("/mcp", content=chunks(), headers=headers)
        assert streamed.status_code == 413, streamed.text
        assert error_of(streamed)["error"] == "PayloadTooLarge"
        fits = await http.post("/mcp", content=b"{}", headers=headers)
        assert fits.status_code == 200


async def test_a_bug_is_a_500_with_the_request_id(ops: LocalOperations, tokens: TokenStore) -> None:
    async def broken(**_: Any) -> None:
        raise RuntimeError("boom")

    ops.list_servers = broken  # type: ignore[method-assign]
    transport = httpx2.ASGITransport(app=create_app(ops, tokens=tokens))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        answer = await http.get(
            SERVERS, headers={"Authorization": f"Bearer {tokens.current()}", "X-Request-ID": "r-1"}
        )
    assert answer.status_code == 500
    assert error_of(answer)["error"] == "InternalError"
    assert "r-1" in answer.json()["message"] and "boom" not in answer.text
    assert answer.headers["x-request-id"] == "r-1"


# ---- behaviour ---------------------------------------------------------------------------------


async def test_create_is_201_delete_is_204_and_secrets_stay_masked(
    client: httpx2.AsyncClient,
) -> None:
    spec = stdio_server_spec("masked", "tiny", env={"TOKEN": "s3cret"}, headers={})
    created = await client.post(SERVERS, json=spec)
    assert created.status_code == 201 and "s3cret" not in created.text
    for path in (SERVERS, f"{SERVERS}/masked", f"{SERVERS}/{created.json()['id']}"):
        answer = await client.get(path)
        assert answer.status_code == 200 and "s3cret" not in answer.text
    revealed = await client.get(f"{SERVERS}/masked", params={"reveal": "true"})
    assert revealed.json()["env"] == {"TOKEN": "s3cret"}
    # A GET put back as it is keeps the secret.
    body = {key: created.json()[key] for key in ("description", "env", "args")}
    assert (await client.put(f"{SERVERS}/masked", json=body)).status_code == 200
    again = await client.get(f"{SERVERS}/masked", params={"reveal": "true"})
    assert again.json()["env"] == {"TOKEN": "s3cret"}
    deleted = await client.delete(f"{SERVERS}/masked")
    assert deleted.status_code == 204 and deleted.content == b""


async def test_the_actor_is_the_token_and_whom_its_admin_acts_for(
    client: httpx2.AsyncClient,
) -> None:
    # The token file's token is the admin token named "admin"; its holder may name a person.
    spec = stdio_server_spec("acted", "tiny")
    await client.post(SERVERS, json=spec, headers={"X-Tooldeck-Actor": "cli:alice"})
    await client.post(f"{SERVERS}/acted/disable", json={"reason": "because"})
    await client.post(f"{SERVERS}/acted/enable", headers={"X-Tooldeck-Actor": "bad actor!"})
    events = (await client.get(f"{SERVERS}/acted/events")).json()
    assert [(event["kind"], event["actor"]) for event in events] == [
        ("enabled", "admin"),
        ("disabled", "admin"),
        ("created", "admin on behalf of cli:alice"),
    ]


async def test_without_auth_the_actor_header_names_who_acted(ops: LocalOperations) -> None:
    # The operations socket: private to its user, so the CLI's own name is the actor.
    transport = httpx2.ASGITransport(app=create_app(ops, tokens=None, hosts=None))
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
        spec = stdio_server_spec("local", "tiny")
        await http.post(SERVERS, json=spec, headers={"X-Tooldeck-Actor": "cli:alice"})
        await http.post(f"{SERVERS}/local/disable")
        events = (await http.get(f"{SERVERS}/local/events")).json()
    assert [event["actor"] for event in events] == ["api", "cli:alice"]


async def test_request_ids_are_echoed_or_made(client: httpx2.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith junk"})
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])


async def test_prometheus_metrics(client: httpx2.AsyncClient) -> None:
    await client.post(SERVERS, json=stdio_server_spec('we"ird', "tiny") | {"name": "weird"})
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    assert "# TYPE tooldeck_server_up gauge" in text
    assert 'tooldeck_server_status{server="weird",status="stopped"} 1' in text
    assert 'tooldeck_server_consecutive_failures{server="weird"} 0' in text
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+Inf-]+$')
    for line in text.splitlines():
        assert line.startswith("# ") or sample.match(line), line


# ---- the remote facade's error mapping ---------------------------------------------------------


async def test_remote_raises_the_same_exceptions(ops: LocalOperations, tokens: TokenStore) -> None:
    transport = httpx2.ASGITransport(app=create_app(ops, tokens=tokens))
    remote = RemoteOperations("http://127.0.0.1", tokens.current(), transport=transport)
    async with remote:
        with pytest.raises(NotFound, match="no server 'ghost'"):
            await remote.get_server("ghost")
        with pytest.raises(InvalidInput) as caught:
            await remote.create_server({"name": "Bad"}, actor="t")
        assert caught.value.field == "name" and not caught.value.message.startswith("name:")
        await remote.create_server(stdio_server_spec("twice", "tiny"), actor="t")
        with pytest.raises(Conflict):
            await remote.create_server(stdio_server_spec("twice", "tiny"), actor="t")
        with pytest.raises(PayloadTooLarge):
            await remote.update_server("twice", {"description": "x" * MAX_BODY_BYTES}, actor="t")
        # Names that look like paths stay names.
        for odd in ("..", ".", "a/b", "%2e%2e", "?x=1"):
            with pytest.raises(NotFound):
                await remote.get_server(odd)
    async with RemoteOperations("http://127.0.0.1", "wrong", transport=transport) as intruder:
        with pytest.raises(Unauthorized):
            await intruder.list_servers()


async def test_remote_without_a_daemon_is_unavailable() -> None:
    async with RemoteOperations("http://127.0.0.1:9", "t") as remote:
        with pytest.raises(Unavailable, match="cannot reach"):
            await remote.list_servers()


def test_call_latency_counts_each_call_in_its_bucket() -> None:
    latency = CallLatency()
    for duration_ms in (0.5, 2.0, 2.5, 40.0, 90_000.0):
        latency.observe("calc", "add", duration_ms)
    (tool,) = latency.snapshot()
    assert tool.count == 5 and tool.sum_ms == 90_045.0
    # le=1 ms holds 0.5; le=2.5 holds 0.5, 2.0 and 2.5 (bounds are inclusive); +Inf holds all.
    assert tool.cumulative_counts[:3] == [1, 3, 3]
    assert tool.cumulative_counts[-1] == 4  # 90 s is above the last bound (60 s)


async def test_latency_histograms_of_real_calls_render(ops: LocalOperations) -> None:
    for duration_ms in (0.5, 3.0):
        ops.call_latency.observe("calc", "add", duration_ms)
    text = await render_metrics(ops)
    assert "# TYPE tooldeck_tool_call_duration_seconds histogram" in text
    bucket = "tooldeck_tool_call_duration_seconds_bucket"
    assert f'{bucket}{{server="calc",tool="add",le="0.001"}} 1' in text
    assert f'{bucket}{{server="calc",tool="add",le="0.005"}} 2' in text
    assert f'{bucket}{{server="calc",tool="add",le="+Inf"}} 2' in text
    assert 'tooldeck_tool_call_duration_seconds_sum{server="calc",tool="add"} 0.0035' in text
    assert 'tooldeck_tool_call_duration_seconds_count{server="calc",tool="add"} 2' in text
    assert len(LATENCY_BOUNDS_MS) + 1 == text.count("_bucket{")
