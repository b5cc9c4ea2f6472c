"""A real MCP server (the SDK's MCPServer) whose misbehaviour is chosen by flags.

    python tests/servers/scripted.py [--exit-at-start CODE] [--print-env NAME] [--slow-start S]
        [--garbage] [--crash-after N] [--ignore-sigterm] [--spawn-child] [--stubborn-child]
        [--http PORT | --sse PORT]

Healthy by default. Tools: echo, add, fail (a tool error), sleep (async, for call timeouts),
hang (blocks the server's event loop: alive but never answering again), big (a huge text),
add_tool/remove_tool
(change the listing and send `notifications/tools/list_changed`), exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit-at-start", type=int, default=None)
    parser.add_argument("--print-env", action="append", default=[])
    parser.add_argument("--slow-start", type=float, default=0.0)
    parser.add_argument("--garbage", action="store_true")
    parser.add_argument("--crash-after", type=int, default=0)
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--spawn-child", action="store_true")
    # A child that ignores SIGTERM and outlives its parent: only SIGKILL to its group ends it.
    parser.add_argument("--stubborn-child", action="store_true")
    parser.add_argument("--pid-file", default=None)
    parser.add_argument("--http", type=int, default=None)
    parser.add_argument("--sse", type=int, default=None)
    # Others are a real server's own options (a test gives some that look like secrets).
    return parser.parse_known_args()[0]


options = parse()

if options.pid_file:
    with open(options.pid_file, "w") as handle:
        handle.write(f"{os.getpid()}\n")

# Before importing the SDK: a server that dies at start does so as fast as real ones do.
for name in options.print_env:
    # As servers that fail often do: say which key they were given.
    print(f"{name}={os.environ.get(name)!r} was refused", file=sys.stderr, flush=True)

if options.exit_at_start is not None:
    print("fatal: MISSING_API_KEY is not set", file=sys.stderr, flush=True)
    sys.exit(options.exit_at_start)

if options.slow_start:
    print(f"warming up for {options.slow_start} s", file=sys.stderr, flush=True)
    time.sleep(options.slow_start)

if options.garbage:
    # The classic bug: a debug print to stdout, which is the protocol stream.
    print("Server starting... (debug print on stdout)", flush=True)

if options.ignore_sigterm:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

if options.spawn_child or options.stubborn_child:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    argv = [sys.executable, "-c", stubborn] if options.stubborn_child else ["sleep", "600"]
    child = subprocess.Popen(argv)
    if options.pid_file:
        with open(options.pid_file, "a") as handle:
            handle.write(f"{child.pid}\n")

import asyncio  # noqa: E402

from mcp.server.mcpserver import Context, MCPServer  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402

server = MCPServer("scripted", version="1.2.3", log_level="WARNING")
calls = 0


def counted() -> None:
    global calls
    calls += 1
    if options.crash_after and calls >= options.crash_after:
        print(f"crashing on call {calls}", file=sys.stderr, flush=True)
        os._exit(3)


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    counted()
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    counted()
    return a + b


@server.tool()
def fail(message: str = "it broke") -> str:
    """Always a tool error."""
    counted()
    raise ToolError(message)


@server.tool()
async def sleep(seconds: float) -> str:
    """Answer after a while."""
    counted()
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
async def hang() -> str:
    """Block the event loop: the process stays alive and never answers again."""
    counted()
    # Blocking on purpose, in a coroutine: a sync tool would run in a worker thread.
    time.sleep(3600)  # noqa: ASYNC251
    return "unreachable"


def extra_tool(text: str = "") -> str:
    """A tool added at run time."""
    return f"extra {text}"


@server.tool()
async def add_tool(name: str, ctx: Context) -> str:
    """Add a tool and tell the client its listing changed."""
    server.add_tool(extra_tool, name=name, description=f"added at run time: {name}")
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


@server.tool()
async def remove_tool(name: str, ctx: Context) -> str:
    """Remove a tool and tell the client its listing changed."""
    server.remove_tool(name)
    await ctx.session.send_tool_list_changed()
    return f"removed {name}"


@server.tool()
def big(size: int) -> str:
    """A text of `size` characters: more than a client may want."""
    counted()
    return "x" * size


@server.tool(name="exit")
def exit_now(code: int = 0) -> str:
    """End the process at once."""
    os._exit(code)


def main() -> None:
    print("scripted server ready", file=sys.stderr, flush=True)
    if options.http is not None:
        server.run("streamable-http", host="127.0.0.1", port=options.http)
    elif options.sse is not None:
        server.run("sse", host="127.0.0.1", port=options.sse)
    else:
        server.run()
    if options.ignore_sigterm:
        # Outlive the closed stdin too, so only SIGKILL ends it.
        print("lingering after stdin closed", file=sys.stderr, flush=True)
        time.sleep(3600)


if __name__ == "__main__":
    main()
