"""`tooldeck tool list|enable|disable|bypass`."""

from __future__ import annotations

import argparse

from app.cli.common import actor, add_json_flag, ago, print_json, print_table
from app.ops.protocol import Operations


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tool = subparsers.add_parser("tool", help="list tools and switch them on and off")
    verbs = tool.add_subparsers(dest="verb", metavar="VERB", required=True)

    listing = verbs.add_parser("list", help="the tools of a server")
    listing.add_argument("server")
    add_json_flag(listing)
    listing.set_defaults(handler=list_tools)

    for verb in ("enable", "disable"):
        toggle = verbs.add_parser(verb, help=f"{verb} tools of a server")
        toggle.add_argument("server")
        toggle.add_argument("tools", nargs="+", metavar="TOOL")
        toggle.set_defaults(handler=set_enabled, enabled=verb == "enable")

    bypass = verbs.add_parser(
        "bypass", help="answer at once with an error when the tool is unavailable"
    )
    bypass.add_argument("server")
    bypass.add_argument("tool")
    bypass.add_argument("state", choices=("on", "off"))
    bypass.set_defaults(handler=set_bypass)


async def list_tools(args: argparse.Namespace, ops: Operations) -> int:
    tools = await ops.list_tools(args.server)
    if args.json:
        print_json(tools)
        return 0
    print_table(
        (
            "tool",
            "enabled",
            "available",
            "bypass",
            "calls",
            "errors",
            "refused",
            "avg ms",
            "last call",
        ),
        (
            [
                tool.name,
                "yes" if tool.enabled else "no",
                "yes" if tool.is_available else "no",
                "on" if tool.bypass_when_unavailable else "off",
                tool.total_calls,
                tool.total_errors,
                tool.total_refused,
                "-" if tool.avg_response_time_ms is None else f"{tool.avg_response_time_ms:.1f}",
                ago(tool.last_called),
            ]
            for tool in tools
        ),
    )
    return 0


async def set_enabled(args: argparse.Namespace, ops: Operations) -> int:
    for name in args.tools:
        tool = await ops.set_tool_enabled(name, args.enabled, actor=actor(), server_ref=args.server)
        print(f"{'enabled' if tool.enabled else 'disabled'} {args.server}/{tool.name}")
    return 0


async def set_bypass(args: argparse.Namespace, ops: Operations) -> int:
    tool = await ops.set_tool_bypass(
        args.tool, args.state == "on", actor=actor(), server_ref=args.server
    )
    print(f"bypass {args.state} for {args.server}/{tool.name}")
    return 0
