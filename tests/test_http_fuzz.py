"""Schema-based fuzzing: requests generated from the API's own OpenAPI document, valid and not,
sent to a real daemon. No answer may be a 5xx, and every error must be JSON with a message.

Bounded: a fixed number of derandomized examples per operation. Operations that start
processes or open connections (start, restart, refresh, probe, import, bulk, and reading a
server's resources and prompts) are left out: a generated definition could name any program on
this machine or any host on the network. For the same reason the daemon gets an empty PATH and
a dead proxy, and generated servers never auto-start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app.faces.http.api import create_app
from app.ops.facade import LocalOperations
from tests.daemon_helpers import Daemon, daemon_env, start_daemon

EXAMPLES_PER_OPERATION = 10
SPAWNING = r"/(start|restart|refresh|probe|import|bulk|resources(/read)?|prompts(/\{name\})?)$"
# Fields that decide what a server runs or reaches: never sent to an existing server.
DEFINITION_FIELDS = ("transport", "command", "args", "env", "cwd", "url", "headers")

# The document only: the app is never served from this object.
_document = create_app(cast(LocalOperations, None), tokens=None).openapi()
schema = schemathesis.openapi.from_dict(_document).exclude(path_regex=SPAWNING)


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "home"
    empty = data_dir.parent / "empty-path"
    empty.mkdir()
    dead_proxy = "http://127.0.0.1:9"
    env = daemon_env(
        data_dir,
        PATH=str(empty),
        HTTP_PROXY=dead_proxy,
        HTTPS_PROXY=dead_proxy,
        ALL_PROXY=dead_proxy,
        NO_PROXY="",
    )
    daemon = start_daemon(data_dir, env=env)
    try:
        yield daemon
    finally:
        daemon.stop()


def _defuse(case: Any) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    if case.method == "POST" and case.path.endswith("/servers"):
        body["auto_start"] = False
    elif case.method == "PUT" and "/servers/" in case.path:
        body.pop("auto_start", None)
        for field in DEFINITION_FIELDS:
            body.pop(field, None)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_5xx_and_every_error_is_json(case: Any, fuzz_daemon: Daemon, tmp_path: Path) -> None:
    _defuse(case)
    response = case.call(base_url=fuzz_daemon.url, headers=fuzz_daemon.headers(), timeout=30)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and body.get("message"), response.text
