"""`tooldeck gateway --stdio` and `tooldeck client-config claude|cursor|vscode`."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from app.core.schemas import MASK
from app.core.settings import Settings, load_settings, resolve_data_dir
from app.core.stop_signals import Stopped, until_stopped
from app.ops.attach import running_daemon
from app.runtime.api_token import load_or_create_token, read_token
from app.runtime.lock import SupervisorLock

# A client waits for `initialize`; give the auto-start servers this long to list their tools
# first, so the client's first listing is already complete.
AUTOSTART_WAIT_S = 15.0
CLIENTS = ("claude", "cursor", "vscode")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gateway = subparsers.add_parser(
        "gateway", help="serve every enabled tool as one MCP server (for MCP clients)"
    )
    gateway.add_argument(
        "--stdio", action="store_true", required=True, help="speak MCP on stdin/stdout"
    )
    gateway.set_defaults(command_runner=serve_gateway)

    config = subparsers.add_parser(
        "client-config", help="the snippet that points an MCP client at the gateway"
    )
    config.add_argument("client", choices=CLIENTS)
    config.add_argument(
        "--http", action="store_true", help="connect over HTTP to the daemon instead of stdio"
    )
    config.add_argument("--reveal", action="store_true", help="print the API token itself")
    config.set_defaults(command_runner=print_client_config)


def serve_gateway(args: argparse.Namespace) -> int:
    settings = load_settings(args.data_dir, {"data_dir": args.data_dir})
    return asyncio.run(serve_until_stopped(_serve(settings)))


async def serve_until_stopped(serving: Awaitable[int]) -> int:
    """The gateway until it ends or a stop signal (SIGTERM, SIGINT, SIGHUP) ends it cleanly:
    the servers it runs are stopped and their statuses left true. A client stopping its
    server this way is a normal end: exit 0."""
    outcome = await until_stopped(serving)
    return 0 if isinstance(outcome, Stopped) else outcome


async def _serve(settings: Settings) -> int:
    from app.faces.gateway.server import Gateway

    daemon = await running_daemon(settings)
    if daemon is not None and daemon.url:
        from app.faces.gateway.bridge import GatewayBridge

        bridge = GatewayBridge(daemon.url.rstrip("/") + "/mcp", read_token(settings.data_dir))
        await bridge.run_stdio()
        return 0

    from app.ops.bootstrap import running_core

    # No daemon: this process supervises the data dir, so nothing else may run its servers.
    lock = SupervisorLock(settings.data_dir, "gateway")
    lock.acquire()
    try:
        async with running_core(settings) as ops:
            runtime: Any = ops.runtime
            try:
                async with asyncio.timeout(AUTOSTART_WAIT_S):
                    await runtime.wait_autostart()
            except TimeoutError:
                pass  # slow servers join later, announced by list_changed
            gateway = Gateway(
                ops,
                separator=settings.gateway_separator,
                page_size=settings.gateway_page_size,
            )
            try:
                await gateway.run_stdio()
            finally:
                gateway.close()
    finally:
        lock.release()
    return 0


def _stdio_entry(args: argparse.Namespace) -> dict[str, Any]:
    # The console script beside this interpreter: clients do not share the shell's PATH.
    script = Path(sys.executable).parent / "tooldeck"
    command = str(script) if script.exists() else shutil.which("tooldeck") or sys.executable
    entry_args = ["gateway", "--stdio"]
    if command == sys.executable:
        entry_args = ["-m", "app", *entry_args]
    # The client starts the command with its own environment: name the data dir explicitly.
    return {
        "command": command,
        "args": entry_args,
        "env": {"TOOLDECK_HOME": str(resolve_data_dir(args.data_dir))},
    }


def _http_entry(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    # The daemon would make the token at its first start; making it now gives the same file.
    token = load_or_create_token(settings.data_dir) if args.reveal else MASK
    authorization = f"Bearer {token}"
    return {
        "url": f"http://{settings.host}:{settings.port}/mcp",
        "headers": {"Authorization": authorization},
    }


def print_client_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.data_dir, {"data_dir": args.data_dir})
    entry = _http_entry(args, settings) if args.http else _stdio_entry(args)
    if args.client == "vscode":
        document = {"servers": {"tooldeck": {"type": "http" if args.http else "stdio", **entry}}}
    else:
        document = {"mcpServers": {"tooldeck": entry}}
    print(json.dumps(document, indent=2))
    if args.http and not args.reveal:
        print("# the token is masked: run `tooldeck token show`, or add --reveal", file=sys.stderr)
    return 0
