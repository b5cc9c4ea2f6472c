"""The daemon's view of its token file: whatever replaces or edits the file, the next request
is judged by the file as it is now (a new token works, the old one is refused)."""

from __future__ import annotations

import os
from pathlib import Path

from app.runtime.api_token import TokenStore, rotate_token, token_path


def test_a_rotation_takes_effect_on_the_next_check(data_dir: Path) -> None:
    store = TokenStore(data_dir)
    old = store.current()
    assert store.matches(old)
    new = rotate_token(data_dir)  # another process's `token rotate`: a rename over the file
    assert not store.matches(old)
    assert store.matches(new)
    newer = rotate_token(data_dir)
    assert not store.matches(new) and store.matches(newer)


def test_an_edit_in_place_takes_effect_on_the_next_check(data_dir: Path) -> None:
    store = TokenStore(data_dir)
    old = store.current()
    path = token_path(data_dir)
    inode = path.stat().st_ino
    with path.open("w") as file:  # the same file, rewritten: no rename
        file.write("typed-by-hand\n")
    assert path.stat().st_ino == inode
    assert not store.matches(old)
    assert store.matches("typed-by-hand")


def test_a_deleted_file_keeps_the_last_token_until_a_new_one_appears(data_dir: Path) -> None:
    store = TokenStore(data_dir)
    old = store.current()
    token_path(data_dir).unlink()
    assert store.matches(old)  # no lock-out, and no open door either
    assert not store.matches("")
    temporary = data_dir / "replacement"
    temporary.write_text("written-later\n")
    os.replace(temporary, token_path(data_dir))
    assert not store.matches(old)
    assert store.matches("written-later")
