"""The alert rules a person tunes: thresholds and hooks, kept in `config.toml` in the data dir.

They are settings (`TOOLDECK_ALERT_*`), read at start like every other; the facade changes them
in the file and in the running settings at once. A value set in the environment wins over the
file, so such a rule is shown with its source and not changed from here. One check per rule,
shared by the facade and the dashboard's form, says what a value may be.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from app.core.private_files import private_opener
from app.core.scrub import MASK
from app.core.settings import (
    CONFIG_FILE_NAME,
    Settings,
    describe_settings,
    env_name,
    masked_setting,
)

RuleGroup = Literal["thresholds", "hooks"]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: str  # the setting's field
    label: str
    group: RuleGroup
    unit: str = ""
    secret: bool = False


RULE_SPECS = (
    RuleSpec("alert_down_minutes", "Down for", "thresholds", "min"),
    RuleSpec("alert_health_failures", "Failed health checks", "thresholds", "in a row"),
    RuleSpec("alert_window_minutes", "Usage window", "thresholds", "min"),
    RuleSpec("alert_error_rate", "Error rate above", "thresholds", "0..1"),
    RuleSpec("alert_min_calls", "Calls needed", "thresholds", "in the window"),
    RuleSpec("alert_p95_ms", "p95 latency above", "thresholds", "ms"),
    RuleSpec("alert_anomaly_weeks", "Anomaly history", "thresholds", "weeks"),
    RuleSpec("alert_anomaly_mads", "Anomaly spread", "thresholds", "MADs"),
    RuleSpec("alert_anomaly_min_calls", "Anomaly calls", "thresholds", "per hour"),
    RuleSpec("alert_cooldown_s", "Cooldown", "thresholds", "s"),
    RuleSpec("alert_command", "Command", "hooks", secret=True),
    RuleSpec("alert_webhook_url", "Webhook URL", "hooks", secret=True),
    RuleSpec("alert_hook_timeout_s", "Hook timeout", "hooks", "s"),
    RuleSpec("alert_hook_retries", "Hook retries", "hooks"),
)
RULES = {spec.name: spec for spec in RULE_SPECS}
# The file's top-level `key = value` lines (before any [table]).
KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=")
TABLE_LINE = re.compile(r"^\s*\[")


class AlertRule(BaseModel):
    name: str
    variable: str
    label: str
    group: RuleGroup
    unit: str
    value: float | int | str | None
    default: float | int | str | None
    accepts: str
    # "default", "env", "flag" or "file <path>": where the running value came from.
    source: str
    secret: bool
    # Whether a change here takes effect: not while the environment sets it.
    editable: bool


class AlertRules(BaseModel):
    config_file: str
    rules: list[AlertRule]


class AlertRuleChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    values: dict[str, float | int | str | None] = Field(
        description="rule name (alert_p95_ms, alert_webhook_url, ...) to its new value; null or "
        "an empty text puts a rule back to its default. A secret sent back as shown (masked) "
        "is left as it is."
    )


def describe_rules(settings: Settings) -> AlertRules:
    """Every rule's running value (secrets masked), default, and where the value came from."""
    origins = {row.name: row for row in describe_settings(settings)}
    rules = []
    for spec in RULE_SPECS:
        info = Settings.model_fields[spec.name]
        origin = origins[env_name(spec.name)]
        rules.append(
            AlertRule(
                name=spec.name,
                variable=env_name(spec.name),
                label=spec.label,
                group=spec.group,
                unit=spec.unit,
                value=origin.value,
                default=info.default,
                accepts=info.description or "",
                source=origin.source,
                secret=spec.secret,
                editable=origin.source not in ("env", "flag"),
            )
        )
    return AlertRules(config_file=str(settings.data_dir / CONFIG_FILE_NAME), rules=rules)


class RuleProblem(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def check_rule(name: str, value: Any) -> Any:
    """`value` as the rule `name` takes it (text is parsed); RuleProblem says why not.

    None or empty text is the default.
    """
    if name not in RULES:
        raise RuleProblem(name, f"no alert rule {name!r}; the rules: {', '.join(RULES)}")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    info = Settings.model_fields[name]
    if RULES[name].secret and MASK in str(value):
        raise RuleProblem(name, "type it whole: what is shown of it is masked")
    if isinstance(value, str) and not value.isprintable():
        raise RuleProblem(name, "it has characters that are not printable")
    if name == "alert_command":
        return _check_command(str(value))
    if name == "alert_webhook_url":
        return _check_webhook(str(value))
    whole = info.annotation is int
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise RuleProblem(name, f"expected {info.description}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleProblem(name, f"expected {info.description}")
    if not math.isfinite(value) or (whole and value != int(value)):
        raise RuleProblem(name, f"expected {info.description}")
    return _bounded(name, int(value) if whole else float(value))


def _bounded(name: str, value: float) -> float:
    """`value` within the setting's own bounds (its `gt`, `ge`, `le` constraints)."""
    info = Settings.model_fields[name]
    for constraint in info.metadata:
        for bound, fails in (
            ("gt", lambda limit: value <= limit),
            ("ge", lambda limit: value < limit),
            ("le", lambda limit: value > limit),
            ("lt", lambda limit: value >= limit),
        ):
            limit = getattr(constraint, bound, None)
            if limit is not None and fails(limit):
                raise RuleProblem(name, f"expected {info.description}")
    return value


def _check_command(text: str) -> str:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise RuleProblem("alert_command", f"not a command line: {exc}") from None
    if not argv:
        raise RuleProblem("alert_command", "not a command line: it is empty")
    program = argv[0]
    # Run directly, never by a shell: the program must be found as it is.
    if os.sep in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise RuleProblem("alert_command", f"{program} is not an executable file")
    elif shutil.which(program) is None:
        raise RuleProblem("alert_command", f"no program {program!r} on the PATH")
    return text.strip()


def _check_webhook(text: str) -> str:
    text = text.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise RuleProblem("alert_webhook_url", "expected an http(s) URL such as https://host/hook")
    if any(char.isspace() for char in text):
        raise RuleProblem("alert_webhook_url", "a URL has no spaces")
    return text


def shown_value(name: str, value: Any) -> Any:
    """A rule's value as every face shows it: a hook's secrets masked."""
    return masked_setting(name, value)


def update_config_file(path: Path, values: dict[str, Any]) -> None:
    """Set top-level keys of a TOML file (None removes one), keeping its other lines as they
    are; the file is replaced whole, never left half-written, and stays 0600."""
    lines = path.read_text().splitlines() if path.is_file() else []
    end = next((index for index, line in enumerate(lines) if TABLE_LINE.match(line)), len(lines))
    top, rest = lines[:end], lines[end:]
    pending = dict(values)
    kept: list[str] = []
    for line in top:
        match = KEY_LINE.match(line)
        key = match.group(1).lower() if match else None
        name = next((field for field in pending if key in (field, env_name(field).lower())), None)
        if name is None:
            kept.append(line)
            continue
        value = pending.pop(name)
        if value is not None:
            kept.append(f"{name} = {toml_value(value)}")
    while kept and not kept[-1].strip():
        kept.pop()
    kept += [
        f"{name} = {toml_value(value)}" for name, value in pending.items() if value is not None
    ]
    text = "\n".join([*kept, *([""] if rest else []), *rest]) + "\n"
    tomllib.loads(text)  # what is written must read back
    temporary = path.with_name(f".{path.name}.new")
    with open(temporary, "w", opener=private_opener) as handle:
        handle.write(text)
    os.replace(temporary, path)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # A JSON string is a TOML basic string: the same quotes and escapes.
    return json.dumps(str(value))
