"""No secret of a server in any text Tooldeck shows or stores: API answers, `server show`,
exports, audit rows, events, last errors, logs, alerts and what the gateway tells clients."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from app.core.errors import InvalidInput, StartFailed
from app.core.jsonlog import JsonFormatter
from app.core.log_files import FleetSecrets, SecretsFilter
from app.core.logfile import logging_to_file
from app.core.schemas import MASK
from app.core.settings import Settings
from app.faces.gateway.http_face import AsgiApp, HttpCore
from app.faces.gateway.service import running_router
from app.faces.http.api import create_app
from app.ops.bootstrap import running_core
from app.ops.facade import LocalOperations
from tests.cli_runner import tooldeck
from tests.gateway_helpers import INITIALIZE, MCP_ACCEPT
from tests.runtime_helpers import fast_supervisor, scripted

SERVERS = "/api/v1/toolservers/servers"
URL = "https://user:hunter2-pass@mcp.example/mcp?api_key=qk-777&page=2"
ARGS = ["--token=tok-abc123", "--api-key", "sk-live-42", "--verbose"]
SECRETS = ("hunter2-pass", "qk-777", "tok-abc123", "sk-live-42")


@pytest.fixture
async def api(ops: LocalOperations) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=create_app(ops, tokens=None))
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://127.0.0.1", headers={"X-Tooldeck-Client": "t"}
    ) as http:
        yield http


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, (secret, text)


async def test_urls_and_args_are_masked_in_answers_exports_and_audit(
    ops: LocalOperations, api: httpx2.AsyncClient
) -> None:
    remote = {"name": "remote", "transport": "streamable_http", "url": URL, "auto_start": False}
    local = {"name": "local", "command": "/bin/true", "args": ARGS, "auto_start": False}
    for spec in (remote, local):
        assert (await api.post(SERVERS, json=spec)).status_code == 201
    shown = (await api.get(f"{SERVERS}/remote")).json()
    assert shown["url"] == f"https://user:{MASK}@mcp.example/mcp?api_key={MASK}&page=2"
    args = (await api.get(f"{SERVERS}/local")).json()["args"]
    assert args == [f"--token={MASK}", "--api-key", MASK, "--verbose"]
    for path in (SERVERS, "/api/v1/toolservers/export", "/api/v1/audit"):
        answer = await api.get(path)
        assert answer.status_code == 200 and "mcp.example" in answer.text, path
        assert_clean(answer.text)
    assert_clean(json.dumps([e.model_dump(mode="json") for e in await ops.list_events()]))
    revealed = (await api.get(f"{SERVERS}/local?reveal=true")).json()
    assert revealed["args"] == ARGS
    # A GET edited and sent back keeps the secrets it showed masked.
    edited = {**shown, "description": "edited"}
    body = {key: edited[key] for key in ("url", "description", "transport")}
    assert (await api.put(f"{SERVERS}/remote", json=body)).status_code == 200
    sent_back = {"args": [*args[:3], "--quiet"]}
    assert (await api.put(f"{SERVERS}/local", json=sent_back)).status_code == 200
    assert (await ops.get_server("remote", reveal=True)).url == URL
    assert (await ops.get_server("local", reveal=True)).args == [*ARGS[:3], "--quiet"]


async def test_a_header_value_with_a_control_character_is_refused_unechoed(
    ops: LocalOperations, api: httpx2.AsyncClient
) -> None:
    spec = {
        "name": "nul",
        "transport": "streamable_http",
        "url": "https://mcp.example/mcp",
        "headers": {"Authorization": "Bearer SECRET\x00"},
    }
    answer = await api.post(SERVERS, json=spec)
    assert answer.status_code == 422 and "control character" in answer.text
    assert "SECRET" not in answer.text
    with pytest.raises(InvalidInput):
        await ops.create_server({**spec, "headers": {"X-Key": "a\x1bb"}}, actor="test")


async def test_a_server_that_prints_its_key_on_failure_leaves_it_nowhere(
    ops: LocalOperations, data_dir: Path
) -> None:
    supervisor = fast_supervisor(ops)
    key = "sk-live-0123456789"
    spec = scripted(
        "leaky",
        "--print-env",
        "API_KEY",
        "--exit-at-start",
        "3",
        "--token=tok-abc123",
        env={"API_KEY": key},
        max_failures=1,
        auto_start=False,
    )
    try:
        await ops.create_server(spec, actor="test")
        with pytest.raises(StartFailed) as failed:
            await ops.start_server("leaky", actor="test")
        assert key not in str(failed.value)
        server = await ops.get_server("leaky")
        texts = [
            server.last_startup_error or "",
            server.disabled_reason or "",
            *[event.message for event in await ops.list_events("leaky")],
            *(await ops.log_tail("leaky", 100)),
            (await ops.runtime_info("leaky")).last_error or "",
        ]
        assert any(MASK in text for text in texts), texts
        assert any(f"--token={MASK}" in line for line in await ops.log_tail("leaky", 100))
        for text in texts:
            assert key not in text and "tok-abc123" not in text, text
        # What a webhook or an alert command is sent: the alert as JSON.
        alerts = await ops.evaluate_alerts()
        payloads = json.dumps([alert.model_dump(mode="json") for alert in alerts])
        assert "leaky" in payloads and MASK in payloads
        assert key not in payloads
    finally:
        await supervisor.shutdown()
    assert key not in (data_dir / "logs" / "leaky.log").read_text()
    assert MASK in (data_dir / "logs" / "leaky.log").read_text()


def test_server_show_and_config_mask_what_they_print() -> None:
    added = tooldeck("server", "add", "cli-remote", "--transport", "streamable_http", "--url", URL)
    assert added.returncode == 0, added.stderr
    shown = tooldeck("server", "show", "cli-remote")
    assert shown.returncode == 0, shown.stderr
    assert_clean(shown.stdout)
    env = {
        "TOOLDECK_ALERT_WEBHOOK_URL": "https://hooks.example/services/T0/B0/whsecret99",
        "TOOLDECK_ALERT_COMMAND": "curl -H 'Authorization: Bearer cmdsecret99' https://x",
        "TOOLDECK_DATABASE_URL": "sqlite+aiosqlite:////tmp/x.db?password=dbsecret99",
    }
    config = tooldeck("config", env=env)
    assert config.returncode == 0, config.stderr
    for secret in ("whsecret99", "cmdsecret99", "dbsecret99"):
        assert secret not in config.stdout
    assert "https://hooks.example/********" in config.stdout
    assert "curl ********" in config.stdout


async def test_the_gateway_tells_clients_the_failure_without_the_key(settings: Settings) -> None:
    key = "sk-live-gateway-0123"
    async with running_core(settings) as ops, running_router(ops) as router:
        spec = scripted(
            "leaky", "--print-env", "API_KEY", "--exit-at-start", "3", env={"API_KEY": key}
        )
        await ops.create_server({**spec, "max_failures": 5}, actor="test")
        await router.port.reload()
        core = HttpCore(router, check_hosts=False)
        transport = httpx2.ASGITransport(app=AsgiApp(core))
        try:
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                answer = await http.post(
                    "/mcp/servers/leaky",
                    json=INITIALIZE,
                    headers=MCP_ACCEPT,
                )
        finally:
            core.close()
    error = answer.json()["error"]["message"]
    assert "leaky" in error and MASK in error, error
    assert key not in answer.text


async def test_no_log_file_quotes_a_secret_of_a_server_it_ran(
    ops: LocalOperations, settings: Settings
) -> None:
    """A library's own log line, traceback included (the HTTP layer's unhandled error, say),
    loses the secrets of every server this process has run, in the dashboard's log and the
    daemon's JSON log alike."""
    supervisor = fast_supervisor(ops)
    key = "sk-live-library-0123456789"
    await ops.create_server(scripted("keyed", env={"API_KEY": key}), actor="t")
    try:
        await ops.start_server("keyed", actor="t")
    finally:
        await supervisor.shutdown()

    def a_library_logs_a_failure(name: str) -> None:
        try:
            raise ValueError(f"upstream refused header x-api-key: {key}")
        except ValueError:
            logging.getLogger(name).exception("unhandled error in %s", f"GET /?key={key}")

    with logging_to_file(settings) as dashboard_log:
        a_library_logs_a_failure("some.library")
    written = dashboard_log.read_text()
    assert "unhandled error" in written and "Traceback" in written and MASK in written
    assert key not in written

    record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "%s", (key,), None)
    try:
        raise RuntimeError(key)
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert SecretsFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == MASK and "RuntimeError" in line["exception"]
    assert key not in json.dumps(line)


