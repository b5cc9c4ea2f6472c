"""Every row of the operations table (app/ops/table.py) works in-process and remotely.

One core with a supervisor runs in this process; `RemoteOperations` reaches the same core
through the HTTP API (`create_app` on an in-process transport), so both answer from one
database. Each row has a case below, run once on each facade: the remote run must send the
row's own request (its method and path), and the two outcomes must agree: the same error
(class and field), or answers of the row's output model, equal where the case is a read of
settled state.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from pydantic import TypeAdapter

from app.core.errors import TooldeckError
from app.core.settings import load_settings
from app.faces.http.api import create_app
from app.governance.alerts import AlertEngine, Finding
from app.ops.bootstrap import running_core
from app.ops.facade import LocalOperations
from app.ops.protocol import Operations
from app.ops.remote import RemoteOperations
from app.ops.table import OPERATIONS, OperationSpec
from tests.conftest import stdio_server_spec
from tests.daemon_helpers import daemon_env

pytestmark = pytest.mark.asyncio(loop_scope="module")

IDLE, CONTROLLED, LIBRARY = "tbl-idle", "tbl-ctl", "tbl-lib"


class Recording(httpx2.AsyncBaseTransport):
    """The remote facade's transport, noting each request's method and path."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.seen.append((request.method, request.url.path))
        return await self.inner.handle_async_request(request)


@dataclass
class Facades:
    local: LocalOperations
    remote: RemoteOperations
    transport: Recording
    alert_id: int


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def facades(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Facades]:
    data_dir = tmp_path_factory.mktemp("table") / "home"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in daemon_env(data_dir).items():
            patch.setenv(key, value)
        async with running_core(load_settings(data_dir)) as local:
            idle = await local.create_server(tiny(IDLE), actor="test")
            await local.create_server(tiny(CONTROLLED), actor="test")
            await local.create_server(
                stdio_server_spec(LIBRARY, "library", auto_start=False), actor="test"
            )
            await local.start_server("calculator", actor="test")
            engine = AlertEngine(local.db, local.settings)
            # A rule of its own: the core's alert job, which may run meanwhile, would resolve a
            # server_down it does not find.
            finding = Finding("table_check", f"server:{idle.id}", "down", server_id=idle.id)
            await engine.apply([finding], ["table_check"])
            [alert] = [a for a in await local.list_alerts() if a.rule == "table_check"]
            transport = Recording(httpx2.ASGITransport(app=create_app(local, tokens=None)))
            async with RemoteOperations("http://127.0.0.1", None, transport=transport) as remote:
                yield Facades(local, remote, transport, alert.id)


def tiny(name: str) -> dict[str, Any]:
    return stdio_server_spec(name, "tiny", auto_start=False)


@dataclass(frozen=True)
class Case:
    call: Callable[[Operations, str, Facades], Awaitable[Any]]  # (facade, side, fixtures)
    same: bool = False  # the two answers are equal (a read of settled state)


async def _made_then_deleted(ops: Operations, side: str, _: Facades) -> None:
    await ops.create_server(tiny(f"gone-{side}"), actor="t")
    return await ops.delete_server(f"gone-{side}", actor="t")


async def _made_then_disabled(ops: Operations, side: str, _: Facades) -> Any:
    await ops.create_server(tiny(f"off-{side}"), actor="t")
    return await ops.disable_server(f"off-{side}", actor="t")


async def _started(ops: Operations, name: str) -> None:
    await ops.start_server(name, actor="t")


async def _refreshed(ops: Operations, _side: str, _: Facades) -> Any:
    await _started(ops, CONTROLLED)
    return await ops.refresh_tools(CONTROLLED, actor="t")


async def _on_library(ops: Operations, read: Callable[[], Awaitable[Any]]) -> Any:
    await _started(ops, LIBRARY)
    return await read()


