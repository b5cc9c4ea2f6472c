"""The built-in servers are seeded on the first start only, whatever verb starts next."""

from __future__ import annotations

import json

from app.ops.facade import LocalOperations
from tests.cli_runner import tooldeck


def names(result_stdout: str) -> set[str]:
    return {server["name"] for server in json.loads(result_stdout)}


def test_a_later_start_never_seeds_what_the_first_left_out() -> None:
    first = tooldeck("server", "list", "--json", env={"MCP_SERVERS": "calculator"})
    assert first.returncode == 0, first.stderr
    assert names(first.stdout) == {"calculator"}
    everything = {"MCP_SERVERS": "filesystem,browser,calculator"}  # the default
    for verb in (("server", "list", "--json"), ("events", "--json")):
        result = tooldeck(*verb, env=everything)
        assert result.returncode == 0, result.stderr
    later = tooldeck("server", "list", "--json", env=everything)
    assert names(later.stdout) == {"calculator"}


async def test_seeding_happens_once_per_database(ops: LocalOperations) -> None:
    ops.settings.mcp_servers = ["calculator"]
    assert await ops.seed_builtin_servers() == ["calculator"]
    ops.settings.mcp_servers = ["calculator", "filesystem", "browser"]
    assert await ops.seed_builtin_servers() == []
    assert [server.name for server in await ops.list_servers()] == ["calculator"]


async def test_a_first_start_without_builtins_leaves_seeding_for_later(
    ops: LocalOperations,
) -> None:
    ops.settings.mcp_enabled = False
    assert await ops.seed_builtin_servers() == []
    ops.settings.mcp_enabled = True
    ops.settings.mcp_servers = ["calculator"]
    assert await ops.seed_builtin_servers() == ["calculator"]
