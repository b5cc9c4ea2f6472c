"""`tooldeck server login|logout` against a running daemon and a real OAuth-protected server.

The CLI runs as a user runs it, in a subprocess; the browser is an HTTP client that opens the
URL the CLI printed.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx2
import pytest

from app.core.settings import load_settings
from app.runtime.serverlog import log_path
from tests.cli_runner import one_line_error
from tests.conftest import PYTHON, TEST_SERVERS
from tests.daemon_helpers import REPO_ROOT, Daemon, daemon_env, start_daemon, tooldeck_on, wait_for
from tests.runtime_helpers import free_port


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def oauth_url() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, str(TEST_SERVERS / "oauth_protected.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _listening(port))
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def daemon(data_dir: Path) -> Iterator[Daemon]:
    running = start_daemon(data_dir)
    yield running
    assert running.stop() == 0


def _login(data_dir: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "server", "login", "guarded", *flags],
        cwd=REPO_ROOT,
        env=daemon_env(data_dir),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _printed_url(stdout: IO[str]) -> str:
    for line in stdout:
        if line.strip().startswith("http"):
            return line.strip()
    raise AssertionError("the login printed no URL")


def _add_guarded(data_dir: Path, url: str, *flags: str) -> None:
    added = tooldeck_on(
        data_dir, "server", "add", "guarded", "--transport", "streamable_http", "--url", url, *flags
    )
    assert added.returncode == 0, added.stderr


def _show(data_dir: Path) -> dict[str, object]:
    shown = tooldeck_on(data_dir, "server", "show", "guarded", "--json", "--reveal")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_login_through_the_loopback_listener_then_logout(
    data_dir: Path, daemon: Daemon, oauth_url: str
) -> None:
    _add_guarded(data_dir, oauth_url)
    wait_for(lambda: _show(data_dir)["status"] == "needs_login")
    listing = tooldeck_on(data_dir, "server", "list")
    assert "needs_login" in listing.stdout
    assert "needs login: run `tooldeck server login guarded`" in listing.stdout

    login = _login(data_dir)
    assert login.stdout is not None
    url = _printed_url(login.stdout)
    # The browser follows the authorization server's redirect to the CLI's listener.
    landed = httpx2.get(url, follow_redirects=True, timeout=30)
    assert landed.status_code == 200 and "You can close this tab" in landed.text
    out, err = login.communicate(timeout=60)
    assert login.returncode == 0, err
    assert "logged in to guarded: running" in out

    called = tooldeck_on(data_dir, "tool", "call", "guarded", "add", "--args", '{"a": 4, "b": 5}')
    assert called.returncode == 0, called.stderr
    assert "9" in called.stdout
    settings = load_settings(data_dir)
    with sqlite3.connect(settings.data_dir / "tooldeck.db") as stored:
        (tokens,) = stored.execute("SELECT tokens FROM server_oauth").fetchone()
    secrets = [json.loads(tokens)["access_token"], json.loads(tokens)["refresh_token"]]
    texts = [
        json.dumps(_show(data_dir)),
        tooldeck_on(data_dir, "server", "list", "--reveal", "--json").stdout,
        tooldeck_on(data_dir, "export", "guarded", "--include-secrets").stdout,
        tooldeck_on(data_dir, "events", "guarded").stdout,
        daemon.stderr(),
        log_path(settings, "guarded").read_text(),
    ]
    for text in texts:
        assert not any(secret in text for secret in secrets)

    out_result = tooldeck_on(data_dir, "server", "logout", "guarded")
    assert out_result.returncode == 0, out_result.stderr
    assert "logged out of guarded: needs_login" in out_result.stdout


def test_login_by_pasting_the_redirect(data_dir: Path, daemon: Daemon, oauth_url: str) -> None:
    _add_guarded(data_dir, oauth_url, "--no-auto-start")
    login = _login(data_dir, "--paste", "--port", str(free_port()))
    assert login.stdout is not None and login.stdin is not None
    url = _printed_url(login.stdout)
    # Over SSH the browser is elsewhere: its redirect does not load, the person copies it.
    redirected = httpx2.get(url, timeout=30).headers["location"]
    out, err = login.communicate(redirected + "\n", timeout=60)
    assert login.returncode == 0, err
    assert "logged in to guarded" in out


def test_login_errors_are_one_line(data_dir: Path, daemon: Daemon, oauth_url: str) -> None:
    assert tooldeck_on(data_dir, "server", "add", "plain", "--command", PYTHON).returncode == 0
    refused = tooldeck_on(data_dir, "server", "login", "plain", "--paste")
    assert one_line_error(refused) == "tooldeck: plain is a stdio server: it has no login"
    missing = tooldeck_on(data_dir, "server", "login", "ghost", "--paste")
    assert "ghost" in one_line_error(missing)
    _add_guarded(data_dir, oauth_url, "--no-auto-start")
    login = _login(data_dir, "--paste", "--port", str(free_port()))
    _out, err = login.communicate("http://elsewhere.example/?code=stolen\n", timeout=60)
    assert login.returncode == 1
    assert err.strip().splitlines() == [err.strip()]
    assert "not the redirect to http://127.0.0.1:" in err