async def _trimmed_then_restored(ops: Operations, _side: str, _: Facades) -> Any:
    result = await ops.disable_unused_tools(1, actor="t")
    for tool in result.tools:
        await ops.set_tool_enabled(tool.tool_id, True, actor="t")
    return result


async def _profile_updated(ops: Operations, side: str, _: Facades) -> Any:
    await ops.create_profile({"name": f"upd-{side}", "servers": ["*"]}, actor="t")
    return await ops.update_profile(f"upd-{side}", {"tools": ["add", "!*/sqrt"]}, actor="t")


async def _profile_deleted(ops: Operations, side: str, _: Facades) -> Any:
    await ops.create_profile({"name": f"del-{side}", "servers": ["*"]}, actor="t")
    return await ops.delete_profile(f"del-{side}", actor="t")


async def _tokens_listed(ops: Operations, side: str, _: Facades) -> Any:
    await ops.add_token({"name": f"listed-{side}", "scope": "operator"}, actor="t")
    return await ops.list_tokens()


async def _token_revoked(ops: Operations, side: str, _: Facades) -> Any:
    await ops.add_token({"name": f"revoked-{side}", "scope": "gateway"}, actor="t")
    return await ops.revoke_token(f"revoked-{side}", actor="t")


async def _profile_previewed(ops: Operations, side: str, _: Facades) -> Any:
    await ops.create_profile(
        {"name": f"pre-{side}", "servers": ["calculator"], "tools": ["add", "sub*"]}, actor="t"
    )
    preview = await ops.preview_profile(f"pre-{side}")
    assert preview.tool_count == 2 and preview.estimated_tokens > 20
    return preview.model_copy(update={"profile": "pre"})


async def _process_history(ops: Operations, _side: str, _: Facades) -> Any:
    await ops.run_job("resources")
    history = await ops.process_history("calculator", "1h")
    assert history.samples and (history.samples[-1].rss_bytes or 0) > 0
    return history


async def _process_samples(ops: Operations, _side: str, _: Facades) -> Any:
    await ops.run_job("resources")
    samples = await ops.process_samples()
    assert "calculator" in [sample.server_name for sample in samples]
    return samples


DOCUMENT = {"mcpServers": {"imported": {"command": "python", "args": ["-V"]}}}

