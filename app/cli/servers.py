"""`tooldeck server ...`, `tooldeck bulk ...` and `tooldeck events ...`."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.common import actor, add_json_flag, ago, key_value, print_json, print_table
from app.core.events import EventKind
from app.core.schemas import BULK_OPERATIONS, SERVER_STATUSES, TRANSPORTS, ToolServerResponse
from app.ops.protocol import Operations


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = subparsers.add_parser("server", help="create, show, change and remove servers")
    verbs = server.add_subparsers(dest="verb", metavar="VERB", required=True)

    listing = verbs.add_parser("list", help="list servers")
    listing.add_argument("--status", choices=SERVER_STATUSES)
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--enabled", dest="enabled", action="store_const", const=True)
    state.add_argument("--disabled", dest="enabled", action="store_const", const=False)
    listing.add_argument("--filter", dest="text", help="match name, display name or description")
    listing.add_argument("--reveal", action="store_true", help="show env and header values")
    add_json_flag(listing)
    listing.set_defaults(handler=list_servers)

    show = verbs.add_parser("show", help="show one server")
    show.add_argument("name")
    show.add_argument("--reveal", action="store_true", help="show env and header values")
    add_json_flag(show)
    show.set_defaults(handler=show_server)

    add = verbs.add_parser(
        "add",
        help="add a server",
        description="Add a server: a stdio one runs --command with its --arg values; a "
        "streamable_http or sse one connects to --url. With auto-start on (the default) the "
        "supervising process starts it at once.",
    )
    add.add_argument("name", help="1-64 lowercase letters, digits, '-' or '_'")
    _server_options(add, creating=True)
    add_json_flag(add)
    add.set_defaults(handler=add_server)

    edit = verbs.add_parser("edit", help="change a server (only the options given)")
    edit.add_argument("name")
    _server_options(edit, creating=False)
    add_json_flag(edit)
    edit.set_defaults(handler=edit_server)

    remove = verbs.add_parser("rm", help="delete servers")
    remove.add_argument("names", nargs="+", metavar="NAME")
    remove.set_defaults(handler=remove_servers)

    for verb, enabled in (("enable", True), ("disable", False)):
        toggle = verbs.add_parser(verb, help=f"{verb} servers")
        toggle.add_argument("names", nargs="+", metavar="NAME")
        toggle.set_defaults(handler=enable_servers if enabled else disable_servers)

    bulk = subparsers.add_parser(
        "bulk",
        help=f"one operation on many servers ({', '.join(BULK_OPERATIONS)})",
        description="Apply one operation to each named server and report each outcome; exit 1 "
        "when any of them failed.",
    )
    bulk.add_argument("operation", choices=BULK_OPERATIONS, help=", ".join(BULK_OPERATIONS))
    bulk.add_argument("names", nargs="+", metavar="NAME")
    add_json_flag(bulk)
    bulk.set_defaults(handler=bulk_operation)

    events = subparsers.add_parser(
        "events",
        help="recent events, of one server or all",
        description="What happened, newest first: starts, stops, failures, health changes, "
        "edits (with who made them), alerts and jobs.",
    )
    events.add_argument("name", nargs="?", help="one server's events only")
    events.add_argument(
        "--kind", help=f"only events of this kind ({', '.join(kind.value for kind in EventKind)})"
    )
    events.add_argument(
        "--limit", type=int, default=50, metavar="N", help="at most this many (default 50)"
    )
    add_json_flag(events)
    events.set_defaults(handler=list_events)


def _server_options(parser: argparse.ArgumentParser, *, creating: bool) -> None:
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        help="stdio runs a command; streamable_http and sse connect to a URL (default stdio)",
    )
    parser.add_argument("--command", help="the program a stdio server runs")
    parser.add_argument(
        "--arg",
        dest="args",
        action="append",
        metavar="ARG",
        help="an argument of the command (repeat; on edit, replaces all)",
    )
    parser.add_argument(
        "--env",
        action="append",
        type=key_value,
        metavar="KEY=VALUE",
        help="an environment variable of the server (repeat); masked in every output",
    )
    parser.add_argument("--cwd", metavar="DIR", help="the directory a stdio server runs in")
    parser.add_argument("--url", help="the address of a streamable_http or sse server")
    parser.add_argument(
        "--header",
        action="append",
        type=key_value,
        metavar="KEY=VALUE",
        help="an HTTP header sent to a remote server (repeat); masked in every output",
    )
    parser.add_argument(
        "--display-name", metavar="TEXT", help="a friendlier name to show (up to 200 chars)"
    )
    parser.add_argument("--description", metavar="TEXT", help="what the server is for")
    parser.add_argument(
        "--max-failures",
        type=int,
        metavar="N",
        help="failed starts, exits or health checks in a row before it is disabled (1-10, "
        "default 3)",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        dest="startup_timeout_s",
        metavar="SECONDS",
        help="how long a start may take, in seconds (up to 600, default 30)",
    )
    parser.add_argument(
        "--call-timeout",
        type=float,
        dest="call_timeout_s",
        metavar="SECONDS",
        help="how long a tool call may take, in seconds (up to 3600, default 60)",
    )
    parser.add_argument(
        "--placement",
        metavar="NODE|any",
        help="the node that runs it, or any live node of the fleet (default: this node for a "
        "stdio server, any for a remote one)",
    )
    if creating:
        parser.add_argument(
            "--no-auto-start",
            dest="auto_start",
            action="store_false",
            help="start it only when asked (or on a call), not with Tooldeck",
        )
        parser.add_argument(
            "--no-auto-update",
            dest="auto_update",
            action="store_false",
            help="do not re-list its tools on the capabilities job's schedule",
        )
        parser.add_argument(
            "--disabled", dest="enabled", action="store_false", help="add it disabled"
        )
    else:
        for flag, what in (
            ("auto-start", "start it with Tooldeck and when enabled"),
            ("auto-update", "re-list its tools on the capabilities job's schedule"),
        ):
            dest = flag.replace("-", "_")
            group = parser.add_mutually_exclusive_group()
            group.add_argument(f"--{flag}", dest=dest, action="store_const", const=True, help=what)
            group.add_argument(
                f"--no-{flag}", dest=dest, action="store_const", const=False, help="do not"
            )
        parser.add_argument(
            "--unset-env", action="append", metavar="KEY", default=[], help="remove a variable"
        )
        parser.add_argument(
            "--unset-header", action="append", metavar="KEY", default=[], help="remove a header"
        )


SIMPLE_FIELDS = (
    "transport",
    "command",
    "args",
    "cwd",
    "url",
    "display_name",
    "description",
    "max_failures",
    "startup_timeout_s",
    "call_timeout_s",
    "auto_start",
    "auto_update",
    "enabled",
    "placement",
)


def _given_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields = {
        name: getattr(args, name) for name in SIMPLE_FIELDS if getattr(args, name, None) is not None
    }
    return fields


def server_rows(servers: list[ToolServerResponse]) -> list[list[Any]]:
    return [
        [
            server.name,
            server.status,
            "yes" if server.enabled else "no",
            server.transport,
            f"{server.enabled_tools_count}/{server.tools_count}",
            server.consecutive_failures,
            ago(server.last_health_check),
            server.node or "-",
            server.unplaced_reason or server.disabled_reason or server.last_startup_error or "",
        ]
        for server in servers
    ]


SERVER_HEADERS = (
    "name",
    "status",
    "enabled",
    "transport",
    "tools",
    "fails",
    "checked",
    "node",
    "note",
)


async def list_servers(args: argparse.Namespace, ops: Operations) -> int:
    servers = await ops.list_servers(
        status=args.status, enabled=args.enabled, text=args.text, reveal=args.reveal
    )
    if args.json:
        print_json(servers)
    else:
        print_table(SERVER_HEADERS, server_rows(servers))
    return 0


def print_server(server: ToolServerResponse) -> None:
    for field, value in server.model_dump(mode="json").items():
        if isinstance(value, list):
            value = " ".join(value) if value else "-"
        elif isinstance(value, dict):
            value = ", ".join(f"{key}={item}" for key, item in value.items()) or "-"
        print(f"{field:22} {'-' if value is None else value}")


async def show_server(args: argparse.Namespace, ops: Operations) -> int:
    server = await ops.get_server(args.name, reveal=args.reveal)
    print_json(server) if args.json else print_server(server)
    return 0


async def add_server(args: argparse.Namespace, ops: Operations) -> int:
    data = {"name": args.name, **_given_fields(args)}
    data["env"] = dict(args.env or [])
    data["headers"] = dict(args.header or [])
    server = await ops.create_server(data, actor=actor())
    if args.json:
        print_json(server)
    else:
        print(f"added {server.name} ({server.id})")
    return 0


async def edit_server(args: argparse.Namespace, ops: Operations) -> int:
    changes = _given_fields(args)
    if args.env or args.unset_env or args.header or args.unset_header:
        current = await ops.get_server(args.name)  # masked values mean "unchanged"
        if args.env or args.unset_env:
            env = {**current.env, **dict(args.env or [])}
            changes["env"] = {key: value for key, value in env.items() if key not in args.unset_env}
        if args.header or args.unset_header:
            headers = {**current.headers, **dict(args.header or [])}
            changes["headers"] = {
                key: value for key, value in headers.items() if key not in args.unset_header
            }
    server = await ops.update_server(args.name, changes, actor=actor())
    if args.json:
        print_json(server)
    else:
        print(f"updated {server.name}")
    return 0


async def remove_servers(args: argparse.Namespace, ops: Operations) -> int:
    for name in args.names:
        await ops.delete_server(name, actor=actor())
        print(f"deleted {name}")
    return 0


async def enable_servers(args: argparse.Namespace, ops: Operations) -> int:
    for name in args.names:
        await ops.enable_server(name, actor=actor())
        print(f"enabled {name}")
    return 0


async def disable_servers(args: argparse.Namespace, ops: Operations) -> int:
    for name in args.names:
        await ops.disable_server(name, actor=actor())
        print(f"disabled {name}")
    return 0


async def bulk_operation(args: argparse.Namespace, ops: Operations) -> int:
    result = await ops.bulk({"server_ids": args.names, "operation": args.operation}, actor=actor())
    if args.json:
        print_json(result)
    else:
        for item in result.results:
            print(f"{'ok ' if item.success else 'FAIL'} {item.server_id}: {item.message}")
        print(f"{result.successful} of {result.total_requested} succeeded")
    return 0 if result.failed == 0 else 1


async def list_events(args: argparse.Namespace, ops: Operations) -> int:
    events = await ops.list_events(args.name, kind=args.kind, limit=args.limit)
    if args.json:
        print_json(events)
    else:
        print_table(
            ("time", "server", "kind", "by", "message"),
            (
                [
                    event.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    event.server_name or "-",
                    event.kind,
                    event.actor or "-",
                    event.message,
                ]
                for event in events
            ),
        )
    return 0
