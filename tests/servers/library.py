"""A real MCP server with tools, resources and prompts, for the gateway's tests.

    python tests/servers/library.py [--name NAME]

Its `add` tool shares its name with the calculator's, so two servers expose a tool of the same
name. `lookup` has an output schema, annotations, icons and `_meta` that the gateway must pass
through.
"""

from __future__ import annotations

import argparse
import asyncio

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import Icon, ToolAnnotations
from pydantic import BaseModel

parser = argparse.ArgumentParser()
parser.add_argument("--name", default="library")
options = parser.parse_args()

server = MCPServer(options.name, version="2.0.0", log_level="WARNING")

BOOKS = {"1": "Dune", "2": "Solaris"}


class Book(BaseModel):
    id: str
    title: str


@server.tool(
    annotations=ToolAnnotations(read_only_hint=True, title="Look up a book"),
    icons=[Icon(src="https://library.example/book.png", mime_type="image/png")],
    meta={"example.library/shelf": "fiction"},
)
def lookup(book_id: str) -> Book:
    """Find a book by its id."""
    if book_id not in BOOKS:
        raise ToolError(f"no book {book_id}")
    return Book(id=book_id, title=BOOKS[book_id])


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers (a different `add` from the calculator's)."""
    return a + b + 1000


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer: for timeouts and cancellation."""
    await asyncio.sleep(seconds)
    return "done"


@server.resource("library://catalog", mime_type="text/plain")
def catalog() -> str:
    """Every book, one per line."""
    return "\n".join(f"{key}: {title}" for key, title in BOOKS.items())


@server.prompt()
def review(title: str) -> str:
    """Ask for a short review of a book."""
    return f"Write a two-sentence review of {title} from {options.name}."


if __name__ == "__main__":
    server.run()