CASES: dict[str, Case] = {
    "create_server": Case(lambda ops, side, _: ops.create_server(tiny(f"made-{side}"), actor="t")),
    "list_servers": Case(lambda ops, _s, _f: ops.list_servers(text=IDLE), same=True),
    "bulk": Case(
        lambda ops, _s, _f: ops.bulk({"server_ids": ["ghost"], "operation": "stop"}, actor="t"),
        same=True,
    ),
    "get_server": Case(lambda ops, _s, _f: ops.get_server(IDLE, reveal=True), same=True),
    "update_server": Case(
        lambda ops, side, _: ops.update_server(IDLE, {"description": side}, actor="t")
    ),
    "delete_server": Case(_made_then_deleted, same=True),
    "start_server": Case(lambda ops, _s, _f: ops.start_server(CONTROLLED, actor="t")),
    "stop_server": Case(lambda ops, _s, _f: ops.stop_server(CONTROLLED, actor="t")),
    "restart_server": Case(lambda ops, _s, _f: ops.restart_server(CONTROLLED, actor="t")),
    "refresh_tools": Case(_refreshed),
    # A stdio server has no login; the OAuth flow itself is tests/test_upstream_oauth.py's.
    "begin_login": Case(
        lambda ops, _s, _f: ops.begin_login(IDLE, "http://127.0.0.1:1/callback", actor="t"),
        same=True,
    ),
    "finish_login": Case(
        lambda ops, _s, _f: ops.finish_login(IDLE, "http://127.0.0.1:1/callback?code=x", actor="t"),
        same=True,
    ),
    "logout_server": Case(lambda ops, _s, _f: ops.logout_server(IDLE, actor="t")),
    "enable_server": Case(lambda ops, _s, _f: ops.enable_server(IDLE, actor="t")),
    "disable_server": Case(_made_then_disabled),
    "list_tools": Case(lambda ops, _s, _f: ops.list_tools("calculator"), same=True),
    "list_server_events": Case(lambda ops, _s, _f: ops.list_events(IDLE, limit=3), same=True),
    "list_events": Case(lambda ops, _s, _f: ops.list_events(kind="created"), same=True),
    "check_health": Case(lambda ops, _s, _f: ops.check_health("calculator")),
    "runtime_info": Case(lambda ops, _s, _f: ops.runtime_info("calculator")),
    "log_tail": Case(lambda ops, _s, _f: ops.log_tail("calculator", 5)),
    "process_history": Case(_process_history),
    "process_samples": Case(_process_samples),
    "probe_server": Case(lambda ops, _s, _f: ops.probe(IDLE)),
    "probe_definition": Case(lambda ops, _s, _f: ops.probe(tiny("draft"))),
    "server_metrics": Case(lambda ops, _s, _f: ops.server_metrics(IDLE, "1h")),
    "tools_figures": Case(lambda ops, _s, _f: ops.tools_figures("calculator", "1h")),
    "servers_figures": Case(lambda ops, _s, _f: ops.servers_figures("24h")),
    "list_resources": Case(
        lambda ops, _s, _f: _on_library(ops, lambda: ops.list_resources(LIBRARY)), same=True
    ),
    "read_resource": Case(
        lambda ops, _s, _f: _on_library(
            ops, lambda: ops.read_resource(LIBRARY, "library://catalog")
        ),
        same=True,
    ),
    "list_prompts": Case(
        lambda ops, _s, _f: _on_library(ops, lambda: ops.list_prompts(LIBRARY)), same=True
    ),
    "get_prompt": Case(
        lambda ops, _s, _f: _on_library(
            ops, lambda: ops.get_prompt(LIBRARY, "review", {"title": "Dune"})
        ),
        same=True,
    ),
    "get_tool": Case(lambda ops, _s, _f: ops.get_tool("add", "calculator"), same=True),
    "update_tool": Case(
        lambda ops, _s, _f: ops.set_tool_bypass("add", True, actor="t", server_ref="calculator")
    ),
    "enable_tool": Case(
        lambda ops, _s, _f: ops.set_tool_enabled("sqrt", True, actor="t", server_ref="calculator")
    ),
    "disable_tool": Case(
        lambda ops, _s, _f: ops.set_tool_enabled("nope", False, actor="t", server_ref="calculator"),
        same=True,
    ),
    "call_tool": Case(
        lambda ops, _s, _f: ops.call_tool("calculator", "add", {"a": 1, "b": 2}, source="cli")
    ),
    "tool_metrics": Case(lambda ops, _s, _f: ops.tool_metrics("add", "calculator", "1h")),
    "list_gateway_tools": Case(lambda ops, _s, _f: ops.list_gateway_tools(), same=True),
    "analytics": Case(lambda ops, _s, _f: ops.analytics("24h")),
    "clients": Case(lambda ops, _s, _f: ops.clients("24h")),
    "client_detail": Case(lambda ops, _s, _f: ops.client_detail("nobody", "1h"), same=True),
    "time_series": Case(lambda ops, _s, _f: ops.time_series(IDLE, "1h", buckets=6)),
    "scheduler_jobs": Case(lambda ops, _s, _f: ops.scheduler_jobs()),
    "run_job": Case(lambda ops, _s, _f: ops.run_job("health")),
    "list_nodes": Case(lambda ops, _s, _f: ops.list_nodes(), same=True),
    "import_servers": Case(
        lambda ops, _s, _f: ops.import_servers(DOCUMENT, dry_run=True, actor="t"), same=True
    ),
    "export_servers": Case(
        lambda ops, _s, _f: ops.export_servers([IDLE], format="vscode", include_secrets=True),
        same=True,
    ),
    "list_audit": Case(lambda ops, _s, _f: ops.list_audit(IDLE, since="1h", limit=2), same=True),
    "list_alerts": Case(lambda ops, _s, _f: ops.list_alerts(include_resolved=True), same=True),
    "evaluate_alerts": Case(lambda ops, _s, _f: ops.evaluate_alerts()),
    "ack_alert": Case(lambda ops, _s, fixtures: ops.ack_alert(fixtures.alert_id, actor="t")),
    "alert_rules": Case(lambda ops, _s, _f: ops.alert_rules(), same=True),
    "set_alert_rules": Case(
        lambda ops, side, _: ops.set_alert_rules(
            {"values": {"alert_p95_ms": 4000 if side == "local" else 3000}}, actor="t"
        )
    ),
    "get_limits": Case(lambda ops, _s, _f: ops.get_server_limits(IDLE), same=True),
    "set_limits": Case(
        lambda ops, _s, _f: ops.set_server_limits(IDLE, {"max_concurrent_calls": 4}, actor="t")
    ),
    "set_auto_disable": Case(
        lambda ops, _s, _f: ops.set_tool_auto_disable("add", 5, actor="t", server_ref="calculator")
    ),
    "list_profiles": Case(lambda ops, _s, _f: ops.list_profiles(), same=True),
    "create_profile": Case(
        lambda ops, side, _: ops.create_profile(
            {"name": f"made-{side}", "servers": ["calc*"], "tools": ["!sqrt"]}, actor="t"
        )
    ),
    "preview_profile_draft": Case(
        lambda ops, _s, _f: ops.preview_profile_draft({"servers": ["calculator"]}), same=True
    ),
    "get_profile": Case(lambda ops, _s, _f: ops.get_profile("nobody"), same=True),
    "update_profile": Case(_profile_updated),
    "delete_profile": Case(_profile_deleted, same=True),
    "preview_profile": Case(_profile_previewed, same=True),
    "trim_suggestions": Case(lambda ops, _s, _f: ops.trim_suggestions(30)),
    "disable_unused_tools": Case(_trimmed_then_restored),
    "list_tokens": Case(_tokens_listed),
    "add_token": Case(
        lambda ops, side, _: ops.add_token({"name": f"made-{side}", "scope": "read"}, actor="t")
    ),
    "revoke_token": Case(_token_revoked, same=True),
}


