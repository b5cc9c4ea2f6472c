"""The data dir and everything Tooldeck writes in it are its user's alone: 0700 and 0600.

The database holds servers' env and header values in clear, the logs hold what servers print,
an export may hold secrets. Modes are given to `open()`/`mkdir()` themselves, so no file is
readable by others for a moment, and the umask cannot widen them (it can only narrow).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import IO, Any

DIR_MODE = 0o700
FILE_MODE = 0o600
log = logging.getLogger("tooldeck.files")


def private_dir(path: Path) -> Path:
    """`path` made (with its missing parents) owner-only; an existing one is narrowed."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _warn([_narrowed(path)])
    return path


def private_opener(path: str, flags: int) -> int:
    """An `opener` for `open()`: a new file is 0600, an existing one is narrowed to it."""
    descriptor = os.open(path, flags, FILE_MODE)
    mode = stat.S_IMODE(os.fstat(descriptor).st_mode)
    if mode & 0o077 and hasattr(os, "fchmod"):
        os.fchmod(descriptor, mode & ~0o077)
        _warn([_described(Path(path), mode)])
    return descriptor


def open_private(path: Path, mode: str = "a", **options: Any) -> IO[Any]:
    return open(path, mode, opener=private_opener, **options)


def create_private(path: Path) -> None:
    """Make `path` an empty 0600 file if it does not exist (SQLite gives its -wal and -shm
    files the mode of the database file, so the database is made before SQLite opens it)."""
    os.close(private_opener(str(path), os.O_WRONLY | os.O_CREAT))


def narrow_modes(data_dir: Path, *files: Path) -> list[str]:
    """Take group and other bits off the data dir, its `logs` dir, the files directly in them
    and `files`; what was narrowed, as `path (0644 -> 0600)`, for a warning that names them."""
    paths: list[Path] = []
    for directory in (data_dir, data_dir / "logs"):
        if directory.is_dir() and not directory.is_symlink():
            paths += [directory, *directory.iterdir()]
    fixed: list[str | None] = []
    for path in dict.fromkeys([*paths, *files]):
        # Sockets live in their own 0700 dirs; a link may point anywhere.
        if path.is_symlink() or not (path.is_file() or path in (data_dir, data_dir / "logs")):
            continue
        fixed.append(_narrowed(path))
    return _warn(fixed)


def _narrowed(path: Path) -> str | None:
    """Drop group and other bits of `path`; what changed, when anything did."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if not mode & 0o077:
            return None
        path.chmod(mode & ~0o077)
    except OSError:
        return None  # not ours to change (another owner): left as it is
    return _described(path, mode)


def _described(path: Path, before: int) -> str:
    return f"{path} ({before:04o} -> {before & ~0o077:04o})"


def _warn(fixed: list[str | None]) -> list[str]:
    named = [text for text in fixed if text is not None]
    if named:
        log.warning("readable by other users, now private: %s", ", ".join(named))
    return named
