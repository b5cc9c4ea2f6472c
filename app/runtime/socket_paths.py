"""Where a data dir's unix sockets live: in the data dir, or in a private temp dir when that
path would be too long for a socket address."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from contextlib import suppress
from pathlib import Path

# sun_path holds 108 bytes on Linux (104 on macOS), the terminating NUL included.
MAX_SOCKET_PATH = 100


def socket_path(data_dir: Path, name: str) -> Path:
    """`<data dir>/<name>`, or the same name under a private directory of the system's temp
    dir, keyed by the data dir (the same path every time: the lock file names it)."""
    preferred = data_dir / name
    if len(os.fsencode(preferred)) <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(os.fsencode(data_dir.resolve())).hexdigest()[:16]
    return _private_temp_dir() / f"{digest}-{name}"


def _private_temp_dir() -> Path:
    """A directory only this user can enter."""
    directory = Path(tempfile.gettempdir()) / f"tooldeck-{os.getuid()}"
    with suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    info = directory.lstat()
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or stat.S_IMODE(info.st_mode) & 0o077
    ):
        # Someone else's, or open to others: a socket there could be swapped for theirs.
        raise PermissionError(f"{directory} is not a private directory of this user")
    return directory
