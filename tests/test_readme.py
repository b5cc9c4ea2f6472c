"""The README keeps its promises: its CLI examples run, its API table is the served API, and
what it documents (keys, the import body) is there."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import get_args

import pytest

from app.core.schemas import ConflictPolicy
from app.faces.http.api_table import api_table
from app.ops.table import OPERATIONS, ImportRequest
from tests.cli_runner import REPO_ROOT, tooldeck
from tests.daemon_helpers import start_daemon

README = (REPO_ROOT / "README.md").read_text()


def marked_blocks(kind: str) -> list[list[str]]:
    """The command lines of each fenced block right after `<!-- readme-test: KIND -->`."""
    pattern = re.compile(rf"<!-- readme-test: {kind} -->\n```sh\n(.*?)```", re.DOTALL)
    return [
        [line for line in block.splitlines() if line.strip()] for block in pattern.findall(README)
    ]


def run_lines(lines: list[str]) -> None:
    for line in lines:
        words = shlex.split(line, comments=True)
        assert words[0] == "tooldeck", line
        result = tooldeck(*words[1:])
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, line


def test_the_first_steps_run_on_a_fresh_data_dir() -> None:
    blocks = marked_blocks("cli")
    assert blocks, "the README has no marked CLI examples"
    for lines in blocks:
        run_lines(lines)


def test_the_daemon_examples_run_against_a_daemon() -> None:
    blocks = marked_blocks("daemon")
    assert blocks, "the README has no marked daemon examples"
    daemon = start_daemon(Path(os.environ["TOOLDECK_HOME"]))
    try:
        for lines in blocks:
            run_lines(lines)
    finally:
        assert daemon.stop() == 0


def test_the_api_table_is_the_served_api() -> None:
    found = re.search(r"<!-- api-table:[^\n]*-->\n(.*?)\n<!-- /api-table -->", README, re.DOTALL)
    assert found, "the README has no generated API table"
    assert found.group(1) == api_table(), "regenerate it: python -m app.faces.http.api_table"
    for spec in OPERATIONS:
        assert f"| `{spec.method}` | `{spec.path}` |" in found.group(1), spec.route


@pytest.mark.parametrize("key", ["q", "i", "?", "/", "space", "ctrl+d", "ctrl+p"])
def test_the_keys_table_lists_the_everyday_keys(key: str) -> None:
    keys = README.split("| keys | what |", 1)[1].split("\n\n", 1)[0]
    assert f"`{key}`" in keys


def test_the_import_body_is_documented() -> None:
    section = README.split("**Import.**", 1)[1].split("\n\n**", 1)[0]
    for field in ImportRequest.model_fields:
        assert f"`{field}`" in section, field
    for policy in get_args(ConflictPolicy):
        assert f"`{policy}`" in section, policy
