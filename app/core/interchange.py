"""MCP client configurations in and out: the `mcpServers` family and VS Code's `servers`.

`mcpServers` is what Claude Desktop, Cursor, Windsurf, Cline and Claude Code write: entries with
`command`/`args`/`env`/`cwd`, or `url`/`headers`, and `type` or `transport` where the client
knows remote servers. VS Code writes a `servers` object (also nested as `mcp.servers` in its
settings.json) whose entries say `type` stdio, http or sse.

This module only translates: it checks the shape of a document, turns each entry into the
fields of a `ToolServerCreate` and an export back into a document. Validating the servers and
writing them is the facade's job (`Operations.import_servers` / `export_servers`), so the CLI,
the HTTP API and the dashboard share one behaviour. Nothing here touches the database.
"""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from app.core.errors import InvalidInput
from app.core.private_files import open_private
from app.core.schemas import ExportFormat, ToolServerResponse

# Sections holding servers, in the order they are read. `mcp.servers` is VS Code's settings.json.
SECTIONS: tuple[tuple[str, ...], ...] = (("mcpServers",), ("servers",), ("mcp", "servers"))

# The server fields a client configuration can express; an overwrite replaces exactly these
# (plus `enabled` when the entry says `disabled`) and keeps Tooldeck's own settings.
DEFINITION_FIELDS: tuple[str, ...] = (
    "transport",
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "headers",
)

TRANSPORT_ALIASES: dict[str, str] = {
    "stdio": "stdio",
    "http": "streamable_http",
    "streamablehttp": "streamable_http",
    "sse": "sse",
}
EXPORT_TYPES: dict[str, str] = {"stdio": "stdio", "streamable_http": "http", "sse": "sse"}

STDIO_KEYS = frozenset({"command", "args", "env", "cwd"})
REMOTE_KEYS = frozenset({"url", "serverUrl", "headers"})
KNOWN_KEYS = STDIO_KEYS | REMOTE_KEYS | {"type", "transport", "disabled"}
# Keys with a meaning Tooldeck cannot honour: named in the warning so nobody assumes they work.
UNSUPPORTED_KEYS: dict[str, str] = {
    "envFile": "Tooldeck does not read env files; put the variables in env",
}

CLIENT_LABELS: dict[str, str] = {"claude": "Claude Desktop", "cursor": "Cursor"}
KNOWN_CLIENTS: tuple[str, ...] = tuple(CLIENT_LABELS)

NAME_LIMIT = 64
PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
VARIABLE = re.compile(r"\$\{[^}]*\}")
JSON_STRING = r'"(?:\\.|[^"\\])*"'
STRING_OR_COMMENT = re.compile(rf"{JSON_STRING}|//[^\n]*|/\*.*?\*/", re.DOTALL)
STRING_OR_TRAILING_COMMA = re.compile(rf"{JSON_STRING}|,(?=\s*[\]}}])")


@dataclass(frozen=True)
class ImportEntry:
    """One server entry of a document, shape-checked but not yet validated as a server."""

    path: str  # where it is in the document, for messages: mcpServers.github
    source_name: str  # its key in the document
    name: str  # a valid server name derived from the key, unique within the document
    fields: dict[str, Any]  # ToolServerCreate fields the entry gives, without the name
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ParsedDocument:
    sections: list[str]  # the sections found, e.g. ["mcpServers"]
    entries: list[ImportEntry]


# ---- names ------------------------------------------------------------------------------


def server_name_for(raw: str) -> str:
    """A valid server name for a client's entry name: "Brave Search" -> "brave-search"."""
    # Decompose accents so "Café" keeps its letters as "cafe" instead of losing them.
    ascii_text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9_-]+", "-", ascii_text.lower()).strip("-")
    return name[:NAME_LIMIT].rstrip("-") or "server"


def unique_name(base: str, taken: set[str] | frozenset[str]) -> str:
    """`base`, or `base-2`, `base-3`, ... whichever is free, kept within the name limit."""
    if base not in taken:
        return base
    for number in count(2):
        suffix = f"-{number}"
        candidate = f"{base[: NAME_LIMIT - len(suffix)]}{suffix}"
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable")


def entry_path(section: str, key: str) -> str:
    return f"{section}.{key}" if PLAIN_KEY.match(key) else f"{section}[{json.dumps(key)}]"


# ---- reading ----------------------------------------------------------------------------


