"""One scrubber for every secret Tooldeck knows of, used wherever a text is shown or stored.

Two kinds of masking:
- By shape, for displays (API answers, `server show`, exports, audit rows, log lines about a
  start): credentials in URLs, query parameters and arguments whose names look secret.
- By value, for texts a server or a library wrote (errors, stderr, events, alerts, gateway
  errors): every known secret value of that server (its env and header values, its URL's
  credentials and secret-looking query and argument values) is replaced wherever it appears.

Names that look secret: a part (split on `-`, `_`, `.`) in SECRET_PARTS, or one of
SECRET_FRAGMENTS anywhere in the name; `--key-file`, `--token-url` and the like name where a
secret is, not the secret (NOT_SECRET_TAILS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

from app.core.schemas import MASK

SECRET_PARTS = frozenset(
    {
        "auth",
        "authorization",
        "bearer",
        "cookie",
        "key",
        "pass",
        "pat",
        "pw",
        "pwd",
        "sig",
        "signature",
        "sid",
    }
)
SECRET_FRAGMENTS = (
    "apikey",
    "credential",
    "passphrase",
    "passwd",
    "password",
    "privatekey",
    "secret",
    "session",
    "token",
)
NOT_SECRET_TAILS = frozenset({"dir", "file", "name", "path", "type", "url", "uri", "id", "ids"})
# A value of a secret-named variable or a header is replaced from this length on; any other
# env value only from the longer one: "1", "info" or "true" would blot out every such word.
MIN_SECRET_CHARS = 3
MIN_OTHER_CHARS = 8
# A URL's user name alone is a token (`https://ghp_...@github.com`) from this length on; a
# shorter one is an account name (`postgresql://reader@db`).
MIN_TOKEN_CHARS = 16
# Nor are paths (HOME, PATH, a `*_FILE` that points at a secret): errors name them usefully.
PATH_STARTS = ("/", "~", "./", "../")
_PARTS = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_name(name: str) -> bool:
    parts = [part for part in _PARTS.split(_CAMEL.sub("_", name).lower()) if part]
    if not parts or parts[-1] in NOT_SECRET_TAILS:
        return False
    joined = "".join(parts)
    return any(part in SECRET_PARTS for part in parts) or any(
        fragment in joined for fragment in SECRET_FRAGMENTS
    )


# ---- by shape ------------------------------------------------------------------------------


def mask_url(url: str | None) -> str | None:
    """`url` with its password (or a lone user name as long as a token: `https://TOKEN@host`)
    and secret-looking query values masked. What does not parse as a URL comes back as it was."""
    if not url:
        return url
    parts = _split(url)
    if parts is None or (not parts.netloc and not parts.query):
        return url
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        if colon:
            netloc = f"{user}:{MASK}@{host}"
        elif len(user) >= MIN_TOKEN_CHARS:
            netloc = f"{MASK}@{host}"
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def mask_args(args: Sequence[str]) -> list[str]:
    """`--token=X`, `--api-key X`, `TOKEN=X` and URLs with credentials, masked."""
    masked: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next and not arg.startswith("-"):
            masked.append(MASK)
            hide_next = False
            continue
        hide_next = False
        name, equals, value = arg.partition("=")
        if equals and is_secret_name(name.lstrip("-")) and value:
            masked.append(f"{name}={MASK}")
        elif arg.startswith("-") and not equals and is_secret_name(arg.lstrip("-")):
            masked.append(arg)
            hide_next = True
        else:
            masked.append(mask_url(arg) if "://" in arg else arg)  # type: ignore[arg-type]
    return masked


def restore_masked_args(new: Sequence[str], old: Sequence[str]) -> list[str]:
    """Args sent back as they were shown (masked) mean "unchanged": the stored ones return."""
    shown = mask_args(old)
    if len(new) == len(old) and any(MASK in arg for arg in new):
        return [
            before if arg == seen and MASK in arg else arg
            for arg, seen, before in zip(new, shown, old, strict=True)
        ]
    return list(new)


def restore_masked_url(new: str | None, old: str | None) -> str | None:
    return old if new and old and MASK in new and new == mask_url(old) else new


def mask_command(command: str | None) -> str | None:
    """A command line for display: the program, and the rest masked (it may carry a token)."""
    if not command:
        return command
    program, _, rest = command.strip().partition(" ")
    return f"{program} {MASK}" if rest.strip() else program


def mask_all_but_origin(url: str | None) -> str | None:
    """A webhook URL for display: scheme and host only, since its path is often the secret."""
    parts = _split(url or "")
    if parts is None or not parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    hidden = parts.path.strip("/") or parts.query or parts.netloc != host
    return f"{parts.scheme}://{host}/{MASK}" if hidden else f"{parts.scheme}://{host}"


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:
        return None


def _mask_pair(pair: str) -> str:
    name, equals, value = pair.partition("=")
    return f"{name}={MASK}" if equals and value and is_secret_name(unquote(name)) else pair


# ---- by value ------------------------------------------------------------------------------


def secret_values(
    *,
    env: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    url: str | None = None,
    args: Sequence[str] = (),
) -> set[str]:
    """Every value of a server that must never show in a text."""
    values: set[str] = set()
    for name, value in _pairs(env):
        if is_secret_name(name):
            values.add(value)
        elif len(value) >= MIN_OTHER_CHARS and not value.startswith(PATH_STARTS):
            values.add(value)
    for _name, value in _pairs(headers):
        values.add(value)
        credential = value.partition(" ")[2]
        if credential.strip():  # "Bearer X": X alone may be echoed too
            values.add(credential.strip())
    values |= _url_secrets(url)
    for arg, shown in zip(args, mask_args(args), strict=True):
        if arg != shown:
            values |= _diff_secrets(arg, shown)
    return {value for value in values if len(value) >= MIN_SECRET_CHARS}


class Scrubber:
    """Replaces known secret values (and their escaped forms, as an error's repr shows them)."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = frozenset(values)
        forms: set[str] = set()
        for value in self.values:
            forms |= {value, repr(value)[1:-1], quote(value, safe=""), quote(value)}
        forms = {form for form in forms if len(form) >= MIN_SECRET_CHARS}
        # Longest first: a secret that contains another is replaced whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @classmethod
    def of(cls, server: Any) -> Scrubber:
        """For a server row, a ConnectionSpec or anything with the server fields."""
        return cls(
            secret_values(
                env=server.env or (),
                headers=server.headers or (),
                url=server.url,
                args=[str(arg) for arg in server.args or ()],
            )
        )

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)

    def deep(self, value: Any) -> Any:
        """Every string inside a JSON-like value."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {key: self.deep(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(item) for item in value]
        return value


NO_SECRETS = Scrubber(())


def _pairs(values: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    items = values.items() if isinstance(values, Mapping) else values
    return [(str(name), str(value)) for name, value in items]


def _url_secrets(url: str | None) -> set[str]:
    parts = _split(url or "")
    if parts is None:
        return set()
    found: set[str] = set()
    userinfo, at, _host = parts.netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            found |= {unquote(password), password}
        elif len(user) >= MIN_TOKEN_CHARS:
            found |= {unquote(user), user}
    for pair in parts.query.split("&") if parts.query else ():
        name, equals, value = pair.partition("=")
        if equals and value and is_secret_name(unquote(name)):
            found |= {value, unquote(value)}
    return {value for value in found if value}


def _diff_secrets(arg: str, shown: str) -> set[str]:
    """What `mask_args` hid of one argument."""
    if shown == MASK:
        return {arg}
    if "://" in arg:
        return _url_secrets(arg)
    return {arg.partition("=")[2]}
