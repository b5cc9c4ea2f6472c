"""The server form's limits block: call gates for every server, resource limits and run-as for
a stdio one. An empty field is a limit switched off.

Each field is checked as it is typed, with the facade's own model (`ServerLimitsSpec`) and, for
the account, against this machine's accounts: the daemon the deck attaches to listens on
loopback, so its accounts are these. The facade checks again when the limits are saved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, Label

from app.core.schemas import ServerLimitsResponse, ServerLimitsSpec

RowMaker = Callable[[str, str, Widget], ComposeResult]
ACCOUNT_FIELDS = ("run_as_user", "run_as_group")


@dataclass(frozen=True, slots=True)
class LimitField:
    name: str
    label: str
    kind: type  # int, float or str
    placeholder: str
    # Stdio servers only: the limits of a local process.
    local: bool = True


LIMIT_FIELDS = (
    LimitField("max_concurrent_calls", "Calls at a time", int, "empty: no limit", local=False),
    LimitField("max_queued_calls", "Queued calls", int, "waiting beyond that; 0: none", False),
    LimitField("max_rss_mb", "Max memory", float, "MB of RSS, then restart; empty: off"),
    LimitField("max_cpu_percent", "Max CPU", float, "percent, then restart; empty: off"),
    LimitField("sustain_s", "Sustained for", float, "seconds over a limit before (30)"),
    LimitField("rlimit_as_mb", "Address space", int, "MB, hard limit at spawn; empty: off"),
    LimitField("rlimit_nofile", "Open files", int, "hard limit at spawn; empty: off"),
    LimitField("rlimit_cpu_s", "CPU time", int, "seconds, hard limit at spawn; empty: off"),
    LimitField("run_as_user", "Run as user", str, "an unprivileged account; empty: this one"),
    LimitField("run_as_group", "Run as group", str, "its group; empty: the user's own"),
)
LIMIT_NAMES = tuple(field.name for field in LIMIT_FIELDS)
# What an empty field means where it is not "off".
WHEN_EMPTY: dict[str, Any] = {"max_queued_calls": 0, "sustain_s": 30.0}


def limits_rows(row: RowMaker) -> ComposeResult:
    """The block's rows, made by the form's own row maker."""
    with Vertical(id="limits-fields"):
        yield Label("Limits", classes="form-section")
        for field in LIMIT_FIELDS:
            if not field.local:
                yield from row(field.label, field.name, _input(field))
        with Vertical(id="local-limits"):
            for field in LIMIT_FIELDS:
                if field.local:
                    yield from row(field.label, field.name, _input(field))


def _input(field: LimitField) -> Input:
    kind = {int: "integer", float: "number"}.get(field.kind, "text")
    return Input(id=field.name, type=kind, placeholder=field.placeholder, compact=True)  # type: ignore[arg-type]


def show_local_limits(screen: Screen[Any], stdio: bool) -> None:
    screen.query_one("#local-limits").display = stdio


def fill_limits(screen: Screen[Any], limits: ServerLimitsResponse) -> None:
    for field in LIMIT_FIELDS:
        value = getattr(limits, field.name)
        shown = "" if value is None or value == WHEN_EMPTY.get(field.name) else value
        screen.query_one(f"#{field.name}", Input).value = (
            f"{shown:g}" if isinstance(shown, float) else str(shown)
        )


def limits_values(screen: Screen[Any], stdio: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The block as `set_server_limits` takes it, and the problems found in it."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in LIMIT_FIELDS:
        text = screen.query_one(f"#{field.name}", Input).value.strip()
        if field.local and not stdio:
            text = ""
        if not text:
            values[field.name] = WHEN_EMPTY.get(field.name)
            continue
        try:
            values[field.name] = field.kind(text)
        except ValueError:
            values[field.name] = None
            errors[field.name] = (
                "expected a whole number" if field.kind is int else "expected a number"
            )
    try:
        ServerLimitsSpec.model_validate(values)
    except ValidationError as exc:
        for problem in exc.errors():
            name = str(problem["loc"][0]) if problem["loc"] else "form"
            errors.setdefault(name, _plain(problem["msg"], name))
    if not any(name in errors for name in ACCOUNT_FIELDS):
        account = account_problem(values["run_as_user"], values["run_as_group"])
        if account is not None:
            errors[account[0]] = account[1]
    return values, errors


def _plain(message: str, field: str) -> str:
    if field in ACCOUNT_FIELDS and message.startswith("String should match pattern"):
        return "an account name: lowercase letters, digits, _ . -"
    return message.removeprefix("Input should be ").replace("Value error, ", "")


def account_problem(user: str | None, group: str | None) -> tuple[str, str] | None:
    """The field and why, when the account cannot run a server; None when it can."""
    if group is not None and user is None:
        return "run_as_group", "needs a user too: alone it would leave the server running as root"
    try:
        import grp
        import pwd
    except ImportError:
        return None  # the facade says so on saving
    if user is not None:
        try:
            if user == "root" or pwd.getpwnam(user).pw_uid == 0:
                return "run_as_user", "a server may not run as root: name an unprivileged account"
        except KeyError:
            return "run_as_user", f"no user {user!r} on this system"
    if group is not None:
        try:
            if group == "root" or grp.getgrnam(group).gr_gid == 0:
                return "run_as_group", "root's group (gid 0): name another"
        except KeyError:
            return "run_as_group", f"no group {group!r} on this system"
    return None


def limits_differ(values: dict[str, Any], limits: ServerLimitsResponse | None) -> bool:
    """Whether saving `values` changes anything (no limits stored: from the defaults)."""
    stored = (limits or ServerLimitsSpec()).model_dump(include=set(LIMIT_NAMES))
    return values != stored
