"""A real MCP server that takes memory or CPU on request, for the resource-limit tests.

Tools: grow(mb) holds mb more MiB (touched, so it is resident); burn(seconds) spins a thread.
"""

from __future__ import annotations

import threading
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("hungry", version="0.1.0", log_level="WARNING")
held: list[bytearray] = []


@server.tool()
def grow(mb: int) -> str:
    """Hold mb more MiB of resident memory."""
    # bytearray(n) is zero pages the kernel may not back yet; writing every page makes it RSS.
    block = bytearray(mb * 1024 * 1024)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    held.append(block)
    return f"holding {sum(len(item) for item in held) // (1024 * 1024)} MiB"


@server.tool()
def burn(seconds: float) -> str:
    """Keep one core busy for a while, in the background."""

    def spin() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass

    threading.Thread(target=spin, daemon=True).start()
    return f"burning for {seconds} s"


if __name__ == "__main__":
    server.run()
