"""A node's credential: made from the fleet's secret and the node's name, checked by the others,
good for the gateway only, and masked in logs once seen."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import pytest

from app.core.errors import Unauthorized
from app.core.log_files import FLEET_SECRETS, SecretsFilter
from app.faces.http.middleware import token_refusal
from app.runtime.access_tokens import Credentials
from app.runtime.api_token import TokenStore
from app.runtime.node_credentials import NodeKeys, fleet_keys
from storage.db import Database


def test_a_credential_names_its_node_and_nothing_else_passes() -> None:
    keys = NodeKeys("a" * 64)
    beta = keys.credential("beta")
    assert keys.node_of(beta) == "beta"
    assert keys.node_of(keys.credential("gpu.box_1")) == "gpu.box_1"
    # Another node's name with beta's code, beta's name with a code changed, another fleet's.
    code = beta.rpartition(":")[2]
    assert keys.node_of(f"tdn_alpha:{code}") is None
    assert keys.node_of(beta[:-1] + ("0" if beta[-1] != "0" else "1")) is None
    assert NodeKeys("b" * 64).node_of(beta) is None
    for junk in ("", "tdn_", "tdn_beta", "tdn_:" + code, "tdk_" + beta[4:], beta + "x"):
        assert keys.node_of(junk) is None


def test_the_credential_opens_the_gateway_and_is_refused_by_the_api(tmp_path: Path) -> None:
    keys = NodeKeys("c" * 64)
    credentials = Credentials(TokenStore(tmp_path))
    beta = keys.credential("beta")
    assert credentials.known(beta) is None  # a daemon that is no node knows no node
    credentials.nodes = keys
    identity = credentials.known(beta)
    assert identity is not None and identity.name == "node:beta"
    assert token_refusal(beta, identity, "POST", "/mcp", b"") is None
    assert token_refusal(beta, identity, "POST", "/mcp/servers/clock", b"") is None
    for method, path in (("GET", "/api/v1/toolservers/servers"), ("POST", "/api/v1/tokens")):
        refusal = token_refusal(beta, identity, method, path, b"")
        assert isinstance(refusal, Unauthorized), refusal


def test_a_credential_checked_is_masked_in_log_lines() -> None:
    secret = "d" * 64
    # Made as the other node makes it, so that only the check here can have remembered it.
    given = "tdn_east:" + hmac.new(secret.encode(), b"east", hashlib.sha256).hexdigest()
    assert NodeKeys(secret).node_of(given) == "east"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sent %s", (given,), None)
    SecretsFilter(FLEET_SECRETS).filter(record)
    assert given not in record.getMessage()


@pytest.mark.both_backends
async def test_every_node_reads_the_one_secret_the_first_made(db: Database) -> None:
    first, second = await fleet_keys(db), await fleet_keys(db)
    assert first.node_of(second.credential("north")) == "north"
