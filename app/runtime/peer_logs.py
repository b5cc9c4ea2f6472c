"""A server's log tail read from the node that runs it: the log is a file in that node's data
dir, so another node asks the owner's API (its one route a node's credential opens), and the
owner scrubs secrets from the lines as it does for its own faces."""

from __future__ import annotations

from urllib.parse import quote

import httpx2

from app.core.errors import CallFailed, Unavailable
from storage import fleet as fleet_sql
from storage.db import Database

FETCH_TIMEOUT_S = 5.0
LOGS_ROUTE = "/api/v1/toolservers/servers/{id}/logs"


async def owner_log_tail(
    db: Database,
    *,
    server_id: str,
    server_name: str,
    node: str,
    credential: str,
    lease_s: float,
    lines: int,
) -> list[str] | None:
    """The tail from the node that last ran the server; None when that is this node (or no
    node ran it): the caller reads its own disk."""
    runner = await fleet_sql.last_runner(db, server_id=server_id, lease_s=lease_s)
    if runner is None or runner.node == node:
        return None
    where = f"the logs of {server_name} are on node {runner.node}"
    if not runner.alive:
        raise Unavailable(f"{where}, which is down")
    if runner.advertise_url is None:
        raise Unavailable(f"{where}, which says no address (TOOLDECK_ADVERTISE_URL)")
    url = runner.advertise_url.rstrip("/") + LOGS_ROUTE.format(id=quote(server_id, safe=""))
    try:
        async with httpx2.AsyncClient(timeout=FETCH_TIMEOUT_S) as client:
            answer = await client.get(
                url,
                params={"lines": lines},
                headers={"Authorization": f"Bearer {credential}"},
            )
    except httpx2.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise Unavailable(f"{where}, which cannot be reached: {reason}") from exc
    if answer.status_code != 200:
        raise CallFailed(f"{where}, which answered {answer.status_code}: {answer.text[:200]}")
    body = answer.json()
    if not isinstance(body, list):
        raise CallFailed(f"{where}, which answered something other than lines")
    return [str(line) for line in body]
