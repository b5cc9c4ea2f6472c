"""What the CLI prints is safe on a terminal and keeps secrets masked."""

from __future__ import annotations

import json
import os
from pathlib import Path

from app.core.printable import printable
from tests.cli_runner import tooldeck


def test_server_logs_escape_terminal_sequences() -> None:
    home = Path(os.environ["TOOLDECK_HOME"])
    added = tooldeck("server", "add", "noisy", "--command", "x")
    assert added.returncode == 0, added.stderr
    (home / "logs").mkdir(parents=True, exist_ok=True)
    # Retitle the window, clear the screen, erase what was printed, reverse the text's direction.
    raw = "\x1b]0;pwned\x07\x1b[2J ok\x08\x08forged \u202edesrever\n"
    (home / "logs" / "noisy.log").write_text(raw)
    logs = tooldeck("server", "logs", "noisy")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "\\x1b]0;pwned\\x07\\x1b[2J ok\\x08\\x08forged \\u202edesrever\n"
    # JSON keeps the exact text, escaped the JSON way.
    assert json.loads(tooldeck("server", "logs", "noisy", "--json").stdout) == [raw[:-1]]


def test_errors_are_escaped_too() -> None:
    shown = tooldeck("server", "show", "no-such\x1b[31m")
    assert shown.returncode == 1
    assert "\x1b" not in shown.stderr and "\\x1b[31m" in shown.stderr


def test_printable_keeps_text_and_line_breaks() -> None:
    assert printable("a\tb\nc é 日本 ✓") == "a\tb\nc é 日本 ✓"
    assert printable("\x00\x7f\x9b\u2066") == "\\x00\\x7f\\x9b\\u2066"
