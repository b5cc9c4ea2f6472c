"""The HTTP API's bearer token: one secret per data dir, in a file only its owner can read."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from app.core.private_files import private_dir

TOKEN_FILE_NAME = "api-token"
TOKEN_BYTES = 32


def token_path(data_dir: Path) -> Path:
    return data_dir / TOKEN_FILE_NAME


def _new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def _write_private(path: Path, text: str, *, exclusive: bool) -> None:
    # The mode is given to open() itself: a chmod after writing would leave a readable window.
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, f"{text}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_token(data_dir: Path) -> str:
    """The token of this data dir, made on first use."""
    path = token_path(data_dir)
    private_dir(data_dir)
    try:
        _write_private(path, _new_token(), exclusive=True)
    except FileExistsError:
        pass  # made before, or by a process starting at the same moment: read theirs
    token = path.read_text().strip()
    if not token:
        # An empty file would make every request match "": never serve with it.
        return rotate_token(data_dir)
    return token


def rotate_token(data_dir: Path) -> str:
    """A new token replaces the old one at once; a running daemon picks it up on its next check."""
    private_dir(data_dir)
    path = token_path(data_dir)
    temporary = path.with_name(f".{TOKEN_FILE_NAME}.{os.getpid()}.tmp")
    token = _new_token()
    _write_private(temporary, token, exclusive=False)
    os.replace(temporary, path)
    return token


def read_token(data_dir: Path) -> str | None:
    try:
        return token_path(data_dir).read_text().strip() or None
    except FileNotFoundError:
        return None


class TokenStore:
    """The daemon's view of the token file, re-read when the file changes (`token rotate`).

    It is asked on every request, so the file is watched through a descriptor kept open on it:
    an `fstat` costs a fraction of a `stat` by path. A replacement (`rotate_token`'s rename, an
    editor's save, a deletion) drops the link count of the file held open; an edit in place
    changes its time or size. Either way the file at the path is opened and read again before
    the answer, so a new token works, and an old one is refused, from the very next request."""

    def __init__(self, data_dir: Path) -> None:
        self.path = token_path(data_dir)
        self._token = load_or_create_token(data_dir)
        self._fd: int | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._watch()

    def _watch(self) -> None:
        """Hold the file now at the path open, note how it looks, and take its token."""
        self._close()
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # gone or unreadable for now: the last token stays, and the next check retries
        self._stamp = _stamp_of(os.fstat(self._fd))
        # An empty file (one being rewritten) keeps the token before it: "" never matches.
        if token := os.pread(self._fd, 4096, 0).decode(errors="replace").strip():
            self._token = token

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def current(self) -> str:
        if self._fd is None or _stamp_of(os.fstat(self._fd)) != self._stamp:
            self._watch()
        return self._token

    def matches(self, given: str) -> bool:
        # compare_digest takes time independent of where the strings differ.
        return hmac.compare_digest(given.encode(), self.current().encode())

    def __del__(self) -> None:
        self._close()


def _stamp_of(info: os.stat_result) -> tuple[int, int, int]:
    # st_nlink: a file renamed over, or deleted, is no longer linked where it was.
    return (info.st_nlink, info.st_mtime_ns, info.st_size)
