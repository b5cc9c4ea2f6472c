"""The names the gateway exposes for tools and prompts of several servers: `<server><sep><name>`.

Names are routed by lookup table, never by splitting on the separator, so a server called `e__v`,
a sanitised name or a shortened one all route. A name over the cap (the protocol allows 128
characters; several model providers reject more than 64) keeps its start and ends in a stable
hash of the server and the original name, the same on every start and in every process.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
HASH_LENGTH = 8


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:HASH_LENGTH]


class NameTable:
    """Exposed name <-> (server, name on the server), for tools or for prompts."""

    __slots__ = ("_by_exposed", "_by_origin", "max_length", "separator")

    def __init__(self, separator: str = "__", max_length: int = 128) -> None:
        self.separator = separator
        self.max_length = max_length
        self._by_exposed: dict[str, tuple[str, str]] = {}
        self._by_origin: dict[tuple[str, str], str] = {}

    def expose(self, server: str, name: str) -> str:
        key = (server, name)
        exposed = self._by_origin.get(key)
        if exposed is not None:
            return exposed
        readable = _UNSAFE.sub("_", f"{server}{self.separator}{name}")
        hashed = readable[: self.max_length - HASH_LENGTH - 1] + "_" + short_hash(server, name)
        exposed = readable if len(readable) <= self.max_length else hashed
        owner = self._by_exposed.get(exposed)
        if owner is not None and owner != key:
            # Two names sanitised alike: the newcomer is told apart by its hash.
            exposed = hashed
        self._by_exposed[exposed] = key
        self._by_origin[key] = exposed
        return exposed

    def resolve(self, exposed: str) -> tuple[str, str] | None:
        return self._by_exposed.get(exposed)

    def forget_server(self, server: str) -> None:
        for key in [key for key in self._by_origin if key[0] == server]:
            self._by_exposed.pop(self._by_origin.pop(key), None)
