"""Alert rules changed through the facade: written to config.toml (its other lines kept), applied
to the running settings, audited; a bad value or one the environment sets changes nothing."""

from __future__ import annotations

import pytest

from app.core.alert_rules import check_rule, update_config_file
from app.core.errors import InvalidInput
from app.core.settings import Settings, load_settings
from app.ops.facade import LocalOperations
from tests.cli_runner import one_line_error, tooldeck

CONFIG = """# tuned for the build farm
tool_server_health_check_interval = 120
TOOLDECK_ALERT_P95_MS = 9000

[notes]
owner = "ops"
"""


def rules_by_name(rules: object) -> dict[str, object]:
    return {rule.name: rule for rule in rules.rules}  # type: ignore[attr-defined]


async def test_a_change_is_written_applied_and_audited(
    settings: Settings, ops: LocalOperations
) -> None:
    config = settings.data_dir / "config.toml"
    config.write_text(CONFIG.replace('[notes]\nowner = "ops"\n', ""))
    settings.alert_p95_ms = 9000.0
    shown = rules_by_name(await ops.alert_rules())
    assert shown["alert_p95_ms"].value == 9000.0  # type: ignore[attr-defined]
    assert shown["alert_p95_ms"].source == f"file {config}"  # type: ignore[attr-defined]
    assert shown["alert_min_calls"].source == "default"  # type: ignore[attr-defined]

    after = await ops.set_alert_rules(
        {"values": {"alert_p95_ms": "2500", "alert_min_calls": 25}}, actor="tui:alice"
    )
    assert rules_by_name(after)["alert_p95_ms"].value == 2500.0  # type: ignore[attr-defined]
    # Running settings: the next evaluation uses them; the file: the next start does too.
    assert (settings.alert_p95_ms, settings.alert_min_calls) == (2500.0, 25)
    text = config.read_text()
    assert text.startswith("# tuned for the build farm\ntool_server_health_check_interval = 120\n")
    reread = load_settings(settings.data_dir)
    assert (reread.alert_p95_ms, reread.alert_min_calls) == (2500.0, 25)
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    (entry,) = [e for e in await ops.list_audit() if e.kind == "alert_rules_changed"]
    assert entry.actor == "tui:alice"
    assert entry.before == {"alert_p95_ms": 9000.0, "alert_min_calls": 10}

    # Empty puts a rule back to its default, and out of the file.
    await ops.set_alert_rules({"values": {"alert_min_calls": ""}}, actor="t")
    assert settings.alert_min_calls == 10
    assert "alert_min_calls" not in config.read_text()


async def test_one_bad_value_changes_nothing(settings: Settings, ops: LocalOperations) -> None:
    config = settings.data_dir / "config.toml"
    config.write_text(CONFIG)
    for values, field in (
        ({"alert_p95_ms": 100, "alert_error_rate": "1.5"}, "alert_error_rate"),
        ({"alert_health_failures": "2.5"}, "alert_health_failures"),
        ({"alert_webhook_url": "ftp://host/hook"}, "alert_webhook_url"),
        ({"alert_command": "notify 'unclosed"}, "alert_command"),
        ({"alert_command": "no-such-program-here --flag"}, "alert_command"),
        ({"alert_p95_ms": "fast"}, "alert_p95_ms"),
    ):
        with pytest.raises(InvalidInput) as refused:
            await ops.set_alert_rules({"values": values}, actor="t")
        assert refused.value.field == field
    with pytest.raises(InvalidInput):
        await ops.set_alert_rules({"values": {"alert_nothing": 1}}, actor="t")
    assert config.read_text() == CONFIG
    assert settings.alert_p95_ms == 5000.0


async def test_a_rule_the_environment_sets_is_not_changed_here(
    settings: Settings, ops: LocalOperations, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLDECK_ALERT_P95_MS", "7000")
    settings.alert_p95_ms = 7000.0
    rule = rules_by_name(await ops.alert_rules())["alert_p95_ms"]
    assert (rule.source, rule.editable) == ("env", False)  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput, match="TOOLDECK_ALERT_P95_MS"):
        await ops.set_alert_rules({"values": {"alert_p95_ms": 100}}, actor="t")
    # Sent back unchanged (a form saving all its fields), it is no change.
    await ops.set_alert_rules({"values": {"alert_p95_ms": 7000, "alert_min_calls": 3}}, actor="t")
    assert settings.alert_min_calls == 3


async def test_hook_secrets_are_masked_and_kept_when_sent_back(
    settings: Settings, ops: LocalOperations
) -> None:
    url = "https://hooks.example.com/services/T000/B000/secretsecretsecret"
    await ops.set_alert_rules({"values": {"alert_webhook_url": url}}, actor="t")
    shown = rules_by_name(await ops.alert_rules())["alert_webhook_url"]
    assert "secret" not in str(shown.value)  # type: ignore[attr-defined]
    await ops.set_alert_rules(
        {"values": {"alert_webhook_url": shown.value, "alert_hook_retries": 0}},  # type: ignore[attr-defined]
        actor="t",
    )
    assert settings.alert_webhook_url == url and settings.alert_hook_retries == 0
    assert load_settings(settings.data_dir).alert_webhook_url == url
    (entry,) = [e for e in await ops.list_audit() if e.kind == "alert_rules_changed"][-1:]
    assert "secret" not in str(entry.after)


def test_the_file_keeps_its_tables_and_comments(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "config.toml"
    path.write_text(CONFIG)
    update_config_file(path, {"alert_p95_ms": 1500.0, "alert_hook_retries": 0})
    text = path.read_text()
    assert "TOOLDECK_ALERT_P95_MS" not in text and "alert_p95_ms = 1500.0" in text
    assert text.index("alert_hook_retries = 0") < text.index("[notes]")
    assert text.startswith("# tuned for the build farm") and text.endswith('owner = "ops"\n')
    assert check_rule("alert_cooldown_s", "0") == 0.0


def test_the_cli_lists_and_sets_rules(settings: Settings) -> None:
    set_ = tooldeck("alerts", "rules", "alert_p95_ms=2500", "alert_min_calls=")
    assert set_.returncode == 0, set_.stderr
    assert "saved to" in set_.stdout
    assert load_settings(settings.data_dir).alert_p95_ms == 2500.0
    listed = tooldeck("alerts", "rules")
    (p95,) = [line for line in listed.stdout.splitlines() if line.startswith("alert_p95_ms")]
    assert "2500" in p95 and "config.toml" in p95
    refused = one_line_error(tooldeck("alerts", "rules", "alert_error_rate=2"))
    assert refused.startswith("tooldeck: alert_error_rate:") and "<= 1" in refused
    assert load_settings(settings.data_dir).alert_error_rate == 0.5