def client_config_path(
    client: str,
    *,
    platform: str | None = None,
    home: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Where `client` keeps its MCP configuration on this (or the given) platform."""
    platform = platform or sys.platform
    home = home or Path.home()
    environ = os.environ if environ is None else environ
    if client == "claude":
        if platform == "darwin":
            return (
                home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
            )
        if platform.startswith("win"):
            appdata = environ.get("APPDATA") or str(home / "AppData" / "Roaming")
            return Path(appdata) / "Claude" / "claude_desktop_config.json"
        config_home = environ.get("XDG_CONFIG_HOME") or str(home / ".config")
        return Path(config_home) / "Claude" / "claude_desktop_config.json"
    if client == "cursor":
        return home / ".cursor" / "mcp.json"
    raise InvalidInput(f"unknown client {client!r}: use {' or '.join(KNOWN_CLIENTS)}", field="from")


def read_document(path: Path, *, label: str | None = None) -> Any:
    """The JSON in `path`; every way of failing is one InvalidInput line naming the file."""
    what = label or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"{what} not found" + (f" at {path}" if label else "")) from None
    except IsADirectoryError:
        raise InvalidInput(f"{what} is a directory, not a file") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {what}: {exc.strerror or exc}") from None
    return parse_json(raw, source=what)


def parse_json(raw: bytes | str, *, source: str = "the document") -> Any:
    if isinstance(raw, bytes):
        try:
            # utf-8-sig: editors on Windows save JSON with a byte-order mark.
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput(f"{source} is not UTF-8 text") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as first:
        # VS Code's mcp.json and settings.json are JSONC: allow comments and trailing commas,
        # but report the error of the text as written if that does not rescue it.
        try:
            return json.loads(strip_jsonc(raw))
        except json.JSONDecodeError:
            raise InvalidInput(
                f"{source} is not JSON: {first.msg} at line {first.lineno} column {first.colno}"
            ) from None


def strip_jsonc(text: str) -> str:
    """`text` without // and /* */ comments and without commas before a closing bracket."""
    # Comments go first, so that a comma followed by a comment and a bracket is seen as trailing.
    without_comments = STRING_OR_COMMENT.sub(_keep_strings, text)
    return STRING_OR_TRAILING_COMMA.sub(_keep_strings, without_comments)


def _keep_strings(match: re.Match[str]) -> str:
    # Strings are matched too, only so that a "//" or a "," inside one is left alone.
    token = match.group()
    return token if token.startswith('"') else ""


def parse_document(document: Any) -> ParsedDocument:
    """The server entries of an MCP client configuration, or InvalidInput naming the problem."""
    if not isinstance(document, dict):
        raise InvalidInput(
            f"expected a JSON object with mcpServers or servers, got {_json_type(document)}"
        )
    sections: list[str] = []
    entries: list[ImportEntry] = []
    taken: set[str] = set()
    for keys in SECTIONS:
        container: Any = document
        for key in keys[:-1]:
            container = container.get(key) if isinstance(container, dict) else None
        if not isinstance(container, dict) or keys[-1] not in container:
            continue
        section = ".".join(keys)
        servers = container[keys[-1]]
        if not isinstance(servers, dict):
            raise InvalidInput(
                f"must be an object of named servers, got {_json_type(servers)}", field=section
            )
        sections.append(section)
        for source_name, raw in servers.items():
            name = unique_name(server_name_for(source_name), taken)
            taken.add(name)
            entries.append(_parse_entry(entry_path(section, source_name), source_name, name, raw))
    if not sections:
        raise InvalidInput("no mcpServers or servers object: not an MCP client configuration")
    return ParsedDocument(sections=sections, entries=entries)


def _parse_entry(path: str, source_name: str, name: str, raw: Any) -> ImportEntry:
    if not isinstance(raw, dict):
        raise InvalidInput(f"must be an object, got {_json_type(raw)}", field=path)
    # null is how generated configs often say "not set": treat it as absent.
    given = {key: value for key, value in raw.items() if value is not None}
    warnings: list[str] = []
    transport = _transport(path, given)
    fields: dict[str, Any] = {"transport": transport}
    if transport == "stdio":
        fields["command"] = _string(path, given, "command")
        if "args" in given:
            fields["args"] = _string_list(path, given, "args")
        if "env" in given:
            fields["env"] = _string_map(path, given, "env")
        if "cwd" in given:
            fields["cwd"] = _string(path, given, "cwd")
        ignored = sorted(REMOTE_KEYS & given.keys())
    else:
        fields["url"] = _string(path, given, "url" if "url" in given else "serverUrl")
        if "headers" in given:
            fields["headers"] = _string_map(path, given, "headers")
        ignored = sorted(STDIO_KEYS & given.keys())
    if ignored:
        warnings.append(f"{path}: ignored {', '.join(ignored)} (not used by a {transport} server)")
    if "disabled" in given:
        if not isinstance(given["disabled"], bool):
            raise InvalidInput(
                f"must be true or false, got {_json_type(given['disabled'])}",
                field=f"{path}.disabled",
            )
        fields["enabled"] = not given["disabled"]
    for key in sorted(given.keys() & UNSUPPORTED_KEYS.keys()):
        warnings.append(f"{path}: ignored {key} ({UNSUPPORTED_KEYS[key]})")
    unknown = sorted(given.keys() - KNOWN_KEYS - UNSUPPORTED_KEYS.keys())
    if unknown:
        keys = ", ".join(repr(key) for key in unknown)
        warnings.append(f"{path}: ignored unknown key{'s' if len(unknown) > 1 else ''} {keys}")
    variables = sorted(key for key, value in fields.items() if VARIABLE.search(json.dumps(value)))
    if variables:
        # ${input:...}, ${workspaceFolder}, ${env:X} are expanded by the client, never by us.
        warnings.append(
            f"{path}: ${{...}} variables in {', '.join(variables)} are not expanded by "
            "Tooldeck: replace them with real values"
        )
    return ImportEntry(
        path=path, source_name=source_name, name=name, fields=fields, warnings=warnings
    )


def _transport(path: str, given: dict[str, Any]) -> str:
    declared: dict[str, str] = {}
    for key in ("type", "transport"):
        if key not in given:
            continue
        value = given[key]
        alias = re.sub(r"[-_\s]", "", value.lower()) if isinstance(value, str) else None
        if alias not in TRANSPORT_ALIASES:
            raise InvalidInput(
                f"unknown transport {value!r}: use stdio, http or sse", field=f"{path}.{key}"
            )
        declared[key] = TRANSPORT_ALIASES[alias]
    if len(set(declared.values())) > 1:
        raise InvalidInput(
            f"type says {given['type']!r} but transport says {given['transport']!r}",
            field=f"{path}.type",
        )
    if declared:
        return next(iter(declared.values()))
    if "command" in given:
        return "stdio"
    url = given.get("url", given.get("serverUrl"))
    if url is not None:
        # Without a type, clients tell SSE endpoints by their conventional /sse path.
        is_sse = isinstance(url, str) and urlparse(url).path.rstrip("/").endswith("/sse")
        return "sse" if is_sse else "streamable_http"
    raise InvalidInput("has neither command nor url", field=path)


def _string(path: str, given: dict[str, Any], key: str) -> str | None:
    value = given.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"must be a string, got {_json_type(value)}", field=f"{path}.{key}")
    return value


