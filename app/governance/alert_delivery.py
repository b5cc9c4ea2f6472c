"""Alert delivery: a command fed the alert's JSON on stdin, and/or a webhook POST.

Each hook has a timeout and a bounded number of retries. The caller runs `deliver` in a task of
its own, so a hook that hangs or fails holds up nothing but itself. The command is run directly
(`exec`, never a shell): an alert's text comes partly from tool servers and must never be able
to become shell syntax.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import signal
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

import httpx2

from app.core.scrub import Scrubber, secret_values
from app.core.settings import Settings

logger = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
STDERR_CHARS = 200


class HookFailed(Exception):
    pass


def hook_secrets(url: str | None, argv: list[str] | None) -> set[str]:
    """The webhook URL whole and its path, and the command's arguments (not the program)."""
    values = secret_values(url=url, args=argv[1:] if argv else ())
    if url:
        values |= {url, urlsplit(url).path.strip("/")}
        values |= {segment for segment in urlsplit(url).path.split("/") if len(segment) >= 8}
    values |= {arg for arg in (argv or [])[1:] if len(arg) >= 8}
    return {value for value in values if value}


class AlertDelivery:
    def __init__(self, settings: Settings) -> None:
        command = settings.alert_command
        self.argv: list[str] | None = shlex.split(command) if command else None
        self.url = settings.alert_webhook_url or None
        self.timeout_s = settings.alert_hook_timeout_s
        self.retries = settings.alert_hook_retries
        # The outcome is stored on the alert and logged: it must not quote the hooks' secrets
        # (a webhook's path is often its key; a command's arguments may carry a token).
        self.scrub = Scrubber(hook_secrets(self.url, self.argv))

    @property
    def configured(self) -> bool:
        return bool(self.argv or self.url)

    async def deliver(self, alert: dict[str, Any]) -> str:
        """Run every configured hook; one line saying how each went."""
        body = json.dumps(alert, default=str).encode()
        hooks: list[tuple[str, Any]] = []
        if self.argv:
            hooks.append(("command", self._run_command))
        if self.url:
            hooks.append(("webhook", self._post))
        outcomes = await asyncio.gather(*(self._retrying(name, hook, body) for name, hook in hooks))
        return "; ".join(outcomes)

    async def _retrying(self, name: str, hook: Any, body: bytes) -> str:
        delay = RETRY_FIRST_S
        error = ""
        for attempt in range(1, self.retries + 2):
            try:
                async with asyncio.timeout(self.timeout_s):
                    await hook(body)
            except TimeoutError:
                error = f"timed out after {self.timeout_s:g} s"
            except HookFailed as exc:
                error = str(exc)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                return f"{name} ok" + (f" (attempt {attempt})" if attempt > 1 else "")
            if attempt <= self.retries:
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
        error = self.scrub(error)
        logger.warning("alert %s hook failed after %d attempts: %s", name, self.retries + 1, error)
        return f"{name} failed: {error}"

    async def _run_command(self, body: bytes) -> None:
        assert self.argv is not None
        process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # Its own group, so a timeout ends whatever the command started too.
            start_new_session=True,
        )
        try:
            _out, err = await process.communicate(body)
        except BaseException:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            text = err.decode(errors="replace").strip()[-STDERR_CHARS:]
            raise HookFailed(f"exit {process.returncode}" + (f": {text}" if text else ""))

    async def _post(self, body: bytes) -> None:
        assert self.url is not None
        async with httpx2.AsyncClient(timeout=self.timeout_s, trust_env=False) as client:
            response = await client.post(
                self.url, content=body, headers={"Content-Type": "application/json"}
            )
        if not 200 <= response.status_code < 300:
            raise HookFailed(f"HTTP {response.status_code}")
