"""The built-in servers: what they are, and seeding them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.core.errors import Conflict, InvalidInput
from app.core.schemas import ToolServerCreate
from app.core.settings import Settings
from app.ops.servers import ServerOperations
from storage.queries import BUILTINS_SEEDED, deck_fact, find_server, remember_deck_fact


class BuiltinOperations(ServerOperations):
    """Seeding the built-in servers."""

    async def seed_builtin_servers(self) -> list[str]:
        """On the first start with `MCP_ENABLED`, create the built-in servers `MCP_SERVERS`
        names; returns the names created.

        Only once per database: a later start (by any verb, with any MCP_SERVERS) creates none,
        so a built-in left out at first, or removed since, stays away.
        """
        if not self.settings.mcp_enabled:
            return []
        async with self.db.session() as session:
            calculator = await find_server(session, "calculator")
            if calculator is not None and calculator.is_builtin:
                if "calculator" in self.settings.mcp_servers:
                    # The interpreter path is this installation's: follow it if it moved.
                    command = builtin_server_spec("calculator", self.settings)[0].command
                    calculator.command = command
            if await deck_fact(session, BUILTINS_SEEDED) is not None:
                return []
        created = []
        for name in self.settings.mcp_servers:
            spec, reason = builtin_server_spec(name, self.settings)
            try:
                await self.create_server(spec, actor="system", is_builtin=True)
            except Conflict:
                continue  # a server of that name exists, or a process starting now made it
            if reason:
                await self.set_server_enabled(name, False, actor="system", reason=reason)
            created.append(name)
        async with self.db.session() as session:
            seeded = ", ".join(self.settings.mcp_servers) or "none"
            await remember_deck_fact(session, BUILTINS_SEEDED, seeded)
        return created


def builtin_server_spec(name: str, settings: Settings) -> tuple[ToolServerCreate, str | None]:
    """The built-in server `name` and, when it cannot run here, why it is seeded disabled."""
    if name == "calculator":
        return (
            ToolServerCreate(
                name="calculator",
                display_name="Calculator",
                description="Arithmetic and a safe expression evaluator (built in)",
                command=sys.executable,
                args=["-m", "app.builtin.calculator"],
            ),
            None,
        )
    if name == "filesystem":
        files = Path(settings.data_dir) / "files"
        files.mkdir(parents=True, exist_ok=True)
        return (
            ToolServerCreate(
                name="filesystem",
                display_name="Filesystem",
                description=f"Read and write files under {files}",
                command="npx",
                args=["-y", "@modelcontextprotocol/server-filesystem", str(files)],
            ),
            None,
        )
    if name == "browser":
        key = os.environ.get("BRAVE_API_KEY", "")
        return (
            ToolServerCreate(
                name="browser",
                display_name="Brave Search",
                description="Web search through the Brave Search API",
                command="npx",
                args=["-y", "@modelcontextprotocol/server-brave-search"],
                env={"BRAVE_API_KEY": key} if key else {},
            ),
            None if key else "BRAVE_API_KEY is not set: add it to this server's env to enable it",
        )
    raise InvalidInput(f"unknown built-in server {name!r}", field="MCP_SERVERS")
