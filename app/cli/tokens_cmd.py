"""`tooldeck token show|rotate|add|list|revoke`: the HTTP API's tokens.

`show` and `rotate` are the token file's (an admin token named `admin`, made by the daemon at
its first start); `add`, `list` and `revoke` are named tokens with a scope, kept in the database
as hashes: a value is printed once, by `add`.
"""

from __future__ import annotations

import argparse
import sys

from app.cli.common import actor, add_json_flag, ago, cli_settings, fail, print_json, print_table
from app.core.access import FILE_TOKEN_NAME, SCOPE_HELP, SCOPES
from app.ops.protocol import Operations
from app.runtime.api_token import read_token, rotate_token, token_path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = subparsers.add_parser("token", help="the HTTP API's tokens: the admin's and named ones")
    verbs = token.add_subparsers(dest="verb", metavar="VERB", required=True)
    show = verbs.add_parser(
        "show",
        help="print the token file's admin token (the daemon makes it at its first start; "
        "never made here)",
    )
    add_json_flag(show)
    show.set_defaults(command_runner=show_token)
    verbs.add_parser(
        "rotate", help="replace the token file's token; the old one stops working at once"
    ).set_defaults(command_runner=rotate)

    scopes = "; ".join(f"{scope}: {SCOPE_HELP[scope]}" for scope in SCOPES)
    add = verbs.add_parser(
        "add",
        help="a named token with a scope; its value is printed once",
        description=f"Scopes: {scopes}.",
    )
    add.add_argument("name", help="lowercase letters, digits, . _ -; the audit actor")
    add.add_argument("--scope", choices=SCOPES, required=True)
    add.add_argument(
        "--profile", metavar="PROFILE", help="gateway tokens: reach only this profile's endpoint"
    )
    add_json_flag(add)
    add.set_defaults(handler=add_token)

    listing = verbs.add_parser("list", help="named tokens: scope, profile, last use; no values")
    add_json_flag(listing)
    listing.set_defaults(handler=list_tokens)

    revoke = verbs.add_parser("revoke", help="revoke a named token at once")
    revoke.add_argument("name")
    revoke.set_defaults(handler=revoke_token)


def show_token(args: argparse.Namespace) -> int:
    # Printing the secret is this command's whole purpose: `curl -H "Authorization: Bearer
    # $(tooldeck token show)"`. It is never printed anywhere else.
    data_dir = cli_settings(args).data_dir
    try:
        token = read_token(data_dir)
    except OSError as exc:
        return fail(f"cannot read {token_path(data_dir)}: {exc.strerror or exc}")
    if token is None:
        # Reading never makes one: a new token here would not be the one a daemon elsewhere
        # checks, and a script would go on with a useless secret.
        return fail(
            f"no API token in {data_dir}: the daemon makes it at its first start "
            "(`tooldeck token rotate` makes one now)"
        )
    print_json({"token": token}) if args.json else print(token)
    return 0


def rotate(args: argparse.Namespace) -> int:
    print(rotate_token(cli_settings(args).data_dir))
    print("tooldeck: the old token no longer works", file=sys.stderr)
    return 0


async def add_token(args: argparse.Namespace, ops: Operations) -> int:
    data = {"name": args.name, "scope": args.scope, "profile": args.profile}
    issued = await ops.add_token(data, actor=actor())
    if args.json:
        print_json(issued)
        return 0
    # The value alone on stdout, for `$(tooldeck token add ...)`; the words on stderr.
    print(issued.token)
    reach = f", reaching only /mcp/profiles/{issued.profile}" if issued.profile else ""
    print(
        f"tooldeck: token {issued.name} ({issued.scope}{reach}) is shown this once: "
        "only its hash is kept",
        file=sys.stderr,
    )
    return 0


async def list_tokens(args: argparse.Namespace, ops: Operations) -> int:
    tokens = await ops.list_tokens()
    if args.json:
        print_json(tokens)
        return 0
    print_table(
        ("name", "scope", "profile", "last used", "made by"),
        [(FILE_TOKEN_NAME, "admin", "", "", "the token file (`tooldeck token show`)")]
        + [
            (
                token.name,
                token.scope,
                token.profile or "",
                f"{ago(token.last_used_at)} ago" if token.last_used_at else "never",
                token.created_by or "",
            )
            for token in tokens
        ],
    )
    return 0


async def revoke_token(args: argparse.Namespace, ops: Operations) -> int:
    if args.name == FILE_TOKEN_NAME:
        return fail("the token file's token is replaced, not revoked: `tooldeck token rotate`")
    await ops.revoke_token(args.name, actor=actor())
    print(f"revoked token {args.name}: requests with it are refused from now on")
    return 0
