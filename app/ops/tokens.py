"""The facade's API tokens: add (the value shown once), list (never a value), revoke."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.core.access import IssuedToken, TokenCreate, TokenInfo
from app.core.changes import Change
from app.core.errors import Conflict, NotFound
from app.core.events import EventKind
from app.ops.base import OpsBase, validated
from app.runtime.access_tokens import hash_token, new_token_value
from storage.models import ApiToken, GatewayProfile
from storage.queries import add_event

log = logging.getLogger("tooldeck.tokens")


class TokenOperations(OpsBase):
    """Named, scoped tokens of the HTTP API."""

    async def list_tokens(self) -> list[TokenInfo]:
        async with self.db.read() as session:
            rows = (await session.execute(select(ApiToken).order_by(ApiToken.name))).scalars()
            return [TokenInfo.model_validate(row) for row in rows]

    async def add_token(self, data: TokenCreate | dict[str, Any], *, actor: str) -> IssuedToken:
        spec = validated(TokenCreate, data)
        value = new_token_value()
        async with self.db.session() as session:
            if spec.profile is not None:
                found = await session.execute(
                    select(GatewayProfile.id).where(GatewayProfile.name == spec.profile)
                )
                if found.first() is None:
                    raise NotFound(f"no profile {spec.profile!r}", field="profile")
            taken = await session.execute(select(ApiToken.id).where(ApiToken.name == spec.name))
            if taken.first() is not None:
                raise Conflict(f"a token named {spec.name!r} already exists", field="name")
            row = ApiToken(
                name=spec.name,
                scope=spec.scope,
                profile=spec.profile,
                token_hash=hash_token(value),
                created_by=actor,
            )
            session.add(row)
            reach = f", reaching only profile {spec.profile}" if spec.profile else ""
            after = {"name": spec.name, "scope": spec.scope, "profile": spec.profile}
            add_event(
                session,
                None,
                EventKind.TOKEN_ADDED,
                f"token {spec.name} added ({spec.scope}{reach})",
                actor,
                {"before": None, "after": after},
            )
            try:
                await session.flush()
            except IntegrityError:
                raise Conflict(
                    f"a token named {spec.name!r} already exists", field="name"
                ) from None
            info = TokenInfo.model_validate(row)
        log.info("token %s (%s) added by %s", spec.name, spec.scope, actor)
        self.changes.publish(Change.TOKENS, None)
        return IssuedToken(**info.model_dump(), token=value)

    async def revoke_token(self, name: str, *, actor: str) -> None:
        async with self.db.session() as session:
            row = (
                await session.execute(select(ApiToken).where(ApiToken.name == name))
            ).scalar_one_or_none()
            if row is None:
                raise NotFound(f"no token {name!r}")
            before = {"name": row.name, "scope": row.scope, "profile": row.profile}
            await session.delete(row)
            add_event(
                session,
                None,
                EventKind.TOKEN_REVOKED,
                f"token {name} revoked",
                actor,
                {"before": before, "after": None},
            )
        log.info("token %s revoked by %s", name, actor)
        self.changes.publish(Change.TOKENS, None)
