"""The layers, declared once: which package may import which.

Read bottom up: a package may import the packages listed for it and nothing else of ours.
`tests/test_layers.py` walks every module's imports (function-local ones included) and fails on
any import against these rules, on a module that belongs to no package listed here, and on an
import cycle. The README's Layout section draws the same picture.
"""

from __future__ import annotations

# Every module of ours belongs to the longest package name here that prefixes it.
ALLOWED: dict[str, frozenset[str]] = {
    # Shared by all: errors, schemas, settings, change bus, periods, client-config formats.
    "app.core": frozenset(),
    # SQLAlchemy models, engine, migrations, queries and analytics SQL.
    "storage": frozenset({"app.core"}),
    # Supervisor, connections, scheduler, usage recorder, call gates, logs, locks, tokens.
    "app.runtime": frozenset({"app.core", "storage"}),
    # Alerts and their delivery, limits watchdog, audit, trim.
    "app.governance": frozenset({"app.core", "storage", "app.runtime"}),
    # The operations facade (in-process and remote) and the wiring of a running core.
    "app.ops": frozenset({"app.core", "storage", "app.runtime", "app.governance"}),
    # Faces: adapters over the operations.
    "app.faces.http": frozenset({"app.core", "app.ops", "app.runtime"}),
    "app.faces.gateway": frozenset({"app.core", "app.ops", "app.runtime"}),
    "app.faces.daemon": frozenset(
        {"app.core", "app.ops", "app.runtime", "app.faces.http", "app.faces.gateway"}
    ),
    "widgets": frozenset({"app.core"}),
    "app.tui": frozenset({"app.core", "app.ops", "widgets"}),
    "app.cli": frozenset(
        {
            "app.core",
            "app.ops",
            "app.runtime",
            "app.faces.daemon",
            "app.faces.gateway",
            "app.faces.http",
            "app.tui",
        }
    ),
    # `python -m app` and the package's version.
    "app.__main__": frozenset({"app.cli"}),
    "app": frozenset(),
    # Stand-alone MCP servers shipped as built-ins: they import only themselves.
    "app.builtin": frozenset(),
    "app.layers": frozenset(),
}

# Every package may import the top-level `app` for its version string.
ALWAYS_ALLOWED = frozenset({"app"})
# Names that stand for their own module only, not for the modules below them.
EXACT = frozenset({"app"})
