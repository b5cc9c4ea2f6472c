"""Two stand-ins for the gateway benchmark, each run as its own process.

`python -m tests.benchmarks.stub_servers stdio`: a stdlib-only MCP server on stdio with ten
tools, so that fifty of them start in seconds and cost little memory (the benchmark measures the
gateway's memory, not theirs).

`python -m tests.benchmarks.stub_servers http PORT`: the HTTP floor. An MCP endpoint that
answers every request at once with one JSON body (httptools, no router, no upstream): what
the SDK's HTTP client and one loopback round trip cost by themselves.
"""

from __future__ import annotations

import asyncio
import json
import sys

import httptools
import orjson

TOOLS = [
    {
        "name": name,
        "description": f"Tool {name} of a stub server.",
        "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}},
    }
    for name in ["echo", *(f"tool{i}" for i in range(9))]
]
INITIALIZED = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"tools": {"listChanged": True}},
    "serverInfo": {"name": "stub", "version": "0"},
}


def answer(message: dict) -> dict:
    method = message["method"]
    if method == "initialize":
        return INITIALIZED
    if method == "tools/list":
        return {"tools": TOOLS}
    if method == "tools/call":
        text = str(message["params"].get("arguments", {}).get("message", ""))
        return {"content": [{"type": "text", "text": f"Echo: {text}"}]}
    return {}


def serve_stdio() -> None:
    for line in sys.stdin:
        message = json.loads(line)
        if "id" in message and "method" in message:
            reply = {"jsonrpc": "2.0", "id": message["id"], "result": answer(message)}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


class _Floor(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.body = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.body = b""

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        assert self.transport is not None
        message = orjson.loads(self.body) if self.body else {}
        if self.parser.get_method() == b"DELETE":
            out, head = b"", b"HTTP/1.1 200 OK\r\n"
        elif "id" in message and "method" in message:
            out = orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": answer(message)})
            head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: s\r\n"
        else:
            out, head = b"", b"HTTP/1.1 202 Accepted\r\n"
        self.transport.write(head + b"content-length: %d\r\n\r\n%b" % (len(out), out))


async def serve_http(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Floor, "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        serve_stdio()
    else:
        asyncio.run(serve_http(int(sys.argv[2])))