def _scalar_text(value: Any) -> str | None:
    # Numbers are common in hand-written configs ("PORT": 8080) and clients pass them on.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _string_list(path: str, given: dict[str, Any], key: str) -> list[str]:
    value = given[key]
    if not isinstance(value, list):
        raise InvalidInput(
            f"must be a list of strings, got {_json_type(value)}", field=f"{path}.{key}"
        )
    items = [_scalar_text(item) for item in value]
    for position, (item, text) in enumerate(zip(value, items, strict=True)):
        if text is None:
            raise InvalidInput(
                f"must be a list of strings, item {position} is {_json_type(item)}",
                field=f"{path}.{key}",
            )
    return [text for text in items if text is not None]


def _string_map(path: str, given: dict[str, Any], key: str) -> dict[str, str]:
    value = given[key]
    if not isinstance(value, dict):
        raise InvalidInput(
            f"must be an object of strings, got {_json_type(value)}", field=f"{path}.{key}"
        )
    result: dict[str, str] = {}
    for name, item in value.items():
        text = _scalar_text(item)
        if text is None:
            raise InvalidInput(
                f"must be an object of strings, {name!r} is {_json_type(item)}",
                field=f"{path}.{key}",
            )
        result[name] = text
    return result


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# ---- writing ----------------------------------------------------------------------------


def export_document(servers: Iterable[ToolServerResponse], format: ExportFormat) -> dict[str, Any]:
    """`servers` as a client configuration. Masking is the caller's: values are written as given."""
    section = "servers" if format == "vscode" else "mcpServers"
    return {section: {server.name: _export_entry(server, format) for server in servers}}


def _export_entry(server: ToolServerResponse, format: ExportFormat) -> dict[str, Any]:
    if server.transport == "stdio":
        # Claude Desktop's own examples have no type for stdio; VS Code requires it.
        entry: dict[str, Any] = {"type": "stdio"} if format == "vscode" else {}
        entry["command"] = server.command
        entry["args"] = list(server.args)
        if server.env:
            entry["env"] = dict(server.env)
        if server.cwd:
            entry["cwd"] = server.cwd
        return entry
    entry = {"type": EXPORT_TYPES[server.transport], "url": server.url}
    if server.headers:
        entry["headers"] = dict(server.headers)
    return entry


def write_document(path: Path, document: dict[str, Any]) -> None:
    """Write `document` as JSON, owner-only: even with secrets masked, a fleet's commands, URLs
    and paths are nobody else's business."""
    text = json.dumps(document, indent=2) + "\n"
    try:
        with open_private(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from None
