"""Reads the project's imports with `ast` and checks them against `app/layers.py`."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.layers import ALLOWED, ALWAYS_ALLOWED, EXACT

ROOT = Path(__file__).resolve().parent.parent
OUR_PACKAGES = ("app", "storage", "widgets")
MIGRATIONS = "storage.migrations.versions"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module of ours
    line: int


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules(root: Path = ROOT) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in OUR_PACKAGES:
        for path in (root / package).rglob("*.py"):
            found[module_name(path, root)] = path
    return found


def is_ours(name: str) -> bool:
    return name.split(".")[0] in OUR_PACKAGES


def imports_of(module: str, source: str, known: Iterable[str]) -> Iterator[Import]:
    """Every import of ours in `source`, wherever it sits (function bodies and TYPE_CHECKING
    blocks included: a lazy import is still a dependency). `from pkg import sub` names the
    submodule when `sub` is one."""
    known = set(known)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if is_ours(alias.name):
                    yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            if not is_ours(base):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield Import(module, sub if sub in known else base, node.lineno)


def package_of(module: str) -> str | None:
    """The longest package of ALLOWED that contains `module`."""
    best = None
    for package in ALLOWED:
        below = module.startswith(package + ".") and package not in EXACT
        if (module == package or below) and (best is None or len(package) > len(best)):
            best = package
    return best


def violations(edges: Iterable[Import]) -> list[str]:
    found = []
    for edge in edges:
        own, theirs = package_of(edge.module), package_of(edge.target)
        if own is None:
            found.append(f"{edge.module}: belongs to no layer of app/layers.py")
            continue
        if edge.module.startswith(MIGRATIONS + "."):
            found.append(f"{edge.module}:{edge.line}: a migration imports live code {edge.target}")
            continue
        if theirs is None:
            found.append(f"{edge.module}:{edge.line}: {edge.target} belongs to no layer")
            continue
        if theirs == own or edge.target in ALWAYS_ALLOWED or theirs in ALLOWED[own]:
            continue
        found.append(f"{edge.module}:{edge.line}: {own} may not import {theirs} ({edge.target})")
    return sorted(set(found))


def cycles(edges: Iterable[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.target != edge.module:
            graph.setdefault(edge.module, set()).add(edge.target)
            graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def project_imports(root: Path = ROOT) -> list[Import]:
    modules = our_modules(root)
    edges: list[Import] = []
    for name, path in modules.items():
        source = path.read_text()
        if path.name == "__init__.py":
            edges.extend(package_imports(name, source, modules))
        else:
            edges.extend(imports_of(name, source, modules))
    return edges


def package_imports(name: str, source: str, modules: Iterable[str]) -> Iterator[Import]:
    # A package's __init__ resolves relative imports against itself.
    for edge in imports_of(name + ".__init__", source, modules):
        yield Import(name, edge.target, edge.line)
