"""This daemon as a node of a fleet: its heartbeat, its leases, and which servers it may run.

On PostgreSQL every daemon is a node. A server placed on a node runs there and nowhere else;
an `any` server runs on the node holding its lease. Each heartbeat renews this node's leases
and claims free ones up to a fair share (storage.fleet). A lease is trusted locally only until
the renewal's send time plus the lease time minus a margin: past that the node stops the
server itself, and its fence process (app.runtime.fence) kills it even if the node is paused.
So a lease's server has stopped here before the lease expires in the database, before any
other node can claim it: no server runs on two nodes at once.

On SQLite there is one node, this one, and it runs every server whatever its placement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app import __version__
from app.core.errors import Conflict
from app.core.settings import Settings
from storage import fleet as fleet_sql
from storage.db import Database
from storage.models import ANY_NODE

logger = logging.getLogger(__name__)

# How many renewals fit in one lease time: one failed renewal still leaves two more.
RENEWALS_PER_LEASE = 4


@dataclass(frozen=True)
class Placed:
    """What the fleet needs to know of a server to say where it runs."""

    id: str
    name: str
    placement: str


LeaseHook = Callable[[frozenset[str], frozenset[str]], Awaitable[None]]


class Fleet:
    """This node: its name, its leases, and `refusal()` for the supervisor before each start."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        advertise_url: str | None = None,
        claims: bool = True,
    ) -> None:
        self.db = db
        self.settings = settings
        self.name = settings.node_name
        self.advertise_url = settings.advertise_url or advertise_url
        self.shared = not db.is_sqlite
        # False for a one-shot CLI run: not a node, it runs only what is placed on this host.
        self.claims = claims
        self.lease_s = settings.lease_s
        self.heartbeat_s = self.lease_s / RENEWALS_PER_LEASE
        # Stop one heartbeat before the local deadline: the renewal in flight may not land.
        self.margin_s = self.heartbeat_s
        self.started_at = datetime.now(UTC)
        self.held: frozenset[str] = frozenset()
        self._names: frozenset[str] = frozenset()
        # CLOCK_MONOTONIC time up to which `held` is safe to run.
        self.safe_until = 0.0
        self.on_leases: LeaseHook | None = None
        self._fence: subprocess.Popen[bytes] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._tick_lock = asyncio.Lock()

    # ---- which servers this node runs ----------------------------------------------------

    def refusal(self, server: Placed) -> str | None:
        """None when this node may run the server now, else why not."""
        if not self.shared or server.placement == self.name:
            return None
        if server.placement != ANY_NODE:
            return f"placed on node {server.placement}"
        if server.id in self.held and self.lease_valid():
            return None
        return "its lease is not held by this node"

    def lease_valid(self) -> bool:
        return time.monotonic() < self.safe_until

    # ---- life ----------------------------------------------------------------------------

    async def join(self) -> None:
        """Register this node (a heartbeat) and, on a shared database, start the fence."""
        if not self.claims:
            return
        if self.shared:
            await self._refuse_a_twin()
        await self._beat()
        if not self.shared:
            return
        self._fence = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "app.runtime.fence", str(self.settings.data_dir)],
            stdin=subprocess.PIPE,
            # Its own session: a Ctrl-C or a signal to our group must not end the fence.
            start_new_session=True,
        )
        self._watch = asyncio.create_task(self._watch_deadline(), name="lease watch")

    async def _refuse_a_twin(self) -> None:
        """Two live daemons of one name would share its leases and run servers twice: a node
        whose name beats within the lease time is watched for two heartbeats; if it beats on,
        this one refuses to start. (One that died a moment ago stops beating.)"""
        seen = await fleet_sql.last_beat(self.db, name=self.name)
        if seen is None or seen[0] <= seen[1] - timedelta(seconds=self.lease_s):
            return
        await asyncio.sleep(2 * self.heartbeat_s)
        again = await fleet_sql.last_beat(self.db, name=self.name)
        if again is not None and again[0] > seen[0]:
            raise Conflict(
                f"a node named {self.name!r} is running on this database: give this daemon a "
                "name of its own with TOOLDECK_NODE"
            )

    async def leave(self) -> None:
        """After the servers stopped: give the leases up for other nodes to take at once."""
        if self._watch is not None:
            self._watch.cancel()
            with suppress(asyncio.CancelledError):
                await self._watch
        self.held, self.safe_until = frozenset(), 0.0
        if self.shared and self.claims:
            with suppress(Exception):
                await fleet_sql.release(self.db, name=self.name)
        fence, self._fence = self._fence, None
        if fence is not None and fence.stdin is not None:
            fence.stdin.close()
            await asyncio.to_thread(fence.wait)

    async def heartbeat(self) -> str:
        """The scheduler's `fleet` job: beat, renew, claim; tell the supervisor what changed."""
        async with self._tick_lock:
            if not self.shared:
                await self._beat()
                return "one node"
            sent = time.monotonic()
            try:
                await self._beat()
                leases = await fleet_sql.renew_and_claim(
                    self.db, name=self.name, lease_s=self.lease_s
                )
            except Exception:
                # The deadline watch stops the servers if no later renewal lands in time.
                logger.warning("renewing the leases of node %s failed", self.name, exc_info=True)
                raise
            before = self.held if self.lease_valid() else frozenset()
            self.held = leases.held
            self.safe_until = sent + self.lease_s - self.margin_s
            self._names = leases.names
            self._tell_fence(leases.names)
            lost, gained = before - leases.held, leases.held - before
            if (lost or gained) and self.on_leases is not None:
                await self.on_leases(lost, gained)
            return (
                f"{len(leases.held)} leases held (share {leases.share} of "
                f"{leases.live_nodes} live node{'s' if leases.live_nodes != 1 else ''})"
            )

    async def claim(self, server: Placed) -> bool:
        """Take an `any` server's lease at once, beyond the fair share: a person asked to start
        it here. False when another node holds it."""
        if not self.shared or not self.claims:
            return False
        async with self._tick_lock:
            sent = time.monotonic()
            if (
                await fleet_sql.claim_one(
                    self.db, name=self.name, server_id=server.id, lease_s=self.lease_s
                )
                is None
            ):
                return False
            deadline = sent + self.lease_s - self.margin_s
            # One deadline covers every lease held: the one renewed longest ago.
            self.safe_until = min(self.safe_until, deadline) if self.lease_valid() else deadline
            if not self.lease_valid():
                self.held = frozenset()
            self.held |= {server.id}
            self._names |= {server.name}
            self._tell_fence(self._names)
            return True

    async def _beat(self) -> None:
        await fleet_sql.beat(
            self.db,
            name=self.name,
            advertise_url=self.advertise_url,
            version=__version__,
            started_at=self.started_at,
        )

    def _tell_fence(self, names: frozenset[str]) -> None:
        fence = self._fence
        if fence is None or fence.stdin is None:
            return
        line = json.dumps({"until": self.safe_until, "servers": sorted(names)}) + "\n"
        try:
            fence.stdin.write(line.encode())
            fence.stdin.flush()
        except (BrokenPipeError, ValueError):
            logger.error("the fence of node %s is gone", self.name)

    async def _watch_deadline(self) -> None:
        """Stop the leased servers when the local deadline passes without a renewal (also
        the first thing a node resumed from a pause does, its timers being overdue)."""
        while True:
            wait = self.safe_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(min(wait, self.heartbeat_s))
                continue
            if self.held:
                lost, self.held = self.held, frozenset()
                logger.warning(
                    "node %s: leases of %d servers lapsed without renewal; stopping them",
                    self.name,
                    len(lost),
                )
                if self.on_leases is not None:
                    await self.on_leases(lost, frozenset())
            await asyncio.sleep(self.heartbeat_s)
