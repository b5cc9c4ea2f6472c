"""The built-in servers: what they are, and seeding them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.core.errors import InvalidInput
from app.core.schemas import ToolServerCreate
from app.core.settings import Settings
from app.ops.servers import ServerOperations
from storage.queries import find_server


class BuiltinOperations(ServerOperations):
    """Seeding the built-in servers."""

    async def seed_builtin_servers(self) -> list[str]:
        """Create the configured built-in servers that do not exist yet; returns their names."""
        if not self.settings.mcp_enabled:
            return []
        created = []
        for name in self.settings.mcp_servers:
            spec, reason = builtin_server_spec(name, self.settings)
            async with self.db.session() as session:
                existing = await find_server(session, name)
                if existing is not None:
                    if existing.is_builtin and name == "calculator":
                        # The interpreter path is this installation's: follow it if it moved.
                        existing.command = spec.command
                    continue
            await self.create_server(spec, actor="system", is_builtin=True)
            if reason:
                await self.set_server_enabled(name, False, actor="system", reason=reason)
            created.append(name)
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
