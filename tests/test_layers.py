"""The layers of app/layers.py hold: no import against them, no cycle, no textual in the core."""

from __future__ import annotations

import subprocess
import sys

from tests.layer_rules import Import, cycles, imports_of, project_imports, violations


def test_every_import_follows_the_layers() -> None:
    assert violations(project_imports()) == []


def test_an_import_against_the_layers_is_caught() -> None:
    # A new runtime module reaching up into a face, lazily: the rules catch it all the same.
    source = "def f():\n    from app.faces.http.api import create_app\n"
    edges = list(imports_of("app.runtime.newcomer", source, ["app.faces.http.api"]))
    assert violations(edges) == [
        "app.runtime.newcomer:2: app.runtime may not import app.faces.http (app.faces.http.api)"
    ]


def test_a_module_outside_every_layer_is_caught() -> None:
    edges = [Import("app.stray", "app.core.errors", 1)]
    assert violations(edges) == ["app.stray: belongs to no layer of app/layers.py"]


def test_a_cycle_is_caught() -> None:
    edges = [Import("app.ops.a", "app.ops.b", 1), Import("app.ops.b", "app.ops.a", 1)]
    assert cycles(edges) == [["app.ops.a", "app.ops.b"]]


def test_the_project_has_no_import_cycle() -> None:
    assert cycles(project_imports()) == []


def test_a_migration_importing_live_code_is_caught() -> None:
    source = "from storage.rollups import UsageWriter\n"
    edges = list(imports_of("storage.migrations.versions.0009_x", source, []))
    assert violations(edges) == [
        "storage.migrations.versions.0009_x:1: a migration imports live code storage.rollups"
    ]


def test_core_does_not_import_textual() -> None:
    code = (
        "import sys, app.ops.facade, app.cli, app.ops.bootstrap, app.faces.daemon, storage.db, "
        "storage.models, storage.queries; "
        "loaded = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')]; "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
