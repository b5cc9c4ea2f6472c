"""The facade's view of the fleet: its nodes, and where each server runs."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.schemas import NodeResponse, ToolServerResponse
from app.core.settings import Settings
from app.ops.base import OpsBase
from storage.fleet import HELD_STATUSES, FleetView, read_fleet
from storage.models import ANY_NODE, ToolServer


class NodeOperations(OpsBase):
    async def list_nodes(self) -> list[NodeResponse]:
        async with self.db.read() as session:
            view = await read_fleet(session)
            rows = await session.execute(select(ToolServer.id, ToolServer.placement))
            placements = {server_id: placement for server_id, placement in rows}
        runs: Counter[str] = Counter()
        for server_id, placement in placements.items():
            node = _runner(self.single_node, self.settings, view, server_id, placement)
            if node is not None:
                runs[node] += 1
        # One node on SQLite: rows a renamed host left behind are not nodes of anything.
        nodes = [
            node
            for node in view.nodes
            if not self.single_node or node.name == self.settings.node_name
        ]
        return [
            NodeResponse(
                name=node.name,
                advertise_url=node.advertise_url,
                version=node.version,
                started_at=node.started_at,
                heartbeat_at=node.heartbeat_at,
                alive=_alive(self.single_node, self.settings, view, node.name),
                this_node=node.name == self.settings.node_name,
                servers=runs[node.name],
            )
            for node in nodes
        ]


async def place(
    session: AsyncSession, solo: bool, settings: Settings, servers: list[ToolServerResponse]
) -> None:
    """Say which node runs each server, and why none does when none does."""
    if solo:
        node = settings.node_name  # asks the host its name when none is set: once, not per server
        for server in servers:
            server.node = node
        return
    view = await read_fleet(session)
    known = {node.name for node in view.nodes}
    for server in servers:
        server.node = _runner(solo, settings, view, server.id, server.placement)
        if server.node is not None:
            continue
        if server.placement != ANY_NODE:
            server.unplaced_reason = (
                f"node {server.placement} is down"
                if server.placement in known
                else f"node {server.placement} has not joined the fleet"
            )
        elif server.enabled:
            server.unplaced_reason = "no live node holds its lease"
        if server.status in HELD_STATUSES:  # only a live runner keeps these true
            server.status = "stopped"


def _alive(solo: bool, settings: Settings, view: FleetView, name: str) -> bool:
    if solo:
        return name == settings.node_name
    node = next((node for node in view.nodes if node.name == name), None)
    return node is not None and node.heartbeat_at > view.now - timedelta(seconds=settings.lease_s)


def _runner(
    solo: bool, settings: Settings, view: FleetView, server_id: str, placement: str
) -> str | None:
    if solo:
        return settings.node_name
    if placement != ANY_NODE:
        return placement if _alive(solo, settings, view, placement) else None
    lease = view.leases.get(server_id)
    if lease is None or lease[1] <= view.now:
        return None
    return lease[0]
