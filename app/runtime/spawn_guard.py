"""Apply hard resource limits and switch accounts, then exec a stdio server's command.

    python -I spawn_guard.py [--as-mb N] [--nofile N] [--cpu-s N] [--user U] [--group G]
        -- COMMAND [ARG...]

Run as the server's command in place of the real one (see `launcher`): the limits are set and
the account switched in this process, which then becomes the server by `exec`, so the pid, the
process group and the pipes are the server's own. Doing this in the parent instead would need a
`preexec_fn`, which is unsafe with threads and not reachable through the SDK's stdio client.
Standalone on purpose (no `app` imports): it starts in tens of milliseconds under `-I`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

EXIT_CANNOT = 126  # as a shell says "found but cannot run"
MIB = 1024 * 1024
# Read by the dynamic loader or libc of every process they reach, the guard included, and the
# guard runs as root until it switches accounts: held back from it, handed to the server's own
# command at exec (glibc's list of variables it ignores in setuid programs, and macOS's DYLD_*).
LOADER_PREFIXES = ("LD_", "DYLD_")
LOADER_NAMES = frozenset(
    {
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "MALLOC_TRACE",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
    }
)


def launcher(limits: Any) -> list[str] | None:
    """The argv prefix that applies a server's spawn limits, or None when it has none."""
    if limits is None:
        return None
    argv = [sys.executable, "-I", str(Path(__file__).resolve())]
    for flag, value in (
        ("--as-mb", limits.rlimit_as_mb),
        ("--nofile", limits.rlimit_nofile),
        ("--cpu-s", limits.rlimit_cpu_s),
        ("--user", limits.run_as_user),
        ("--group", limits.run_as_group),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return [*argv, "--"] if len(argv) > 3 else None


def is_loader_variable(name: str) -> bool:
    return name.startswith(LOADER_PREFIXES) or name in LOADER_NAMES


def guarded(launcher: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The guard's argv prefix and environment for a command to run under `launcher`: loader
    variables leave the guard's environment and travel as `--exec-env` to the command."""
    held = [f"--exec-env={key}={value}" for key, value in env.items() if is_loader_variable(key)]
    clean = {key: value for key, value in env.items() if not is_loader_variable(key)}
    return [*launcher[:-1], *held, launcher[-1]], clean


def account_rule_broken(user: str | None, group: str | None) -> str | None:
    """Why `user`/`group` may never be a server's account, on any machine; None when it may."""
    if group is not None and user is None:
        return "run_as_group needs run_as_user: alone it would leave the server running as root"
    if user == "root" or group == "root":
        return "a server may not run as root: name an unprivileged account"
    return None


def can_switch_accounts() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def check_account(user: str | None, group: str | None) -> str | None:
    """Why this process could not run a server as `user`/`group`; None when it can."""
    if user is None and group is None:
        return None
    broken = account_rule_broken(user, group)
    if broken is not None:
        return broken
    try:
        import grp
        import pwd
    except ImportError:
        return "running as another account is not supported on this platform"
    if not can_switch_accounts():
        return f"Tooldeck runs as uid {os.geteuid()}, not root: it has no right to switch accounts"
    if user is not None:
        try:
            if pwd.getpwnam(user).pw_uid == 0:
                return f"{user!r} is root (uid 0): name an unprivileged account"
        except KeyError:
            return f"no user {user!r} on this system"
    if group is not None:
        try:
            if grp.getgrnam(group).gr_gid == 0:
                return f"{group!r} is root's group (gid 0): name another"
        except KeyError:
            return f"no group {group!r} on this system"
    return None


def _fail(message: str) -> NoReturn:
    print(f"tooldeck: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_CANNOT)


def _set_limits(options: argparse.Namespace) -> None:
    try:
        import resource
    except ImportError:
        _fail("hard resource limits are not supported on this platform")
    wanted = (
        ("RLIMIT_AS", options.as_mb * MIB if options.as_mb else None),
        ("RLIMIT_NOFILE", options.nofile),
        ("RLIMIT_CPU", options.cpu_s),
    )
    for name, value in wanted:
        if value is None:
            continue
        which = getattr(resource, name, None)
        if which is None:
            _fail(f"{name} is not supported on this platform")
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError) as exc:
            _fail(f"cannot set {name} to {value}: {exc}")


def _switch_account(user: str | None, group: str | None) -> None:
    import grp
    import pwd

    why = check_account(user, group)
    if why is not None:
        _fail(why)
    entry = pwd.getpwnam(user) if user is not None else None
    gid = grp.getgrnam(group).gr_gid if group is not None else (entry.pw_gid if entry else None)
    try:
        if gid is not None:
            # Supplementary groups first: once the uid changes, nothing may be changed anymore.
            if entry is not None:
                os.initgroups(entry.pw_name, gid)
            else:
                os.setgroups([gid])
            os.setgid(gid)
        if entry is not None:
            os.setuid(entry.pw_uid)
            os.environ.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    except OSError as exc:
        _fail(f"cannot switch to user {user!r} group {group!r}: {exc}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="spawn_guard")
    parser.add_argument("--as-mb", type=int)
    parser.add_argument("--nofile", type=int)
    parser.add_argument("--cpu-s", type=int)
    parser.add_argument("--user")
    parser.add_argument("--group")
    parser.add_argument("--exec-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        _fail("no command to run")
    _set_limits(options)
    if options.user is not None or options.group is not None:
        _switch_account(options.user, options.group)
    for assignment in options.exec_env:
        name, _, value = assignment.partition("=")
        os.environ[name] = value
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        _fail(f"cannot run {command[0]}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
