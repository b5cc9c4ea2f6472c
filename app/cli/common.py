"""What every verb shares: opening the facade, actors, printing, and error handling."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from app.core.errors import TooldeckError
from app.core.printable import EscapingWriter
from app.core.settings import Settings, load_settings
from app.core.stop_signals import Stopped, until_stopped
from app.ops.attach import open_facade
from app.ops.protocol import Operations

Handler = Callable[[argparse.Namespace, Operations], Awaitable[int]]


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def fail(message: str) -> int:
    """A user error: one line on stderr, exit 1."""
    print(f"tooldeck: {message}", file=sys.stderr)
    return 1


@contextmanager
def escaped_output(*, enabled: bool = True) -> Iterator[None]:
    """stdout and stderr with terminal control characters escaped, for the verb's duration."""
    if not enabled:
        yield
        return
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = EscapingWriter(stdout), EscapingWriter(stderr)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def settings_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (None: not given), for every verb alike."""
    return {name: getattr(args, name, None) for name in ("data_dir", "host", "port")}


def cli_settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "data_dir", None), settings_flags(args))


async def run_handler(handler: Handler, args: argparse.Namespace) -> int:
    # A stop signal ends the verb cleanly: a one-shot supervisor stops what it started.
    outcome = await until_stopped(_run_handler(handler, args))
    if isinstance(outcome, Stopped):
        print(f"tooldeck: stopped by {outcome.signal.name}", file=sys.stderr)
        return outcome.exit_code
    return outcome


async def _run_handler(handler: Handler, args: argparse.Namespace) -> int:
    settings = cli_settings(args)
    try:
        # The running daemon's operations when there is one, so nothing runs twice. A verb
        # that needs a supervisor (a tool call) runs a one-shot one when no daemon runs.
        one_shot = getattr(args, "one_shot_runtime", False)
        async with open_facade(settings, with_runtime=one_shot, holder="cli") as ops:
            return await handler(args, ops)
    except TooldeckError as exc:
        return fail(str(exc))


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    return value


def print_json(value: Any) -> None:
    print(json.dumps(to_jsonable(value), indent=2, sort_keys=False))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Plain aligned columns: readable in any terminal and easy to grep."""
    text_rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in text_rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    print(
        "  ".join(
            header.upper().ljust(width) for header, width in zip(headers, widths, strict=True)
        ).rstrip()
    )
    for row in text_rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def key_value(text: str) -> tuple[str, str]:
    """argparse type for KEY=VALUE options."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def ago(moment: Any) -> str:
    """A short age such as 5s, 3m, 2h, 4d for tables."""
    from datetime import UTC, datetime

    if moment is None:
        return "-"
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
