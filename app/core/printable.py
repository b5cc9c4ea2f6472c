"""Text from servers and users made safe to print on a terminal.

A server's stderr, an error message or a tool's description may hold escape sequences that
move the cursor, retitle the window, rewrite earlier lines or reorder text (bidirectional
controls). Printed raw, they can hide or forge output. Each such character becomes a visible
escape (`\\x1b`, `\\u202e`); line breaks and tabs stay.
"""

from __future__ import annotations

from typing import Any, TextIO

_KEPT = {"\n", "\t"}
_CONTROLS = [chr(code) for code in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))]
# Bidirectional overrides and isolates, and the marks that steer them.
_BIDI = [chr(code) for code in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F))]
_BIDI += [chr(code) for code in range(0x2066, 0x206A)]
_ESCAPES = str.maketrans(
    {char: f"\\x{ord(char):02x}" for char in _CONTROLS if char not in _KEPT}
    | {char: f"\\u{ord(char):04x}" for char in _BIDI}
)


def printable(text: str) -> str:
    return text.translate(_ESCAPES)


class EscapingWriter:
    """A text stream that writes everything through `printable`."""

    def __init__(self, target: TextIO) -> None:
        self.target = target

    def write(self, text: str) -> int:
        self.target.write(printable(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)
