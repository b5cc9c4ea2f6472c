"""`tooldeck web`: the dashboard in a real headless Chromium, behind a token, Host and Origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import WSMsgType, test_utils

from app.core.settings import Settings
from app.faces.http.access_guard import HostPolicy
from app.ops.facade import LocalOperations
from app.runtime.access_tokens import Credentials
from app.runtime.api_token import TokenStore, load_or_create_token
from app.tui.web_deck import COOKIE, WebDeck, dashboard_argv
from tests.web_browser import chromium, chromium_missing, open_deck, web_deck

PNG = b"\x89PNG\r\n\x1a\n"
HELP_ROW = "Sort by success rate"  # drawn by the help screen only


async def test_the_page_wants_a_deck_token_and_a_known_host(ops: LocalOperations) -> None:
    token = load_or_create_token(ops.settings.data_dir)
    gateway = await ops.add_token({"name": "mcp-client", "scope": "gateway"}, actor="test")
    reader = await ops.add_token({"name": "watcher", "scope": "read"}, actor="test")
    async with deck_client(ops) as (_deck, http):
        for refused in ("/", "/ws", "/static/js/textual.js", "/?token=wrong"):
            answer = await http.get(refused, allow_redirects=False)
            assert answer.status == 401, refused
        assert "?token=" in await (await http.get("/")).text()
        # A gateway token is for MCP clients: it opens no deck.
        assert (await http.get("/", params={"token": gateway.token})).status == 401
        foreign = await http.get("/", params={"token": token}, headers={"Host": "evil.test"})
        assert foreign.status == 421
        cross = await http.get(
            "/", params={"token": token}, headers={"Origin": "https://evil.test"}
        )
        assert cross.status == 403

        for given in (token, reader.token):
            signed_in = await http.get("/", params={"token": given}, allow_redirects=False)
            assert signed_in.status == 303 and signed_in.headers["Location"] == "/"
            cookie = signed_in.headers["Set-Cookie"]
            assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
            assert "SameSite=Strict" in cookie and token not in cookie
            page = await http.get("/")  # the client keeps the cookie, as a browser does
            assert page.status == 200 and "textual-terminal" in await page.text()
        bearer = await http.get(
            "/", headers={"Authorization": f"Bearer {token}"}, allow_redirects=False
        )
        assert bearer.status == 303


def test_the_dashboard_command_is_an_argument_list() -> None:
    odd = Path("/tmp/a dir; rm -rf ~")
    assert dashboard_argv(odd, read_only=True)[-3:] == ["--data-dir", str(odd), "--read-only"]
    assert "--read-only" not in dashboard_argv(odd, read_only=False)


@pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")
async def test_a_browser_opens_the_deck_and_a_key_reaches_it(
    settings: Settings, tmp_path: Path
) -> None:
    token = load_or_create_token(settings.data_dir)
    with web_deck(settings.data_dir) as url:
        async with chromium(tmp_path / "profile") as page:
            await page.navigate(f"{url}/")
            assert "?token=" in await page.body_text()

            await open_deck(page, url, token)
            assert HELP_ROW not in page.screen_text()
            await page.type("?")
            await page.wait_for_text(HELP_ROW)
            assert any('"stdin"' in frame and "?" in frame for frame in page.sent)
            shot = await page.screenshot()
            assert shot.startswith(PNG) and len(shot) > 10_000


@asynccontextmanager
async def deck_client(ops: LocalOperations) -> AsyncIterator[tuple[WebDeck, test_utils.TestClient]]:
    credentials = Credentials(TokenStore(ops.settings.data_dir), ops.db)
    ops.changes.subscribe(credentials.on_change)
    deck = WebDeck(ops.settings.data_dir, credentials, HostPolicy((), listen_host="127.0.0.1"))
    async with test_utils.TestClient(test_utils.TestServer(await deck.make_app())) as client:
        yield deck, client


async def test_a_read_token_opens_a_read_only_deck(ops: LocalOperations) -> None:
    reader = await ops.add_token({"name": "watcher", "scope": "read"}, actor="test")
    operator = await ops.add_token({"name": "hands", "scope": "operator"}, actor="test")
    async with deck_client(ops) as (deck, client):
        for issued, read_only in ((reader, True), (operator, False)):
            answer = await client.get("/", params={"token": issued.token}, allow_redirects=False)
            assert answer.status == 303
            session = deck.sessions[answer.cookies[COOKIE].value]
            assert session.name == issued.name and session.read_only is read_only


async def test_a_revoked_token_opens_no_more_dashboards(ops: LocalOperations) -> None:
    issued = await ops.add_token({"name": "leaving", "scope": "operator"}, actor="test")
    async with deck_client(ops) as (deck, client):
        signed_in = await client.get("/", params={"token": issued.token}, allow_redirects=False)
        assert signed_in.status == 303
        await ops.revoke_token("leaving", actor="test")
        socket = await client.ws_connect("/ws")
        message = await socket.receive()
        assert message.type == WSMsgType.CLOSE and message.data == 4401
        assert deck.sessions == {}
