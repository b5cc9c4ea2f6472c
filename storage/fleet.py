"""The SQL of a fleet: node heartbeats and the leases of `any` servers.

Every time here is the database's clock, never a node's: nodes on several hosts disagree about
the time, and a lease is only safe if all of them read its expiry on one clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from storage.dialect import upsert
from storage.models import ANY_NODE, Node, ServerLease, ToolServer

# Statuses only a node running the server keeps true.
HELD_STATUSES = ("starting", "running", "degraded", "stopping")


@dataclass(frozen=True)
class NodeRow:
    name: str
    advertise_url: str | None
    version: str | None
    started_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True)
class LeaseRound:
    """What one heartbeat left this node holding, by the database's clock."""

    now: datetime
    held: frozenset[str]
    # The names of the held servers, for the fence (it finds processes by server name).
    names: frozenset[str]
    claimed: frozenset[str]
    released: frozenset[str]
    live_nodes: int
    share: int


@dataclass(frozen=True)
class FleetView:
    """The fleet as one read saw it: nodes, lease holders, and the database's time."""

    now: datetime
    nodes: list[NodeRow]
    leases: dict[str, tuple[str, datetime]]


async def database_now(session: AsyncSession) -> datetime:
    """The database's clock (SQLite's is this host's: one node, no other clock to agree with)."""
    if session.bind.dialect.name == "postgresql":
        # clock_timestamp(), not now(): a transaction's start may be well behind its statements.
        value = await session.scalar(select(func.clock_timestamp()))
        assert value is not None
        return value.astimezone(UTC)
    return datetime.now(UTC)


async def beat(
    db: Database, *, name: str, advertise_url: str | None, version: str, started_at: datetime
) -> datetime:
    """Record that this node is alive; returns the database's time of the beat."""
    async with db.session() as session:
        now = await database_now(session)
        values: dict[str, Any] = {
            "name": name,
            "advertise_url": advertise_url,
            "version": version,
            "started_at": started_at,
            "heartbeat_at": now,
        }
        statement = upsert(Node.__table__, session.bind.dialect).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[Node.name],
            set_={key: value for key, value in values.items() if key != "name"},
        )
        await session.execute(statement)
        return now


async def last_beat(db: Database, *, name: str) -> tuple[datetime, datetime] | None:
    """A node's last heartbeat and the database's time now; None for a node never seen."""
    async with db.read() as session:
        now = await database_now(session)
        beat_at = await session.scalar(select(Node.heartbeat_at).where(Node.name == name))
        return None if beat_at is None else (beat_at, now)


async def renew_and_claim(db: Database, *, name: str, lease_s: float) -> LeaseRound:
    """Renew this node's unexpired leases, give up those of servers that are no longer `any`
    and enabled, and claim free ones up to a fair share: ceil(any servers / live nodes).

    One transaction: every claim is a conditional write (an insert that loses to an existing
    row, an update of a row whose expiry passed), so two nodes claiming at once never both
    win one server.
    """
    lease = timedelta(seconds=lease_s)
    async with db.session() as session:
        now = await database_now(session)
        floating = (
            select(ToolServer.id)
            .where(ToolServer.placement == ANY_NODE, ToolServer.enabled.is_(True))
            .scalar_subquery()
        )
        released = await session.scalars(
            delete(ServerLease)
            .where(ServerLease.node == name, ServerLease.server_id.not_in(floating))
            .returning(ServerLease.server_id)
        )
        gone = frozenset(released)
        renewed = await session.scalars(
            update(ServerLease)
            .where(ServerLease.node == name, ServerLease.expires_at > now)
            .values(expires_at=now + lease)
            .returning(ServerLease.server_id)
        )
        held = set(renewed)
        live = await session.scalar(
            select(func.count()).select_from(Node).where(Node.heartbeat_at > now - lease)
        )
        live_nodes = max(1, live or 0)
        any_count = await session.scalar(
            select(func.count())
            .select_from(ToolServer)
            .where(ToolServer.placement == ANY_NODE, ToolServer.enabled.is_(True))
        )
        share = math.ceil((any_count or 0) / live_nodes)
        claimed: set[str] = set()
        wanted = share - len(held)
        if wanted > 0:
            claimed |= await _take_unleased(session, name, now + lease, wanted)
        wanted = share - len(held) - len(claimed)
        if wanted > 0:
            claimed |= await _take_expired(session, name, now, now + lease, wanted)
        held |= claimed
        if claimed:
            # What a status says of a server just claimed is the previous holder's, which may
            # be dead: it is stopped until this node starts it.
            await session.execute(
                update(ToolServer)
                .where(ToolServer.id.in_(claimed), ToolServer.status.in_(HELD_STATUSES))
                .values(status="stopped", status_node=name)
            )
        names = await session.scalars(select(ToolServer.name).where(ToolServer.id.in_(held)))
        return LeaseRound(
            now=now,
            held=frozenset(held),
            names=frozenset(names),
            claimed=frozenset(claimed),
            released=gone,
            live_nodes=live_nodes,
            share=share,
        )


async def _take_unleased(
    session: AsyncSession, name: str, expires_at: datetime, limit: int
) -> set[str]:
    leased = select(ServerLease.server_id)
    candidates = (
        select(ToolServer.id, literal(name), literal(expires_at, type_=ServerLease.expires_at.type))
        .where(
            ToolServer.placement == ANY_NODE,
            ToolServer.enabled.is_(True),
            ToolServer.id.not_in(leased),
        )
        .order_by(ToolServer.name)
        .limit(limit)
    )
    statement = upsert(ServerLease.__table__, session.bind.dialect).from_select(
        ["server_id", "node", "expires_at"], candidates
    )
    rows = await session.scalars(
        statement.on_conflict_do_nothing(index_elements=[ServerLease.server_id]).returning(
            ServerLease.server_id
        )
    )
    return set(rows)


