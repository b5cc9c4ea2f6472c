"""Links to the servers other nodes of the fleet run, so that this node's gateway serves them.

For every enabled server up on another live node, this node keeps an MCP connection to that
node's per-server gateway endpoint (`<advertise url>/mcp/servers/<name>`: the server as it is,
nothing renamed) in the connection registry, beside its own servers' connections. The router
then lists, calls and relays it like any server (notifications, server-to-client requests and
progress pass both ways), except that it does not meter what it forwards: the owner does, under
the client's name. The link authenticates with this node's credential (app.runtime.
node_credentials), never a person's token.

`sync()` runs on every heartbeat and when a server's status changes anywhere: a link opens
when a server comes up elsewhere, and closes (to reopen where it runs next) when the server
stops, moves, or its node stops beating. This node never starts another node's server: a call
for one that is stopped opens a link at once, and its node starts it on demand (or says why
not), as it would for a client of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from urllib.parse import quote

from app.core.changes import Change, ChangeBus
from app.runtime.connections import (
    Connection,
    ConnectionRegistry,
    ConnectionSpec,
    StartError,
    open_connection,
)
from app.runtime.node_credentials import NodeKeys
from storage import fleet as fleet_sql
from storage.db import Database
from storage.fleet import RemoteServer

logger = logging.getLogger(__name__)

# Where a node forwarding a call names its client: the owner meters the call under that name,
# and only when a node's credential opened the session.
FORWARDED_CLIENT_KEY = "dev.tooldeck/client"
CONNECT_TIMEOUT_S = 10.0
CLOSE_S = 2.0
# How long a link that is going away still waits for the answers to calls sent on it.
DRAIN_S = 30.0
DRAIN_POLL_S = 0.05
# Status changes come in bursts (starting, running): look once they settled.
SYNC_DELAY_S = 0.05


@dataclass
class _Link:
    name: str
    node: str
    url: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    conn: Connection | None = None
    # Opened for a call to a stopped server: its node starts it as the link opens.
    on_demand: bool = False


class PeerLinks:
    """This node's links to the servers of the other nodes (see the module doc)."""

    def __init__(
        self,
        db: Database,
        registry: ConnectionRegistry,
        keys: NodeKeys,
        *,
        node: str,
        lease_s: float,
        max_message_bytes: int,
    ) -> None:
        self.db = db
        self.registry = registry
        self.node = node
        self.lease_s = lease_s
        self.max_message_bytes = max_message_bytes
        self._credential = keys.credential(node)
        self.links: dict[str, _Link] = {}
        # Why a server another node runs cannot be reached from here, by server id.
        self.unreachable: dict[str, str] = {}
        self._sync_lock = asyncio.Lock()
        self._pending: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def credential(self) -> str:
        """This node's credential, for the owner's one API route a node may read (its logs)."""
        return self._credential

    def watch(self, changes: ChangeBus) -> None:
        self._unsubscribe = changes.subscribe(self._changed)

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._pending is not None:
            self._pending.cancel()
        for task in list(self._tasks):
            task.cancel()
        links, self.links = self.links, {}
        for link in links.values():
            link.stop.set()
        tasks = {link.task for link in links.values() if link.task is not None} | self._tasks
        if not tasks:
            return
        # Ending a link tells its owner the session is over: a hung owner must not hold up
        # this node's shutdown.
        _done, late = await asyncio.wait(tasks, timeout=CLOSE_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def connection(self, server_id: str) -> Connection | None:
        """The link to a server another node runs, once it is up: for a call that came before
        this node heard the server started there. None when no other node runs it, or the link
        did not come up."""
        link = self.links.get(server_id)
        if link is None or link.task is None or link.task.done():
            # What the database says now: the server may have moved, or its node gone.
            await self.sync()
            link = self.links.get(server_id)
        if link is None:
            # Stopped on the node that runs it: that node starts it on demand when asked to.
            owner = await fleet_sql.node_to_run(
                self.db, server_id=server_id, name=self.node, lease_s=self.lease_s
            )
            if owner is None:
                return None
            async with self._sync_lock:
                link = self.links.get(server_id) or self._open(server_id, owner, on_demand=True)
        if link.task is None:
            return None
        ready = asyncio.ensure_future(link.ready.wait())
        try:
            await asyncio.wait(
                {ready, link.task}, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        conn = link.conn
        return conn if conn is not None and not conn.is_closed else None

    def why_unreachable(self, server_id: str) -> str | None:
        """Why a call to this server, run by another node, cannot be forwarded now; None when
        it can, or when no other node runs it."""
        return self.unreachable.get(server_id)

    # ---- keeping the links ----------------------------------------------------------------

    def _changed(self, change: Change, _server_id: str | None) -> None:
        if change not in (Change.STATUS, Change.SERVERS) or self._pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._pending = loop.call_later(SYNC_DELAY_S, self._spawn_sync)

    def _spawn_sync(self) -> None:
        self._pending = None
        task = asyncio.create_task(self._quiet_sync(), name="peer links")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quiet_sync(self) -> None:
        try:
            await self.sync()
        except Exception:
            logger.warning("updating the links to other nodes' servers failed", exc_info=True)

    async def sync(self) -> None:
        async with self._sync_lock:
            remote = await fleet_sql.running_elsewhere(
                self.db, name=self.node, lease_s=self.lease_s
            )
            wanted = {server.id: server for server in remote}
            for server_id, link in list(self.links.items()):
                server = wanted.get(server_id)
                ended = link.task is None or link.task.done()
                if link.on_demand and not link.ready.is_set() and not ended:
                    continue  # its node is starting the server: not running yet
                moved = server is None or (server.node, server.advertise_url) != (
                    link.node,
                    link.url,
                )
                if ended or moved:
                    del self.links[server_id]
                    link.stop.set()
            for server_id in [sid for sid in self.unreachable if sid not in wanted]:
                del self.unreachable[server_id]
            for server_id, server in wanted.items():
                if server_id in self.links or self._runs_here(server_id):
                    continue
                self._open(server_id, server)

    def _open(self, server_id: str, server: RemoteServer, *, on_demand: bool = False) -> _Link:
        link = _Link(server.name, server.node, server.advertise_url, on_demand=on_demand)
        link.task = asyncio.create_task(self._hold(server_id, link), name=f"link {server.name}")
        self.links[server_id] = link
        return link

    def _runs_here(self, server_id: str) -> bool:
        conn = self.registry.get(server_id)
        return conn is not None and conn.peer_node is None

    async def _hold(self, server_id: str, link: _Link) -> None:
        """Connect to the owner's endpoint for the server and keep the link in the registry
        until told to stop or the owner closes it."""
        spec = ConnectionSpec(
            name=link.name,
            transport="streamable_http",
            url=f"{link.url.rstrip('/')}/mcp/servers/{quote(link.name, safe='')}",
            headers=(("Authorization", f"Bearer {self._credential}"),),
        )

        def closed() -> None:
            # Said at once, for the next call: until the next look finds the server up again or
            # its node gone.
            if link.ready.is_set() and not link.stop.is_set():
                self.unreachable[server_id] = (
                    f"{link.name} runs on node {link.node}, which closed the link to it"
                )

        try:
            async with open_connection(
                spec,
                startup_timeout=CONNECT_TIMEOUT_S,
                max_message_bytes=self.max_message_bytes,
                on_closed=closed,
            ) as conn:
                conn.peer_node = link.node
                self.unreachable.pop(server_id, None)
                if self._runs_here(server_id):
                    return  # it moved here meanwhile
                self.registry.add(server_id, conn)
                link.conn = conn
                link.ready.set()
                try:
                    await _first(link.stop.wait(), conn.closed.wait())
                finally:
                    self.registry.remove(server_id, conn)
                await _drained(conn)
        except StartError as exc:
            if link.on_demand:
                why = f"{link.name} did not start on node {link.node}: {exc.message}"
            else:
                why = (
                    f"{link.name} runs on node {link.node}, which cannot be reached: {exc.message}"
                )
            # Tried again at every heartbeat: said once, and again when the reason changes.
            if self.unreachable.get(server_id) != why:
                logger.warning("%s", why)
            self.unreachable[server_id] = why
        except Exception:
            logger.warning("the link to %s on node %s failed", link.name, link.node, exc_info=True)


async def _drained(conn: Connection) -> None:
    """Out of the registry, so no new call takes it, the link still answers the calls already
    sent on it: one sent a moment before the server stopped there ends as the owner answers
    it, not with "connection closed" (bounded: a hung owner still lets the link go)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_S
    # The answers arrive through handlers the router keeps in `pending`: it has no signal.
    while conn.pending and not conn.is_closed and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(DRAIN_POLL_S)


async def _first(*waits: object) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]  # type: ignore[call-overload]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
