"""`tooldeck` command line: the dashboard by default, verbs for scripts.

Each area's verbs live in their own module with a `register(subparsers)` function; a verb's
handler is `async def handler(args, ops) -> int` and talks only to the operations facade, so the
same handler works in-process and against a running daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from app import __version__
from app.cli import (
    alerts_cmd,
    analytics,
    client_config,
    clients_cmd,
    config_cmd,
    daemon_cmd,
    gateway_cmd,
    interchange,
    login_cmd,
    nodes_cmd,
    profiles_cmd,
    runtime,
    servers,
    tokens_cmd,
    tools,
    web_cmd,
)
from app.cli.common import Handler, escaped_output, fail, run_handler
from app.core.settings import ConfigError
from app.faces import daemon

# `analytics` adds `server metrics`, so it comes after `servers`.
AREAS = (
    servers,
    tools,
    runtime,
    login_cmd,
    interchange,
    gateway_cmd,
    profiles_cmd,
    client_config,
    config_cmd,
    daemon_cmd,
    tokens_cmd,
    alerts_cmd,
    nodes_cmd,
    analytics,
    clients_cmd,
    web_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tooldeck",
        description="Run, watch and meter a fleet of MCP tool servers. "
        "Without a command, opens the dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"tooldeck {__version__}")
    parser.add_argument("--data-dir", help="where Tooldeck keeps its database, logs and config")
    parser.add_argument(
        "--read-only", action="store_true", help="dashboard: hide every action that changes state"
    )
    daemon.add_arguments(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in AREAS:
        area.register(subparsers)
    return parser


# Options whose value is often itself dash-led (`--arg -m`): argparse would read it as an option.
DASH_VALUE_OPTIONS = ("--arg",)


def join_dash_values(argv: Sequence[str]) -> list[str]:
    joined: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token in DASH_VALUE_OPTIONS:
            value = next(tokens, None)
            joined.append(token if value is None else f"{token}={value}")
        else:
            joined.append(token)
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_dash_values(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handler: Handler | None = getattr(args, "handler", None)
    command_runner: Callable[[argparse.Namespace], int] | None = getattr(
        args, "command_runner", None
    )
    try:
        if args.headless and command_runner is None:
            return daemon.run_headless(args)
        if handler is None and command_runner is None:
            return run_dashboard(args)
        # A verb's output may carry what servers wrote (logs, errors, descriptions): escape
        # what a terminal would act on. The stdio gateway speaks JSON-RPC and keeps its bytes.
        with escaped_output(enabled=not getattr(args, "raw_output", False)):
            if command_runner is not None:
                return command_runner(args)
            assert handler is not None
            return asyncio.run(run_handler(handler, args))
    except ConfigError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: the reader left, which is not an error.
        sys.stderr.close()
        return 0


def run_dashboard(args: argparse.Namespace) -> int:
    from app.faces.http.ops_socket import serve_operations
    from app.tui.main import run as run_tui

    # While the dashboard supervises, the CLI beside it acts through it.
    return run_tui(data_dir=args.data_dir, read_only=args.read_only, serve=serve_operations)


if __name__ == "__main__":
    sys.exit(main())