async def _take_expired(
    session: AsyncSession, name: str, now: datetime, expires_at: datetime, limit: int
) -> set[str]:
    floating = select(ToolServer.id).where(
        ToolServer.placement == ANY_NODE, ToolServer.enabled.is_(True)
    )
    expired = (
        select(ServerLease.server_id)
        .where(ServerLease.expires_at <= now, ServerLease.server_id.in_(floating))
        .order_by(ServerLease.server_id)
        .limit(limit)
    )
    # The expiry is tested again on the row itself: a node that renewed in between keeps it.
    rows = await session.scalars(
        update(ServerLease)
        .where(ServerLease.server_id.in_(expired), ServerLease.expires_at <= now)
        .values(node=name, expires_at=expires_at)
        .returning(ServerLease.server_id)
    )
    return set(rows)


async def claim_one(db: Database, *, name: str, server_id: str, lease_s: float) -> datetime | None:
    """Take one `any` server's lease now (a person asked to start it), whatever the fair share:
    only if it is free, expired or already this node's. Returns the database's time of the
    claim, None when another node holds it."""
    async with db.session() as session:
        now = await database_now(session)
        floating = await session.scalar(
            select(ToolServer.id).where(
                ToolServer.id == server_id,
                ToolServer.placement == ANY_NODE,
                ToolServer.enabled.is_(True),
            )
        )
        if floating is None:
            return None
        expires_at = now + timedelta(seconds=lease_s)
        statement = upsert(ServerLease.__table__, session.bind.dialect).values(
            server_id=server_id, node=name, expires_at=expires_at
        )
        statement = statement.on_conflict_do_update(
            index_elements=[ServerLease.server_id],
            set_={"node": name, "expires_at": expires_at},
            where=(ServerLease.expires_at <= now) | (ServerLease.node == name),
        )
        taken = await session.scalar(statement.returning(ServerLease.server_id))
        return now if taken is not None else None


async def release(db: Database, *, name: str, server_ids: list[str] | None = None) -> None:
    """Give up this node's leases (all of them, or these), for another node to take at once."""
    async with db.session() as session:
        query = delete(ServerLease).where(ServerLease.node == name)
        if server_ids is not None:
            query = query.where(ServerLease.server_id.in_(server_ids))
        await session.execute(query)


async def fleet_view(db: Database) -> FleetView:
    async with db.read() as session:
        return await read_fleet(session)


async def read_fleet(session: AsyncSession) -> FleetView:
    now = await database_now(session)
    nodes = (await session.execute(select(Node).order_by(Node.name))).scalars().all()
    leases = (await session.execute(select(ServerLease))).scalars().all()
    return FleetView(
        now=now,
        nodes=[
            NodeRow(n.name, n.advertise_url, n.version, n.started_at, n.heartbeat_at) for n in nodes
        ],
        leases={lease.server_id: (lease.node, lease.expires_at) for lease in leases},
    )


@dataclass(frozen=True)
class RemoteServer:
    """A server another live node runs now, and where that node's gateway is."""

    id: str
    name: str
    node: str
    advertise_url: str


async def running_elsewhere(db: Database, *, name: str, lease_s: float) -> list[RemoteServer]:
    """The enabled servers up on a live node other than `name` that says where it listens."""
    async with db.read() as session:
        now = await database_now(session)
        rows = await session.execute(
            select(ToolServer.id, ToolServer.name, Node.name, Node.advertise_url)
            .join(Node, Node.name == ToolServer.status_node)
            .where(
                ToolServer.enabled.is_(True),
                ToolServer.status.in_(("running", "degraded")),
                Node.name != name,
                Node.advertise_url.is_not(None),
                Node.heartbeat_at > now - timedelta(seconds=lease_s),
            )
        )
        return [RemoteServer(*row) for row in rows]


async def node_to_run(
    db: Database, *, server_id: str, name: str, lease_s: float
) -> RemoteServer | None:
    """The live node other than `name` that runs the server when it runs: the node it is placed
    on, or the holder of its lease; None when that is `name`, nobody, or a node that is down or
    says no address."""
    async with db.read() as session:
        now = await database_now(session)
        server = await session.get(ToolServer, server_id)
        if server is None or not server.enabled:
            return None
        node_name = server.placement
        if node_name == ANY_NODE:
            lease = await session.get(ServerLease, server_id)
            if lease is None or lease.expires_at <= now:
                return None
            node_name = lease.node
        if node_name == name:
            return None
        node = await session.get(Node, node_name)
        if (
            node is None
            or node.advertise_url is None
            or node.heartbeat_at <= now - timedelta(seconds=lease_s)
        ):
            return None
        return RemoteServer(server.id, server.name, node.name, node.advertise_url)


@dataclass(frozen=True)
class LastRunner:
    """The node that last ran a server (its log file is there), and whether it is alive."""

    node: str
    advertise_url: str | None
    alive: bool


async def last_runner(db: Database, *, server_id: str, lease_s: float) -> LastRunner | None:
    """The node that last wrote the server's status, None when no node did."""
    async with db.read() as session:
        now = await database_now(session)
        server = await session.get(ToolServer, server_id)
        if server is None or server.status_node is None:
            return None
        node = await session.get(Node, server.status_node)
        if node is None:
            return LastRunner(server.status_node, None, False)
        alive = node.heartbeat_at > now - timedelta(seconds=lease_s)
        return LastRunner(node.name, node.advertise_url, alive)
