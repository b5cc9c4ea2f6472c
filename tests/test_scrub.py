"""The secret scrubber: masking by shape for displays, by value for texts servers wrote."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.core.scrub import (
    MASK,
    Scrubber,
    is_secret_name,
    mask_all_but_origin,
    mask_args,
    mask_command,
    mask_url,
    restore_masked_args,
    restore_masked_url,
)


@pytest.mark.parametrize(
    "name",
    [
        "token",
        "api_key",
        "x-api-key",
        "apiKey",
        "client_secret",
        "PASSWORD",
        "sig",
        "auth",
        "access_token",
        "GITHUB_PAT",
        "Authorization",
        "session",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["key-file", "token-url", "verbose", "port", "keyboard", "author", "host", "path"]
)
def test_names_that_are_not_secrets(name: str) -> None:
    assert not is_secret_name(name)


def test_urls_lose_credentials_and_secret_query_values() -> None:
    url = "https://user:pass@host.example/mcp?api_key=abc123&page=2&sig=zz"
    assert mask_url(url) == f"https://user:{MASK}@host.example/mcp?api_key={MASK}&page=2&sig={MASK}"
    assert mask_url("https://ghp_0123456789abcdef@host/x") == f"https://{MASK}@host/x"
    assert mask_url("postgresql://reader@db/x") == "postgresql://reader@db/x"
    assert mask_url("https://host/x?page=1") == "https://host/x?page=1"
    assert mask_url("not a url") == "not a url" and mask_url(None) is None


def test_args_shaped_like_secrets_are_masked() -> None:
    args = [
        "--token=abc",
        "--api-key",
        "sk-1",
        "--verbose",
        "--auth",
        "--port",
        "80",
        "API_KEY=zz",
        "https://u:p@h/x",
        "plain",
    ]
    assert mask_args(args) == [
        f"--token={MASK}",
        "--api-key",
        MASK,
        "--verbose",
        "--auth",
        "--port",
        "80",
        f"API_KEY={MASK}",
        f"https://u:{MASK}@h/x",
        "plain",
    ]


def test_masked_args_and_url_sent_back_mean_unchanged() -> None:
    old = ["--token=abc", "--api-key", "sk-1", "x"]
    assert restore_masked_args(mask_args(old), old) == old
    edited = [*mask_args(old)[:3], "y"]
    assert restore_masked_args(edited, old) == ["--token=abc", "--api-key", "sk-1", "y"]
    assert restore_masked_args(["--token=new"], old) == ["--token=new"]
    url = "https://u:p@h/x?token=t"
    assert restore_masked_url(mask_url(url), url) == url
    assert restore_masked_url("https://other/", url) == "https://other/"


def test_config_displays() -> None:
    assert mask_command("curl -H 'Authorization: Bearer x' https://h") == f"curl {MASK}"
    assert mask_command("notify-send") == "notify-send"
    hook = "https://hooks.slack.example/services/T0/B0/XXXX"
    assert mask_all_but_origin(hook) == f"https://hooks.slack.example/{MASK}"
    assert mask_all_but_origin("https://h.example") == "https://h.example"


def test_known_values_are_replaced_in_any_text() -> None:
    server = SimpleNamespace(
        env={
            "API_KEY": "abc",
            "LOG_LEVEL": "info",
            "DB_PASSWORD_FILE": "/run/secrets/db",
            "OPAQUE": "z9y8x7w6v5",
        },
        headers={"Authorization": "Bearer tok-123", "X-Key": "SECRET\x00"},
        url="https://user:hunter2@host/mcp?access_token=qq%2Fq",
        args=["--api-key", "sk-live-1", "--token=t0k"],
    )
    scrub = Scrubber.of(server)
    text = (
        "failed: key abc, level info, Illegal header value b'SECRET\\x00', tok-123, hunter2, "
        "qq/q, qq%2Fq, sk-live-1, t0k, z9y8x7w6v5, /run/secrets/db"
    )
    assert scrub(text) == (
        f"failed: key {MASK}, level info, Illegal header value b'{MASK}', {MASK}, {MASK}, "
        f"{MASK}, {MASK}, {MASK}, {MASK}, {MASK}, /run/secrets/db"
    )
    assert scrub.deep({"a": ["abc", 1]}) == {"a": [MASK, 1]}
    assert Scrubber(())("abc") == "abc"
