"""What every log file of ours shares: private files, and no secret of the fleet in any line.

A library that logs an exception quotes whatever it was handed, a server's URL with its key or
a header with its token among them; the scrubber of each server only covered what the
supervisor itself wrote. `SecretsFilter` applies every known server secret (`FLEET_SECRETS`)
to each record, message and traceback, before any handler writes it.
"""

from __future__ import annotations

import logging
import logging.handlers
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.core.private_files import open_private
from app.core.scrub import Scrubber


class FleetSecrets:
    """The secret values of every server this process has run, for texts no server owns."""

    def __init__(self) -> None:
        self._values: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()  # the reader thread and the loop may log at once
        self.scrub = Scrubber(())

    def remember(self, server: str, values: Iterable[str]) -> None:
        """Keep a server's values (a server renamed or deleted keeps its old secrets masked)."""
        values = frozenset(values)
        with self._lock:
            known = self._values.get(server, frozenset())
            if values <= known:
                return
            self._values[server] = known | values
            self.scrub = Scrubber(set().union(*self._values.values()))


FLEET_SECRETS = FleetSecrets()


class SecretsFilter(logging.Filter):
    """Replaces known secret values in a record's message and traceback (a handler's filter)."""

    def __init__(self, secrets: FleetSecrets = FLEET_SECRETS) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        scrub = self.secrets.scrub
        # Every handler of ours has this filter: the second one finds the record already done.
        if not scrub or getattr(record, _SCRUBBED_BY, None) is scrub:
            return True
        setattr(record, _SCRUBBED_BY, scrub)
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


_TRACEBACKS = logging.Formatter()
# The record attribute naming the scrubber (one per set of secrets) that has cleaned it.
_SCRUBBED_BY = "tooldeck_scrubbed_by"


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log only its owner can read, each file of it, and free of the fleet's secrets."""

    def __init__(self, path: Path, **options: Any) -> None:
        super().__init__(path, **options)
        self.addFilter(SecretsFilter())

    def _open(self) -> Any:
        return open_private(
            Path(self.baseFilename), self.mode, encoding=self.encoding, errors=self.errors
        )
