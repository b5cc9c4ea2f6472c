"""`tooldeck profile add|edit|list|show|delete`: gateway profiles, each with its own endpoint
(`/mcp/profiles/<name>`, `tooldeck gateway --stdio --profile NAME`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from app.cli.common import actor, add_json_flag, fail, print_json, print_table
from app.core.profiles import ProfilePreview
from app.ops.protocol import Operations

PATTERN_HELP = (
    "server patterns: names or globs (fs-*); tool patterns: TOOL, SERVER/TOOL, or !PATTERN to "
    "leave out, globs allowed; no tool pattern: every tool of the chosen servers"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    profile = subparsers.add_parser(
        "profile", help="gateway profiles: a named set of servers and tools with its own endpoint"
    )
    verbs = profile.add_subparsers(dest="profile_verb", metavar="VERB", required=True)

    add = verbs.add_parser("add", help="a new profile", description=PATTERN_HELP)
    add.add_argument("name")
    add.add_argument("--server", action="append", dest="servers", metavar="PATTERN")
    add.add_argument("--tool", action="append", dest="tools", metavar="PATTERN")
    add.add_argument("--description")
    add_json_flag(add)
    add.set_defaults(handler=add_profile)

    edit = verbs.add_parser("edit", help="change a profile", description=PATTERN_HELP)
    edit.add_argument("name")
    edit.add_argument("--rename", metavar="NEW")
    edit.add_argument("--server", action="append", dest="servers", metavar="PATTERN")
    edit.add_argument("--tool", action="append", dest="tools", metavar="PATTERN")
    edit.add_argument("--all-tools", action="store_true", help="drop every tool pattern")
    edit.add_argument("--description")
    add_json_flag(edit)
    edit.set_defaults(handler=edit_profile)

    listing = verbs.add_parser("list", help="every profile")
    add_json_flag(listing)
    listing.set_defaults(handler=list_profiles)

    show = verbs.add_parser("show", help="a profile, its tools and what their list costs")
    show.add_argument("name")
    add_json_flag(show)
    show.set_defaults(handler=show_profile)

    delete = verbs.add_parser("delete", help="delete a profile")
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=delete_profile)


async def add_profile(args: argparse.Namespace, ops: Operations) -> int:
    data: dict[str, Any] = {"name": args.name, "servers": args.servers or ["*"]}
    if args.tools:
        data["tools"] = args.tools
    if args.description is not None:
        data["description"] = args.description
    profile = await ops.create_profile(data, actor=actor())
    return await _report(args, ops, profile.name, f"added profile {profile.name}")


async def edit_profile(args: argparse.Namespace, ops: Operations) -> int:
    changes: dict[str, Any] = {}
    if args.rename:
        changes["name"] = args.rename
    if args.servers:
        changes["servers"] = args.servers
    if args.tools or args.all_tools:
        changes["tools"] = [] if args.all_tools else args.tools
    if args.description is not None:
        changes["description"] = args.description
    if not changes:
        return fail(
            "nothing to change: give --rename, --server, --tool, --all-tools or --description"
        )
    profile = await ops.update_profile(args.name, changes, actor=actor())
    return await _report(args, ops, profile.name, f"changed profile {profile.name}")


async def _report(args: argparse.Namespace, ops: Operations, name: str, done: str) -> int:
    preview = await ops.preview_profile(name)
    if args.json:
        print_json(await ops.get_profile(name))
        return 0
    print(f"{done}: {_summary(preview)}")
    for pattern in preview.unmatched:
        print(f"  note: {pattern!r} chooses nothing now")
    return 0


def _summary(preview: ProfilePreview) -> str:
    return (
        f"{preview.tool_count} tools, ~{preview.estimated_tokens} tokens ({preview.token_method})"
    )


async def list_profiles(args: argparse.Namespace, ops: Operations) -> int:
    profiles = await ops.list_profiles()
    if args.json:
        print_json(profiles)
        return 0
    if not profiles:
        print("no profiles: add one with `tooldeck profile add NAME --server PATTERN`")
        return 0
    previews = [await ops.preview_profile(profile.name) for profile in profiles]
    print_table(
        ("name", "servers", "tools", "count", "~tokens", "endpoint"),
        (
            (
                profile.name,
                " ".join(profile.servers),
                " ".join(profile.tools) or "*",
                preview.tool_count,
                preview.estimated_tokens,
                profile.endpoint,
            )
            for profile, preview in zip(profiles, previews, strict=True)
        ),
    )
    return 0


async def show_profile(args: argparse.Namespace, ops: Operations) -> int:
    profile = await ops.get_profile(args.name)
    preview = await ops.preview_profile(args.name)
    if args.json:
        print_json({"profile": profile.model_dump(mode="json"), "preview": preview})
        return 0
    print(f"profile   {profile.name}" + (f"  {profile.description}" if profile.description else ""))
    print(f"servers   {' '.join(profile.servers)}  ->  {' '.join(preview.servers) or 'none'}")
    print(f"tools     {' '.join(profile.tools) or '* (every tool)'}")
    print(
        f"endpoint  {profile.endpoint}   stdio: tooldeck gateway --stdio --profile {profile.name}"
    )
    print(f"cost      {_summary(preview)}")
    for pattern in preview.unmatched:
        print(f"note      {pattern!r} chooses nothing now")
    if preview.tools:
        print()
        print_table(
            ("tool", "title", "offered"),
            (
                (tool.exposed_name, tool.title or "", "yes" if tool.enabled else "no")
                for tool in preview.tools
            ),
        )
    return 0


async def delete_profile(args: argparse.Namespace, ops: Operations) -> int:
    await ops.get_profile(args.name)  # a missing profile fails before any question
    if not args.yes:
        if not sys.stdin.isatty():
            return fail("not a terminal: pass --yes to delete the profile")
        answer = await asyncio.to_thread(input, f"delete profile {args.name}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    await ops.delete_profile(args.name, actor=actor())
    print(f"deleted profile {args.name}")
    return 0
