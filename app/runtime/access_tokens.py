"""Who a bearer token is: the token file's (an admin named `admin`) or a named token from the
database, known there only by the hash of its value.

The HTTP API asks on every request, the gateway's included, so answers are kept in memory: a
token revoked in this process is forgotten at once (the facade publishes the change), one
revoked by another process sharing the database within `CACHE_S`. When a token was last used is
written at most once a minute per token, never once per request.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update

from app.core.access import FILE_TOKEN_NAME, Scope
from app.core.changes import Change
from app.runtime.api_token import TokenStore
from app.runtime.node_credentials import NODE_IDENTITY_PREFIX, NodeKeys
from storage.db import Database
from storage.models import ApiToken, utcnow

log = logging.getLogger(__name__)

TOKEN_PREFIX = "tdk_"
TOKEN_BYTES = 32
CACHE_S = 10.0
LAST_USED_EVERY_S = 60.0


def new_token_value() -> str:
    # The prefix lets a secret scanner (and a person) tell a Tooldeck token from other secrets.
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    """The holder of a token: its name (the audit actor), scope and bound profile."""

    name: str
    scope: Scope
    profile: str | None = None


FILE_TOKEN_IDENTITY = Identity(FILE_TOKEN_NAME, "admin")


@dataclass
class _Known:
    identity: Identity
    fetched: float


class Credentials:
    """The tokens the HTTP API accepts."""

    def __init__(
        self,
        file_token: TokenStore,
        db: Database | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.file_token = file_token
        self.db = db
        self._clock = clock
        self._known: dict[str, _Known] = {}
        self._written: dict[str, float] = {}
        # On a fleet: the other nodes' credentials, for their calls forwarded to our gateway.
        self.nodes: NodeKeys | None = None

    def known(self, given: str) -> Identity | None:
        """The holder of `given` when memory alone can tell and its use needs no writing down;
        None when only `identify` can (an unknown, stale or wrong token). For a caller that
        cannot wait, such as the daemon's lean gateway path, which hands the rest to `identify`."""
        if self.file_token.matches(given):
            return FILE_TOKEN_IDENTITY
        if self.nodes is not None and (node := self.nodes.node_of(given)) is not None:
            return Identity(NODE_IDENTITY_PREFIX + node, "gateway")
        if self.db is None or not given.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(given)
        now = self._clock()
        known = self._fresh(digest, now)
        if known is None or self._use_due(digest, now):
            return None
        return known.identity

    async def identify(self, given: str) -> Identity | None:
        """The holder of `given`, or None for a token nobody holds."""
        if (remembered := self.known(given)) is not None:
            return remembered
        if self.db is None or not given.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(given)
        now = self._clock()
        known = self._fresh(digest, now)
        if known is None:
            async with self.db.read() as session:
                row = (
                    await session.execute(select(ApiToken).where(ApiToken.token_hash == digest))
                ).scalar_one_or_none()
            if row is None:
                self._known.pop(digest, None)
                return None
            known = _Known(Identity(row.name, row.scope, row.profile), now)  # type: ignore[arg-type]
            self._known[digest] = known
        await self._note_use(digest, now)
        return known.identity

    def _fresh(self, digest: str, now: float) -> _Known | None:
        known = self._known.get(digest)
        return known if known is not None and now - known.fetched <= CACHE_S else None

    def _use_due(self, digest: str, now: float) -> bool:
        last = self._written.get(digest)
        return last is None or now - last >= LAST_USED_EVERY_S

    async def _note_use(self, digest: str, now: float) -> None:
        if not self._use_due(digest, now):
            return
        self._written[digest] = now
        assert self.db is not None
        try:
            async with self.db.session() as session:
                await session.execute(
                    update(ApiToken)
                    .where(ApiToken.token_hash == digest)
                    .values(last_used_at=utcnow())
                )
        except Exception:
            # A busy database must not refuse a valid token: the time is only informative.
            log.warning("could not record a token's last use", exc_info=True)

    def forget(self) -> None:
        self._known.clear()

    def on_change(self, change: Change, _subject: str | None) -> None:
        if change is Change.TOKENS:
            self.forget()
