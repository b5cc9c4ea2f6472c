"""Import and export of MCP client configurations, through the facade and the parser."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.errors import InvalidInput, NotFound
from app.core.interchange import (
    client_config_path,
    parse_document,
    parse_json,
    read_document,
    server_name_for,
    unique_name,
    write_document,
)
from app.core.schemas import MASK, ImportReport
from app.core.settings import load_settings
from app.ops.bootstrap import open_database
from app.ops.facade import LocalOperations
from storage.models import ServerEvent, ToolServer

ACTOR = "test:alice"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEFINITION = ("name", "transport", "command", "args", "env", "cwd", "url", "headers")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


async def count_rows(ops: LocalOperations, model: type[ToolServer] | type[ServerEvent]) -> int:
    async with ops.db.session() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def definitions(ops: LocalOperations) -> dict[str, dict[str, Any]]:
    servers = await ops.list_servers(reveal=True)
    return {server.name: server.model_dump(include=set(DEFINITION)) for server in servers}


def by_name(report: ImportReport) -> dict[str, Any]:
    return {item.name: item for item in report.items}


# ---- the formats ------------------------------------------------------------------------


async def test_claude_desktop_file_imports_every_server_with_its_secrets(
    ops: LocalOperations,
) -> None:
    report = await ops.import_servers(fixture("claude_desktop_config.json"), actor=ACTOR)

    assert report.sections == ["mcpServers"]
    assert (report.created, report.skipped) == (3, 0)
    items = by_name(report)
    assert items["brave-search"].source_name == "Brave Search"
    assert items["brave-search"].action == "create"
    assert any("'autoApprove'" in warning for warning in items["github"].warnings)
    servers = await definitions(ops)
    assert servers["brave-search"]["command"] == "npx"
    assert servers["brave-search"]["env"] == {"BRAVE_API_KEY": "BSA-fixture-secret-123"}
    assert servers["sqlite"]["cwd"] == "/tmp"
    assert servers["github"]["args"][-1] == "ghcr.io/github/github-mcp-server"
    events = await ops.list_events(kind="created")
    assert {event.server_name for event in events} == set(servers)
    assert {event.actor for event in events} == {ACTOR}


async def test_cursor_file_brings_url_servers_and_the_disabled_flag(ops: LocalOperations) -> None:
    await ops.import_servers(fixture("cursor_mcp.json"), actor=ACTOR)

    linear = await ops.get_server("linear")
    context7 = await ops.get_server("context7", reveal=True)
    notes = await ops.get_server("local-notes")
    # No type given: an /sse path means SSE, anything else streamable HTTP.
    assert (linear.transport, linear.url) == ("sse", "https://mcp.linear.app/sse")
    assert context7.transport == "streamable_http"
    assert context7.headers == {"CONTEXT7_API_KEY": "ctx7-fixture-secret"}
    assert notes.enabled is False


async def test_vscode_file_maps_types_and_warns_about_input_variables(ops: LocalOperations) -> None:
    report = await ops.import_servers(fixture("vscode_mcp.json"), actor=ACTOR)

    assert report.sections == ["servers"]
    items = by_name(report)
    assert items["github-copilot"].source_name == "GitHub Copilot"
    assert {name: item.transport for name, item in items.items()} == {
        "memory": "stdio",
        "github-copilot": "streamable_http",
        "perplexity": "stdio",
        "legacy-events": "sse",
    }
    assert any("${...}" in warning for warning in items["perplexity"].warnings)
    assert (await ops.get_server("github-copilot")).url == "https://api.githubcopilot.com/mcp/"


async def test_vscode_settings_nesting_and_type_aliases_are_understood(
    ops: LocalOperations,
) -> None:
    document = {
        "editor.fontSize": 14,
        "mcp": {
            "servers": {
                "a": {"type": "streamable-http", "url": "https://a.example/mcp"},
                "b": {"transport": "SSE", "url": "https://b.example/events"},
                "c": {"serverUrl": "https://c.example/mcp"},
            }
        },
    }
    report = await ops.import_servers(document, actor=ACTOR)

    assert report.sections == ["mcp.servers"]
    assert [item.transport for item in report.items] == [
        "streamable_http",
        "sse",
        "streamable_http",
    ]


async def test_names_collide_within_one_document_and_stay_unique(ops: LocalOperations) -> None:
    document = {"mcpServers": {"My Server": {"command": "a"}, "my-server": {"command": "b"}}}
    report = await ops.import_servers(document, actor=ACTOR)

    assert [(item.source_name, item.name) for item in report.items] == [
        ("My Server", "my-server"),
        ("my-server", "my-server-2"),
    ]


async def test_keys_for_the_other_transport_and_env_files_are_named_in_warnings(
    ops: LocalOperations,
) -> None:
    document = {
        "mcpServers": {
            "x": {"command": "a", "url": "https://x.example", "envFile": ".env", "env": None}
        }
    }
    report = await ops.import_servers(document, actor=ACTOR)

    warnings = " | ".join(report.items[0].warnings)
    assert "ignored url (not used by a stdio server)" in warnings
    assert "envFile" in warnings
    assert (await ops.get_server("x")).env == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Brave Search", "brave-search"),
        ("github", "github"),
        ("Café Crème!", "cafe-creme"),
        ("  --weird__name--  ", "weird__name"),
        ("🔥", "server"),
        ("", "server"),
        ("x" * 80, "x" * 64),
        ("a" * 63 + " b", "a" * 63),
    ],
)
def test_server_names_are_made_valid(raw: str, expected: str) -> None:
    assert server_name_for(raw) == expected


def test_unique_names_keep_within_the_limit() -> None:
    assert unique_name("demo", {"demo", "demo-2"}) == "demo-3"
    long = "y" * 64
    assert unique_name(long, {long}) == "y" * 62 + "-2"


# ---- dry run and conflicts ---------------------------------------------------------------


async def test_dry_run_reports_the_plan_and_writes_nothing(ops: LocalOperations) -> None:
    await ops.create_server({"name": "github", "command": "old"}, actor=ACTOR)
    events_before = await count_rows(ops, ServerEvent)
    document = fixture("claude_desktop_config.json")

    for on_conflict, expected in (
        ("skip", {"brave-search": "create", "github": "skip", "sqlite": "create"}),
        ("overwrite", {"brave-search": "create", "github": "overwrite", "sqlite": "create"}),
        ("rename", {"brave-search": "create", "github-2": "rename", "sqlite": "create"}),
    ):
        report = await ops.import_servers(
            document, dry_run=True, on_conflict=on_conflict, actor=ACTOR
        )
        assert report.dry_run is True
        assert {item.name: item.action for item in report.items} == expected

    assert list(await definitions(ops)) == ["github"]
    assert (await ops.get_server("github")).command == "old"
    assert await count_rows(ops, ServerEvent) == events_before


async def test_existing_names_are_skipped_by_default(ops: LocalOperations) -> None:
    await ops.create_server({"name": "github", "command": "old"}, actor=ACTOR)
    report = await ops.import_servers(fixture("claude_desktop_config.json"), actor=ACTOR)

    github = by_name(report)["github"]
    assert (github.action, github.reason) == ("skip", "a server with this name exists")
    assert (report.created, report.skipped) == (2, 1)
    assert (await ops.get_server("github")).command == "old"


async def test_overwrite_replaces_the_definition_and_keeps_tooldeck_settings(
    ops: LocalOperations,
) -> None:
    await ops.create_server(
        {
            "name": "github",
            "command": "old",
            "env": {"OLD": "1"},
            "description": "mine",
            "call_timeout_s": 9,
        },
        actor=ACTOR,
    )
    report = await ops.import_servers(
        fixture("claude_desktop_config.json"), on_conflict="overwrite", actor="test:bob"
    )

    github = by_name(report)["github"]
    assert github.action == "overwrite"
    assert "command" in (github.reason or "")
    server = await ops.get_server("github", reveal=True)
    assert server.command == "docker"
    assert server.env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_fixtureSecret456"}
    assert (server.description, server.call_timeout_s) == ("mine", 9)
    updated = await ops.list_events("github", kind="updated")
    assert [event.actor for event in updated] == ["test:bob"]

    again = await ops.import_servers(
        fixture("claude_desktop_config.json"), on_conflict="overwrite", actor="test:bob"
    )
    assert {item.action for item in again.items} == {"unchanged"}
    assert len(await ops.list_events("github", kind="updated")) == 1


async def test_rename_imports_beside_and_avoids_names_the_document_brings(
    ops: LocalOperations,
) -> None:
    await ops.create_server({"name": "demo", "command": "old"}, actor=ACTOR)
    document = {"mcpServers": {"demo": {"command": "new"}, "demo-2": {"command": "other"}}}
    report = await ops.import_servers(document, on_conflict="rename", actor=ACTOR)

    assert [(item.name, item.action) for item in report.items] == [
        ("demo-3", "rename"),
        ("demo-2", "create"),
    ]
    servers = await definitions(ops)
    assert (servers["demo"]["command"], servers["demo-3"]["command"]) == ("old", "new")


async def test_a_builtin_is_never_replaced_but_can_be_imported_beside(ops: LocalOperations) -> None:
    await ops.seed_builtin_servers()
    calculator = await ops.get_server("calculator")
    document = {"mcpServers": {"calculator": {"command": "evil"}, "other": {"command": "x"}}}

    report = await ops.import_servers(document, on_conflict="overwrite", actor=ACTOR)
    item = by_name(report)["calculator"]
    assert item.action == "skip"
    assert "built-in" in (item.reason or "")
    assert (await ops.get_server("calculator")).command == calculator.command
    assert by_name(report)["other"].action == "create"

    renamed = await ops.import_servers(document, on_conflict="rename", actor=ACTOR)
    assert by_name(renamed)["calculator-2"].action == "rename"
    assert (await ops.get_server("calculator-2")).is_builtin is False


async def test_unknown_conflict_policy_is_refused(ops: LocalOperations) -> None:
    with pytest.raises(InvalidInput) as caught:
        await ops.import_servers({"mcpServers": {}}, on_conflict="merge", actor=ACTOR)  # type: ignore[arg-type]
    assert caught.value.field == "on_conflict"


# ---- export and masking ------------------------------------------------------------------


async def test_export_masks_env_and_header_values_unless_asked(ops: LocalOperations) -> None:
    await ops.import_servers(fixture("claude_desktop_config.json"), actor=ACTOR)
    await ops.import_servers(fixture("cursor_mcp.json"), actor=ACTOR)

    for format in ("claude", "vscode"):
        masked = await ops.export_servers(format=format)  # type: ignore[arg-type]
        text = json.dumps(masked)
        for secret in ("BSA-fixture-secret-123", "ghp_fixtureSecret456", "ctx7-fixture-secret"):
            assert secret not in text
        servers = next(iter(masked.values()))
        assert servers["brave-search"]["env"] == {"BRAVE_API_KEY": MASK}
        assert servers["context7"]["headers"] == {"CONTEXT7_API_KEY": MASK}

    revealed = await ops.export_servers(["brave-search", "context7"], include_secrets=True)
    assert (
        revealed["mcpServers"]["brave-search"]["env"]["BRAVE_API_KEY"] == "BSA-fixture-secret-123"
    )
    assert revealed["mcpServers"]["context7"]["headers"] == {
        "CONTEXT7_API_KEY": "ctx7-fixture-secret"
    }


async def test_export_formats_have_each_clients_shape(ops: LocalOperations) -> None:
    await ops.import_servers(fixture("cursor_mcp.json"), actor=ACTOR)

    claude = await ops.export_servers(["local-notes", "linear", "context7"], format="claude")
    vscode = await ops.export_servers(["local-notes", "linear", "context7"], format="vscode")

    assert list(claude) == ["mcpServers"]
    assert claude["mcpServers"]["local-notes"] == {
        "command": "node",
        "args": ["/opt/notes/server.js"],
    }
    assert list(vscode) == ["servers"]
    assert vscode["servers"]["local-notes"]["type"] == "stdio"
    assert vscode["servers"]["linear"] == {"type": "sse", "url": "https://mcp.linear.app/sse"}
    assert claude["mcpServers"]["context7"]["type"] == "http"


async def test_export_of_an_unknown_name_or_format_fails(ops: LocalOperations) -> None:
    with pytest.raises(NotFound):
        await ops.export_servers(["ghost"])
    with pytest.raises(InvalidInput) as caught:
        await ops.export_servers(format="yaml")  # type: ignore[arg-type]
    assert caught.value.field == "format"


async def test_masked_values_keep_current_secrets_and_are_left_out_of_new_servers(
    ops: LocalOperations,
) -> None:
    await ops.import_servers(fixture("claude_desktop_config.json"), actor=ACTOR)
    masked = await ops.export_servers(["github"])
    masked["mcpServers"]["github"]["args"].append("--read-only")
    masked["mcpServers"]["fresh"] = {"command": "x", "env": {"TOKEN": MASK, "PLAIN": "1"}}

    report = await ops.import_servers(masked, on_conflict="overwrite", actor=ACTOR)

    github = await ops.get_server("github", reveal=True)
    assert github.env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_fixtureSecret456"}
    assert github.args[-1] == "--read-only"
    fresh = await ops.get_server("fresh", reveal=True)
    assert fresh.env == {"PLAIN": "1"}
    assert any("TOKEN masked" in warning for warning in by_name(report)["fresh"].warnings)


@pytest.mark.parametrize("format", ["claude", "vscode"])
async def test_round_trip_into_an_empty_data_dir_gives_the_same_servers(
    ops: LocalOperations, tmp_path: Path, format: str
) -> None:
    await ops.seed_builtin_servers()
    for name in ("claude_desktop_config.json", "cursor_mcp.json", "vscode_mcp.json"):
        await ops.import_servers(fixture(name), actor=ACTOR)
    exported = await ops.export_servers(format=format, include_secrets=True)  # type: ignore[arg-type]

    other_settings = load_settings(tmp_path / "other")
    other_db = await open_database(other_settings)
    try:
        other = LocalOperations(other_db, other_settings)
        await other.seed_builtin_servers()
        report = await other.import_servers(json.loads(json.dumps(exported)), actor=ACTOR)
        assert [item.name for item in report.items if item.action == "skip"] == ["calculator"]
        assert await definitions(other) == await definitions(ops)
    finally:
        await other_db.dispose()


# ---- bad input: one message naming the entry and the field, nothing written --------------

GOOD = {"command": "npx", "args": ["-y", "x"]}


@pytest.mark.parametrize(
    ("document", "field", "message"),
    [
        ([{"mcpServers": {}}], None, "expected a JSON object"),
        ("mcpServers", None, "expected a JSON object"),
        ({"globalShortcut": "x"}, None, "no mcpServers or servers object"),
        ({"mcpServers": ["a"]}, "mcpServers", "must be an object of named servers"),
        ({"mcpServers": {"good": GOOD, "bad": {}}}, "mcpServers.bad", "neither command nor url"),
        ({"mcpServers": {"good": GOOD, "bad": "npx"}}, "mcpServers.bad", "must be an object"),
        (
            {"mcpServers": {"good": GOOD, "bad": {"command": "x", "args": "-y x"}}},
            "mcpServers.bad.args",
            "must be a list of strings, got a string",
        ),
        (
            {"mcpServers": {"good": GOOD, "bad": {"command": "x", "args": ["-y", {}]}}},
            "mcpServers.bad.args",
            "item 1 is an object",
        ),
        (
            {"mcpServers": {"good": GOOD, "bad": {"command": "x", "env": ["A=1"]}}},
            "mcpServers.bad.env",
            "must be an object of strings, got a list",
        ),
        (
            {"mcpServers": {"good": GOOD, "bad": {"command": "x", "env": {"A": True}}}},
            "mcpServers.bad.env",
            "'A' is a boolean",
        ),
        (
            {"mcpServers": {"good": GOOD, "bad": {"command": "x", "env": {"1A": "v"}}}},
            "mcpServers.bad.env",
            "not a valid environment variable name",
        ),
        (
            {"mcpServers": {"good": GOOD, "bad": {"command": 3}}},
            "mcpServers.bad.command",
            "must be a string",
        ),
        (
            {"servers": {"good": GOOD, "My Bad": {"type": "http", "url": "ftp://x"}}},
            'servers["My Bad"].url',
            "http:// or https://",
        ),
        (
            {"servers": {"good": GOOD, "bad": {"type": "websocket", "url": "https://x"}}},
            "servers.bad.type",
            "unknown transport 'websocket'",
        ),
        (
            {"servers": {"good": GOOD, "bad": {"type": "stdio", "url": "https://x"}}},
            "servers.bad.command",
            "needs a command",
        ),
        (
            {"mcpServers": {"good": GOOD, "bad": {"url": "https://x", "headers": {"A B": "v"}}}},
            "mcpServers.bad.headers",
            "not a valid header name",
        ),
        (
            {"mcpServers": {"good": GOOD, "bad": {"command": "x", "disabled": "yes"}}},
            "mcpServers.bad.disabled",
            "true or false",
        ),
        (
            {"mcpServers": {"good": GOOD, "bad": {"type": "sse", "transport": "stdio"}}},
            "mcpServers.bad.type",
            "but transport says",
        ),
    ],
)
async def test_a_bad_entry_stops_the_whole_import(
    ops: LocalOperations, document: Any, field: str | None, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await ops.import_servers(document, actor=ACTOR)
    assert caught.value.field == field
    assert message in caught.value.message
    assert "\n" not in str(caught.value)
    assert await count_rows(ops, ToolServer) == 0
    assert await count_rows(ops, ServerEvent) == 0


def test_json_with_comments_and_trailing_commas_is_read() -> None:
    text = """{
      // VS Code writes JSONC
      "servers": {
        "a": {"command": "npx", "args": ["http://x//y", "/*not a comment*/", "a,]",],},
        /* a block */
      },
    }"""
    document = parse_json(text)
    assert document["servers"]["a"]["args"] == ["http://x//y", "/*not a comment*/", "a,]"]
    assert parse_document(document).entries[0].name == "a"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{ not json", "is not JSON: Expecting property name enclosed in double quotes at line 1"),
        (b"", "is not JSON: Expecting value at line 1 column 1"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
    ],
)
def test_unparsable_text_is_one_line(tmp_path: Path, raw: bytes, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(raw)
    with pytest.raises(InvalidInput) as caught:
        read_document(path)
    assert str(caught.value).startswith(f"{path} ")
    assert message in str(caught.value)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'\xef\xbb\xbf{"mcpServers": {}}')
    assert read_document(path) == {"mcpServers": {}}


def test_unreadable_files_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInput, match="not found"):
        read_document(tmp_path / "missing.json")
    with pytest.raises(InvalidInput, match="is a directory"):
        read_document(tmp_path)

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    # Tests may run as root, where chmod 000 does not stop a read: refuse it this way instead.
    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(InvalidInput, match=r"cannot read .*: Permission denied"):
        read_document(tmp_path / "config.json")


def test_known_client_locations() -> None:
    home = Path("/home/me")
    assert client_config_path("claude", platform="linux", home=home, environ={}) == Path(
        "/home/me/.config/Claude/claude_desktop_config.json"
    )
    assert client_config_path(
        "claude", platform="linux", home=home, environ={"XDG_CONFIG_HOME": "/xdg"}
    ) == Path("/xdg/Claude/claude_desktop_config.json")
    assert client_config_path("claude", platform="darwin", home=home, environ={}) == Path(
        "/home/me/Library/Application Support/Claude/claude_desktop_config.json"
    )
    assert client_config_path("cursor", platform="darwin", home=home) == Path(
        "/home/me/.cursor/mcp.json"
    )
    with pytest.raises(InvalidInput, match="unknown client"):
        client_config_path("emacs")


def test_an_export_is_written_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_text("old")
    path.chmod(0o644)
    write_document(path, {"mcpServers": {}})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"mcpServers": {}}
    old = os.umask(0)
    try:
        write_document(tmp_path / "new.json", {"mcpServers": {}})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o600
    with pytest.raises(InvalidInput, match="cannot write"):
        write_document(tmp_path / "missing" / "out.json", {})