async def test_every_row_has_one_case() -> None:
    routes = [spec.route for spec in OPERATIONS]
    assert len(routes) == len(set(routes)), "a route name is used twice"
    assert sorted(CASES) == sorted(routes)


async def _outcome(call: Awaitable[Any]) -> tuple[str, Any]:
    try:
        return "answer", await call
    except TooldeckError as exc:
        return type(exc).__name__, exc.field


@pytest.mark.parametrize("spec", OPERATIONS, ids=lambda spec: spec.route)
async def test_the_row_works_in_process_and_remotely(spec: OperationSpec, facades: Facades) -> None:
    case = CASES[spec.route]
    local = await _outcome(case.call(facades.local, "local", facades))
    facades.transport.seen.clear()
    remote = await _outcome(case.call(facades.remote, "remote", facades))

    path = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(spec.path))
    assert any(
        method == spec.method and re.fullmatch(path, seen)
        for method, seen in facades.transport.seen
    ), f"{spec.route}: the remote facade sent {facades.transport.seen}"
    assert local[0] == remote[0], f"{spec.route}: in-process {local}, remote {remote}"
    if local[0] != "answer":
        assert local == remote
        return
    adapter: TypeAdapter[Any] = TypeAdapter(spec.output)
    for answer in (local[1], remote[1]):
        assert answer is None if spec.output is None else adapter.validate_python(answer) == answer
    if case.same:
        assert local[1] == remote[1]