async def test_a_bug_logged_while_running_a_server_does_not_quote_its_key(
    ops: LocalOperations, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor = fast_supervisor(ops)
    key = "sk-live-bug-0123456789"
    server = await ops.create_server(
        scripted("buggy", env={"API_KEY": key}, max_failures=1, auto_start=False), actor="t"
    )

    async def broken(*_: object, **__: object) -> None:
        raise RuntimeError(f"could not record a start with API_KEY={key}")

    monkeypatch.setattr(supervisor.state, "started", broken)
    try:
        with pytest.raises(StartFailed) as failed:
            await ops.start_server("buggy", actor="test")
    finally:
        await supervisor.shutdown()
    assert key not in str(failed.value)
    logged = caplog.text  # messages and any traceback, as a log handler writes them
    assert "running buggy failed" in logged and "Traceback" in logged
    assert f"API_KEY={MASK}" in logged and key not in logged
    assert key not in ((await ops.get_server(server.id)).last_startup_error or "")


async def test_the_fleet_list_answers_each_server_as_reading_it_alone_does(
    ops: LocalOperations,
) -> None:
    remote = {
        "name": "remote",
        "transport": "streamable_http",
        "url": URL,
        "headers": {"Authorization": "Bearer hunter2-pass"},
        "auto_start": False,
    }
    local = {"name": "local", "command": "/bin/true", "args": ARGS, "env": {"KEY": "qk-777"}}
    for spec in (remote, local):
        await ops.create_server({**spec, "auto_start": False}, actor="test")
    for reveal in (False, True):
        listed = await ops.list_servers(reveal=reveal)
        alone = [await ops.get_server(server.id, reveal=reveal) for server in listed]
        assert [server.name for server in listed] == ["local", "remote"]
        assert listed == alone
        if not reveal:
            assert_clean(json.dumps([server.model_dump(mode="json") for server in listed]))
    assert (await ops.list_servers(reveal=True))[0].env == {"KEY": "qk-777"}


def test_a_record_two_handlers_write_is_scrubbed_once_and_again_after_a_new_secret() -> None:
    secrets = FleetSecrets()
    secrets.remember("a", ["sk-first-0123456789"])
    passes: list[str] = []
    first = secrets.scrub

    def counting(text: str) -> str:
        passes.append(text)
        return first(text)

    secrets.scrub = counting  # type: ignore[assignment]
    file_filter, stderr_filter = SecretsFilter(secrets), SecretsFilter(secrets)
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "key %s", ("sk-first-0123456789",), None
    )
    assert file_filter.filter(record) and stderr_filter.filter(record)
    assert record.getMessage() == f"key {MASK}" and len(passes) == 1

    secrets.remember("b", ["sk-second-0123456789"])
    record.msg = "now sk-second-0123456789"
    assert stderr_filter.filter(record)
    assert record.getMessage() == f"now {MASK}"
