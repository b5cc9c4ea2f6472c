"""JSON-lines logging for headless mode: one object per line, with the HTTP request id if any."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.core.log_files import PrivateRotatingFileHandler, SecretsFilter
from app.core.private_files import private_dir
from app.core.settings import Settings

# Set by the HTTP middleware for the duration of one request; every log line written while
# serving it (including the supervisor's, when the request started or stopped a server) carries it.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

DAEMON_LOG_NAME = "daemon.log"
# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's terminal colouring, meaningless in JSON
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info or record.exc_text:
            # exc_text: the traceback as SecretsFilter left it, when it had secrets to mask.
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_json_logging(settings: Settings) -> Path:
    """Route every logger (ours, uvicorn's, the SDK's) to stderr and a rotating file, as JSON."""
    private_dir(settings.logs_dir)
    log_file = settings.logs_dir / DAEMON_LOG_NAME
    formatter = JsonFormatter()
    file_handler = PrivateRotatingFileHandler(
        log_file,
        maxBytes=settings.log_max_bytes,
        backupCount=settings.log_backups,
        encoding="utf-8",
    )
    stderr_handler = logging.StreamHandler(sys.stderr)
    stderr_handler.addFilter(SecretsFilter())
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in (stderr_handler, file_handler):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    return log_file
