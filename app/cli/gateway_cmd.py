"""`tooldeck gateway --stdio [--server NAME | --profile NAME]`: the fleet as one MCP server on
stdin/stdout, bridged to the daemon's router when one runs, served in-process otherwise."""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import suppress
from pathlib import Path

from app.cli.common import cli_settings
from app.core.errors import TooldeckError
from app.core.settings import Settings
from app.core.stop_signals import Stopped, until_stopped
from app.ops.attach import running_daemon

# A client waits for `initialize`; give the auto-start servers this long to list their tools
# first, so the client's first listing is already complete.
AUTOSTART_WAIT_S = 15.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gateway = subparsers.add_parser(
        "gateway", help="serve the fleet's tools as one MCP server (for MCP clients)"
    )
    gateway.add_argument(
        "--stdio", action="store_true", required=True, help="speak MCP on stdin/stdout"
    )
    add_view_arguments(gateway)
    gateway.set_defaults(command_runner=serve_gateway, raw_output=True)


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--server", metavar="NAME", help="one server exactly as it is, names untouched"
    )
    which.add_argument("--profile", metavar="NAME", help="only a profile's servers and tools")


def view_of(args: argparse.Namespace) -> tuple[str, str | None]:
    """Which view of the router: ("aggregated", None), ("server", NAME) or ("profile", NAME)."""
    if getattr(args, "server", None):
        return "server", args.server
    if getattr(args, "profile", None):
        return "profile", args.profile
    return "aggregated", None


def serve_gateway(args: argparse.Namespace) -> int:
    settings = cli_settings(args)
    # stdout is the protocol from here on: nothing else may write to it.
    from app.faces.gateway.stdio_face import claim_stdio

    protocol = claim_stdio()
    kind, name = view_of(args)

    async def main() -> int:
        # The client stops us with SIGTERM, a closed terminal with SIGHUP: unwind, so servers
        # stop, statuses stay true and usage is written. A stop this way is a normal end.
        outcome = await until_stopped(_serve(settings, kind, name, protocol))
        return 0 if isinstance(outcome, Stopped) else outcome

    return asyncio.run(main())


async def _serve(settings: Settings, kind: str, name: str | None, protocol: tuple[int, int]) -> int:
    daemon = await running_daemon(settings)
    if daemon is not None:
        from app.faces.gateway.bridge import bridge_to_daemon
        from app.faces.gateway.service import socket_path

        path = Path(daemon.gateway_socket) if daemon.gateway_socket else None
        return await bridge_to_daemon(
            path or socket_path(settings.data_dir),
            kind,
            name,
            *protocol,
            reconnect_s=settings.gateway_bridge_reconnect_s,
            max_bytes=settings.max_result_bytes,
        )
    return await _serve_in_process(settings, kind, name, protocol)


async def _serve_in_process(
    settings: Settings, kind: str, name: str | None, protocol: tuple[int, int]
) -> int:
    from app.faces.gateway.router import View
    from app.faces.gateway.service import running_router
    from app.faces.gateway.stdio_face import serve_stdio
    from app.faces.http.ops_socket import serve_operations
    from app.ops.attach import supervising

    # No daemon: this process supervises the data dir, so nothing else may run its servers, and
    # serves its operations to the CLI meanwhile. One server's view starts only that server (the
    # others would cost a process each for nothing).
    try:
        async with supervising(
            settings, "gateway", serve=serve_operations, autostart=kind != "server"
        ) as ops:
            if kind == "server" and name is not None:
                with suppress(TooldeckError):
                    await ops.start_server(name, actor="gateway")
            with suppress(TimeoutError):
                async with asyncio.timeout(AUTOSTART_WAIT_S):
                    await ops.runtime.wait_autostart()  # type: ignore[union-attr]
            async with running_router(ops) as router:
                view = View(router, kind, name)
                missing = view.missing()
                if missing is not None:
                    print(f"tooldeck: {missing}", file=sys.stderr)
                    return 1
                await serve_stdio(router, view, *protocol)
    except TooldeckError as exc:
        print(f"tooldeck: {exc}", file=sys.stderr)
        return 1
    return 0
