"""Tie a stdio server to Tooldeck's life, apply hard limits and switch accounts, then exec it.

    python -I -S spawn_guard.py [--die-with PID] [--as-mb N] [--nofile N] [--cpu-s N]
        [--user U] [--group G] -- COMMAND [ARG...]

Run as the server's command in place of the real one (see `launcher`): the limits are set and
the account switched in this process, which then becomes the server by `exec`, so the pid, the
process group and the pipes are the server's own. Doing this in the parent instead would need a
`preexec_fn`, which is unsafe with threads and not reachable through the SDK's stdio client.
Standalone on purpose (no `app` imports, no `site`): it starts in tens of milliseconds.

`--die-with PID` (Linux): the kernel sends SIGKILL to the server when its parent dies, however
it dies, `kill -9` included (PR_SET_PDEATHSIG). SIGKILL and not SIGTERM, because the promise is
that no server outlives Tooldeck, and a server may ignore SIGTERM; what the server itself
started is ended at Tooldeck's next start (app.runtime.process_registry). Three properties of
the setting shape this code: it survives `exec` (that is what makes it work) except into a
set-user-ID program; it is cleared when the process changes its credentials, so it is set after
the account switch; and "parent" means the thread that forked, so Tooldeck must spawn servers
from a thread that lives as long as they should (the event loop's).
"""

from __future__ import annotations

import os
import sys

# Not `typing.TYPE_CHECKING`: importing typing alone costs the guard milliseconds at every spawn.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

EXIT_CANNOT = 126  # as a shell says "found but cannot run"
EXIT_PARENT_GONE = 125
MIB = 1024 * 1024
PR_SET_PDEATHSIG = 1
SIGKILL = 9  # the number, not the `signal` module: one import less at every spawn
# The options and whether each takes a whole number.
OPTIONS = {
    "--die-with": True,
    "--as-mb": True,
    "--nofile": True,
    "--cpu-s": True,
    "--user": False,
    "--group": False,
    "--exec-env": False,  # NAME=VALUE, repeated
}
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


def parent_death_supported() -> bool:
    return sys.platform.startswith("linux")


def launcher(limits: Any = None) -> list[str] | None:
    """The argv prefix that runs a stdio server through this guard, or None when there is
    nothing for it to do (no limits, and no parent-death signal on this platform)."""
    argv = [sys.executable, "-I", "-S", os.path.realpath(__file__)]
    if parent_death_supported():
        argv += ["--die-with", str(os.getpid())]
    if limits is not None:
        for flag, value in (
            ("--as-mb", limits.rlimit_as_mb),
            ("--nofile", limits.rlimit_nofile),
            ("--cpu-s", limits.rlimit_cpu_s),
            ("--user", limits.run_as_user),
            ("--group", limits.run_as_group),
        ):
            if value is not None:
                argv += [flag, str(value)]
    return [*argv, "--"] if len(argv) > 4 else None


def check_command(command: str, env: dict[str, str], cwd: str | None) -> str | None:
    """Why `command` cannot be started (for a person), or None. Checked before spawning, as
    the guard that spawns in between would only say it as its own exit."""
    if cwd and not os.path.isdir(cwd):
        return f"working directory not found: {cwd}"
    if os.sep in command:
        path = command if os.path.isabs(command) or not cwd else os.path.join(cwd, command)
        return None if os.path.exists(path) else f"command not found: {command}"
    import shutil  # here, not at the top: the guard itself starts without it

    search = env.get("PATH", os.environ.get("PATH", os.defpath))
    return None if shutil.which(command, path=search) else f"command not found: {command}"


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


def _set_limits(options: dict[str, Any]) -> None:
    as_mb = options.get("--as-mb")
    wanted = (
        ("RLIMIT_AS", as_mb * MIB if as_mb else None),
        ("RLIMIT_NOFILE", options.get("--nofile")),
        ("RLIMIT_CPU", options.get("--cpu-s")),
    )
    if all(value is None for _name, value in wanted):
        return
    try:
        import resource
    except ImportError:
        _fail("hard resource limits are not supported on this platform")
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


def _die_with(parent: int) -> Callable[[], None]:
    """What arms the parent-death signal; loaded now, called after the account switch (which
    clears the signal, and after which the new account may not be able to load ctypes)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        if libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0:
            _fail(f"cannot set the parent-death signal: {os.strerror(ctypes.get_errno())}")
        if os.getppid() != parent:
            # The parent died before the signal was armed: nobody is left to serve.
            sys.exit(EXIT_PARENT_GONE)

    return arm


def _parse(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """`--flag value ... -- command...`; by hand, as argparse costs the guard milliseconds."""
    options: dict[str, Any] = {}
    args = iter(argv)
    for arg in args:
        if arg == "--":
            return options, list(args)
        flag, _, value = arg.partition("=")
        if flag not in OPTIONS:
            return options, [arg, *args]
        if not value:
            value = next(args, "")
        if not value:
            _fail(f"{flag} needs a value")
        if flag == "--exec-env":
            options.setdefault(flag, []).append(value)
        elif OPTIONS[flag]:
            try:
                options[flag] = int(value)
            except ValueError:
                _fail(f"{flag}: not a whole number: {value!r}")
        else:
            options[flag] = value
    return options, []


def main(argv: list[str] | None = None) -> None:
    options, command = _parse(sys.argv[1:] if argv is None else argv)
    if not command:
        _fail("no command to run")
    parent = options.get("--die-with")
    arm = _die_with(parent) if parent is not None else None
    _set_limits(options)
    user, group = options.get("--user"), options.get("--group")
    if user is not None or group is not None:
        _switch_account(user, group)
    for assignment in options.get("--exec-env", []):
        name, _, value = assignment.partition("=")
        os.environ[name] = value
    if arm is not None:
        arm()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        _fail(f"cannot run {command[0]}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
