"""Changes made by one process reach the change buses of the others on the same PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from app.core.changes import Change, ChangeBus
from app.core.settings import load_settings
from app.ops.bootstrap import relayed_changes
from app.ops.facade import LocalOperations
from app.runtime.access_tokens import Credentials
from app.runtime.api_token import TokenStore
from app.runtime.change_relay import APPLICATION_PREFIX, ChangeRelay, decode, encode
from storage.db import Database
from tests.daemon_helpers import REPO_ROOT, Daemon, daemon_env, start_daemon
from tests.gateway_helpers import RecordingClient, over_http, until
from tests.pg_server import PgServer
from tests.runtime_helpers import eventually

Heard = list[tuple[Change, str | None]]


def test_a_notice_round_trips_and_anything_else_is_refused() -> None:
    assert decode(encode("1-ab", Change.TOOLS, "s1")) == ("1-ab", Change.TOOLS, "s1")
    assert decode(encode("1-ab", Change.TOKENS, None)) == ("1-ab", Change.TOKENS, None)
    for junk in ("", "[]", '{"origin": "x"}', '{"origin": "x", "change": "weather"}', "{"):
        with pytest.raises(ValueError):
            decode(junk)


def plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listeners_of(url: str, origin_prefix: str) -> list[int]:
    """The backend pids of the listening connections whose origin starts with this."""
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1",
            f"{APPLICATION_PREFIX}{origin_prefix}%",
        )
        return [row["pid"] for row in rows]
    finally:
        await connection.close()


async def terminate(url: str, pid: int) -> None:
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        assert await connection.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await connection.close()


def recording(bus: ChangeBus) -> Heard:
    heard: Heard = []
    bus.subscribe(lambda change, server_id: heard.append((change, server_id)))
    return heard


@pytest.fixture
async def pg_url(pg: PgServer, new_pg_database: object) -> AsyncIterator[str]:
    url = new_pg_database()  # type: ignore[operator]
    yield url
    pg.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
async def two_relays(pg_url: str) -> AsyncIterator[tuple[ChangeRelay, ChangeRelay]]:
    db_a, db_b = Database(pg_url), Database(pg_url)
    relay_a, relay_b = ChangeRelay(ChangeBus(), db_a), ChangeRelay(ChangeBus(), db_b)
    await relay_a.start()
    await relay_b.start()
    try:
        yield relay_a, relay_b
    finally:
        for relay, db in ((relay_a, db_a), (relay_b, db_b)):
            await relay.stop()
            await db.dispose()


async def test_a_change_on_one_bus_is_published_once_on_the_other(
    two_relays: tuple[ChangeRelay, ChangeRelay],
) -> None:
    a, b = two_relays
    heard_a, heard_b = recording(a.bus), recording(b.bus)
    b.bus.publish(Change.TOOLS, "server-1")
    b.bus.publish(Change.PROFILES, None)
    await until(lambda: len(heard_a) >= 2)
    # A marker from A: once B hears it, B's own notices (sent before it) came back too.
    a.bus.publish(Change.TOKENS, None)
    await until(lambda: (Change.TOKENS, None) in heard_b)
    assert heard_a == [(Change.TOOLS, "server-1"), (Change.PROFILES, None), (Change.TOKENS, None)]
    # B heard none of its own again, and A did not send back what it heard.
    assert heard_b == [(Change.TOOLS, "server-1"), (Change.PROFILES, None), (Change.TOKENS, None)]


async def test_the_listener_reconnects_and_then_refreshes_everything(
    two_relays: tuple[ChangeRelay, ChangeRelay], pg_url: str
) -> None:
    a, b = two_relays
    heard_a = recording(a.bus)
    [old] = await listeners_of(pg_url, a.origin)
    await terminate(pg_url, old)
    await until(lambda: a.channel.reconnects == 1)
    # Everything was published once for all servers: what was missed is looked at again.
    assert sorted(heard_a) == sorted((change, None) for change in Change)
    [new] = await listeners_of(pg_url, a.origin)
    assert new != old
    heard_a.clear()
    b.bus.publish(Change.SERVERS, "server-2")
    await until(lambda: (Change.SERVERS, "server-2") in heard_a)


# ---- two real daemons on one PostgreSQL ---------------------------------------------------


@pytest.fixture
def fleet(tmp_path: Path, pg_url: str) -> Iterator[tuple[Daemon, Daemon]]:
    daemons: list[Daemon] = []
    try:
        for name in ("a", "b"):
            home = tmp_path / name / "home"
            # Nodes of one fleet: each needs a name of its own (both run on this host).
            env = daemon_env(home, TOOLDECK_DATABASE_URL=pg_url, TOOLDECK_NODE=f"node-{name}")
            daemons.append(start_daemon(home, env=env))
        yield daemons[0], daemons[1]
    finally:
        for daemon in daemons:
            daemon.stop()


async def gateway_tools(session: object) -> set[str]:
    listing = await session.list_tools()  # type: ignore[attr-defined]
    return {tool.name for tool in listing.tools}


async def test_a_tool_disabled_through_one_daemon_leaves_the_others_gateway(
    fleet: tuple[Daemon, Daemon], pg_url: str
) -> None:
    a, b = fleet
    client = RecordingClient()
    async with over_http(f"{a.url}/mcp", client, a.token) as session:

        async def listed() -> bool:
            return "calculator__add" in await gateway_tools(session)

        await eventually(listed)
        with b.client() as http:
            answer = http.post("/api/v1/toolservers/tools/add/disable?server=calculator")
            assert answer.status_code == 200, answer.text
        # A's gateway only reloads its view when its change bus says so.
        await until(lambda: "notifications/tools/list_changed" in client.methods())
        assert "calculator__add" not in await gateway_tools(session)

        # The listener of A, cut off, comes back and hears B again.
        [old] = await listeners_of(pg_url, f"{a.pid}-")
        await terminate(pg_url, old)

        async def listening_again() -> bool:
            return [old] != await listeners_of(pg_url, f"{a.pid}-") != []

        await eventually(listening_again)
        with b.client() as http:
            answer = http.post("/api/v1/toolservers/tools/add/enable?server=calculator")
            assert answer.status_code == 200, answer.text

        await eventually(listed)


@pytest.fixture
def node(tmp_path: Path, pg_url: str) -> Iterator[Daemon]:
    home = tmp_path / "node" / "home"
    daemon = start_daemon(home, env=daemon_env(home, TOOLDECK_DATABASE_URL=pg_url))
    try:
        yield daemon
    finally:
        daemon.stop()


async def test_a_cli_run_that_ends_at_once_still_tells_the_running_daemons(
    node: Daemon, pg_url: str, tmp_path: Path
) -> None:
    client = RecordingClient()
    async with over_http(f"{node.url}/mcp", client, node.token) as session:

        async def listed() -> bool:
            return "calculator__add" in await gateway_tools(session)

        await eventually(listed)
        # Another machine's CLI: its own data dir, no daemon of its own, the same database.
        home = tmp_path / "laptop" / "home"
        home.mkdir(parents=True)
        ran = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "app", "tool", "disable", "calculator", "add"],
            capture_output=True,
            text=True,
            env=daemon_env(home, TOOLDECK_DATABASE_URL=pg_url),
            cwd=REPO_ROOT,
            timeout=60,
        )
        assert ran.returncode == 0, ran.stderr

        async def unlisted() -> bool:
            return "calculator__add" not in await gateway_tools(session)

        await eventually(unlisted)


async def test_a_token_revoked_through_one_process_is_refused_by_another_at_once(
    pg_url: str, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        facades = []
        for name in ("a", "b"):
            home = tmp_path / name
            settings = load_settings(home).model_copy(update={"database_url": pg_url})
            ops = LocalOperations(Database(pg_url), settings)
            stack.push_async_callback(ops.db.dispose)
            await stack.enter_async_context(relayed_changes(ops))
            facades.append(ops)
        a, b = facades
        # A clock that never moves: A's memory of the token never goes stale on its own.
        credentials = Credentials(TokenStore(tmp_path / "a"), a.db, clock=lambda: 0.0)
        a.changes.subscribe(credentials.on_change)
        issued = await b.add_token({"name": "ci", "scope": "read"}, actor="test")
        assert (await credentials.identify(issued.token)) is not None
        await b.revoke_token("ci", actor="test")
        await until(lambda: credentials.known(issued.token) is None)
        assert await credentials.identify(issued.token) is None
