"""What `Credentials` can tell without the database: the daemon's lean gateway path admits a
named token only when this memory knows it and its use needs no writing down, and asks
`identify` (the middleware) otherwise."""

from __future__ import annotations

from pathlib import Path

from app.core.changes import Change
from app.ops.facade import LocalOperations
from app.runtime.access_tokens import (
    CACHE_S,
    FILE_TOKEN_IDENTITY,
    LAST_USED_EVERY_S,
    Credentials,
    Identity,
)
from app.runtime.api_token import TokenStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_knows_a_token_only_after_identify_and_until_it_is_stale_or_due(
    ops: LocalOperations, data_dir: Path
) -> None:
    clock = Clock()
    file_token = TokenStore(data_dir)
    credentials = Credentials(file_token, ops.db, clock=clock)
    value = (await ops.add_token({"name": "gw", "scope": "gateway"}, actor="test")).token
    assert credentials.known(file_token.current()) == FILE_TOKEN_IDENTITY
    assert credentials.known(value) is None  # never looked up
    assert credentials.known("tdk_nobody") is None and credentials.known("plain") is None

    gateway = Identity("gw", "gateway")
    assert await credentials.identify(value) == gateway
    assert credentials.known(value) == gateway
    clock.now += CACHE_S + 1  # stale: the token may have been revoked by another process
    assert credentials.known(value) is None
    assert await credentials.identify(value) == gateway
    assert credentials.known(value) == gateway

    first_use = 1000.0
    clock.now = first_use + LAST_USED_EVERY_S - 1
    assert await credentials.identify(value) == gateway  # fetched again, its use not yet due
    clock.now += 2  # fresh, but its last use is due to be written
    assert credentials.known(value) is None
    assert await credentials.identify(value) == gateway
    assert credentials.known(value) == gateway

    credentials.on_change(Change.TOKENS, None)  # revoked or added here
    assert credentials.known(value) is None
