"""`tooldeck gateway --stdio`: every enabled tool as one MCP server on stdin/stdout."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from app.cli.common import cli_settings
from app.core.settings import Settings
from app.ops.attach import running_daemon
from app.runtime.api_token import read_token

# A client waits for `initialize`; give the auto-start servers this long to list their tools
# first, so the client's first listing is already complete.
AUTOSTART_WAIT_S = 15.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gateway = subparsers.add_parser(
        "gateway", help="serve every enabled tool as one MCP server (for MCP clients)"
    )
    gateway.add_argument(
        "--stdio", action="store_true", required=True, help="speak MCP on stdin/stdout"
    )
    gateway.set_defaults(command_runner=serve_gateway)


def serve_gateway(args: argparse.Namespace) -> int:
    settings = cli_settings(args)
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    from app.faces.gateway.server import Gateway

    daemon = await running_daemon(settings)
    if daemon is not None and daemon.url:
        from app.faces.gateway.bridge import GatewayBridge

        bridge = GatewayBridge(daemon.url.rstrip("/") + "/mcp", read_token(settings.data_dir))
        await bridge.run_stdio()
        return 0

    from app.faces.http.ops_socket import serve_operations
    from app.ops.attach import supervising

    # No daemon: this process supervises the data dir, so nothing else may run its servers, and
    # serves its operations to the CLI meanwhile.
    async with supervising(settings, "gateway", serve=serve_operations) as ops:
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
    return 0
