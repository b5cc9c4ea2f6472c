"""`tooldeck gateway --stdio [--server NAME | --profile NAME]` and `tooldeck client-config`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import signal
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from app.core.schemas import MASK
from app.core.settings import Settings, load_settings, resolve_data_dir
from app.ops.attach import running_daemon
from app.runtime.api_token import load_or_create_token
from app.runtime.lock import AlreadyRunning, SupervisorLock

# A client waits for `initialize`; give the auto-start servers this long to list their tools
# first, so the client's first listing is already complete.
AUTOSTART_WAIT_S = 15.0
CLIENTS = ("claude", "cursor", "vscode")
logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from app.cli import profiles_cmd

    profiles_cmd.register(subparsers)
    gateway = subparsers.add_parser(
        "gateway", help="serve the fleet's tools as one MCP server (for MCP clients)"
    )
    gateway.add_argument(
        "--stdio", action="store_true", required=True, help="speak MCP on stdin/stdout"
    )
    which = gateway.add_mutually_exclusive_group()
    which.add_argument(
        "--server", metavar="NAME", help="one server exactly as it is, names untouched"
    )
    which.add_argument("--profile", metavar="NAME", help="only a profile's servers and tools")
    gateway.set_defaults(command_runner=serve_gateway)

    config = subparsers.add_parser(
        "client-config", help="the snippet that points an MCP client at the gateway"
    )
    config.add_argument("client", choices=CLIENTS)
    config.add_argument(
        "--http", action="store_true", help="connect over HTTP to the daemon instead of stdio"
    )
    which = config.add_mutually_exclusive_group()
    which.add_argument("--server", metavar="NAME", help="the endpoint of one server")
    which.add_argument("--profile", metavar="NAME", help="the endpoint of one profile")
    config.add_argument("--reveal", action="store_true", help="print the API token itself")
    config.set_defaults(command_runner=print_client_config)


def _view(args: argparse.Namespace) -> tuple[str, str | None]:
    if getattr(args, "server", None):
        return "server", args.server
    if getattr(args, "profile", None):
        return "profile", args.profile
    return "aggregated", None


def serve_gateway(args: argparse.Namespace) -> int:
    settings = load_settings(args.data_dir, {"data_dir": args.data_dir})
    # stdout is the protocol from here on: nothing else may write to it.
    from app.faces.gateway.stdio_face import claim_stdio

    protocol = claim_stdio()
    kind, name = _view(args)

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        # The client stops us with SIGTERM: unwind, so servers stop and usage is written.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            return await _serve(settings, kind, name, protocol)
        except asyncio.CancelledError:
            return 0

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
    from app.ops.bootstrap import running_core

    # No daemon: this process supervises the data dir, so nothing else may run its servers.
    lock = SupervisorLock(settings.data_dir, "gateway")
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"tooldeck: {exc}", file=sys.stderr)
        return 1
    try:
        # One server: start only that one (the others would cost a process each for nothing).
        async with running_core(settings, autostart=kind != "server") as ops:
            if kind == "server" and name is not None:
                with suppress(Exception):
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
    finally:
        lock.release()
    return 0


def _stdio_entry(args: argparse.Namespace) -> dict[str, Any]:
    # The console script beside this interpreter: clients do not share the shell's PATH.
    script = Path(sys.executable).parent / "tooldeck"
    command = str(script) if script.exists() else shutil.which("tooldeck") or sys.executable
    entry_args = ["gateway", "--stdio"]
    kind, name = _view(args)
    if kind != "aggregated" and name:
        entry_args += [f"--{kind}", name]
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
    kind, name = _view(args)
    path = "/mcp" if kind == "aggregated" else f"/mcp/{kind}s/{name}"
    return {
        "url": f"http://{settings.host}:{settings.port}{path}",
        "headers": {"Authorization": f"Bearer {token}"},
    }


def _entry_name(args: argparse.Namespace) -> str:
    kind, name = _view(args)
    return "tooldeck" if kind == "aggregated" else f"tooldeck-{name}"


def print_client_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.data_dir, {"data_dir": args.data_dir})
    entry = _http_entry(args, settings) if args.http else _stdio_entry(args)
    key = _entry_name(args)
    if args.client == "vscode":
        document = {"servers": {key: {"type": "http" if args.http else "stdio", **entry}}}
    else:
        document = {"mcpServers": {key: entry}}
    print(json.dumps(document, indent=2))
    if args.http and not args.reveal:
        print("# the token is masked: run `tooldeck token show`, or add --reveal", file=sys.stderr)
    return 0
