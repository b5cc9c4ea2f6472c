"""How one node of a fleet proves to another's gateway which node it is.

The fleet keeps one random secret in the shared database, made by the first node that needs it.
A node's credential is its name and HMAC-SHA256(secret, name): only a holder of the secret can
make one, the owner checks it in constant time, and a leaked credential names the node it came
from. It is never the admin token nor a person's: it opens only the gateway's `/mcp` endpoints,
where the owner of a server meters the calls other nodes forward under their clients' names.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select

from app.core.log_files import FLEET_SECRETS
from storage.db import Database
from storage.dialect import upsert
from storage.models import FleetSecret

NODE_TOKEN_PREFIX = "tdn_"
# Node names hold letters, digits, '.', '-' and '_': the separator is none of those.
SEPARATOR = ":"
# The name of a node as a gateway session's token name, and as usage and audit say it.
NODE_IDENTITY_PREFIX = "node:"
SECRET_BYTES = 32
# Where the log scrubber keeps the fleet's own secrets (beside each server's).
SCRUB_KEY = "\0fleet"


def is_node_identity(token_name: str | None) -> bool:
    return token_name is not None and token_name.startswith(NODE_IDENTITY_PREFIX)


class NodeKeys:
    """The fleet's secret in memory: makes this node's credential and checks the others'."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _mac(self, node: str) -> str:
        return hmac.new(self._key, node.encode(), hashlib.sha256).hexdigest()

    def credential(self, node: str) -> str:
        value = f"{NODE_TOKEN_PREFIX}{node}{SEPARATOR}{self._mac(node)}"
        FLEET_SECRETS.remember(SCRUB_KEY, [value])
        return value

    def node_of(self, given: str) -> str | None:
        """The node whose credential `given` is, or None for anything else."""
        if not given.startswith(NODE_TOKEN_PREFIX):
            return None
        node, separator, mac = given[len(NODE_TOKEN_PREFIX) :].rpartition(SEPARATOR)
        if not separator or not node:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(node).encode()):
            return None
        # The owner's logs mask the credentials it was shown, as the sender's do its own.
        FLEET_SECRETS.remember(SCRUB_KEY, [given])
        return node


async def fleet_keys(db: Database) -> NodeKeys:
    """The fleet's keys, making its secret first when no node has yet (two nodes racing to make
    it both read the one that won)."""
    async with db.session() as session:
        statement = upsert(FleetSecret.__table__, session.bind.dialect).values(
            id=1, secret=secrets.token_hex(SECRET_BYTES)
        )
        await session.execute(statement.on_conflict_do_nothing(index_elements=[FleetSecret.id]))
    async with db.read() as session:
        secret = await session.scalar(select(FleetSecret.secret).where(FleetSecret.id == 1))
    assert secret is not None
    return NodeKeys(secret)
