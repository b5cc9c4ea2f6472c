"""Logging for a face that owns the terminal: every log line goes to a file, never to stderr.

A line written to stderr while the dashboard draws lands in the middle of its screen, and a
traceback there hides the very thing that went wrong; the file keeps it whole instead.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.core.log_files import PrivateRotatingFileHandler
from app.core.settings import Settings

DASHBOARD_LOG_NAME = "dashboard.log"
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def dashboard_log_path(settings: Settings) -> Path:
    return settings.logs_dir / DASHBOARD_LOG_NAME


def _writes_to_terminal(handler: logging.Handler) -> bool:
    if isinstance(handler, logging.FileHandler) or not isinstance(handler, logging.StreamHandler):
        return False
    return handler.stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "a thread"
    logging.getLogger(__name__).error(
        "uncaught exception in %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


@contextmanager
def logging_to_file(settings: Settings, path: Path | None = None) -> Iterator[Path]:
    """For the duration: every log line goes to `path` (the dashboard's log by default) and
    none to the terminal, warnings included. What was there before is put back on leaving."""
    path = path or dashboard_log_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = PrivateRotatingFileHandler(
        path, maxBytes=settings.log_max_bytes, backupCount=settings.log_backups, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    root = logging.getLogger()
    loggers = [root] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    # Libraries may give their own loggers a stream handler; those are silenced as well.
    removed = [
        (logger, existing)
        for logger in loggers
        for existing in list(logger.handlers)
        if logger is root or _writes_to_terminal(existing)
    ]
    for logger, existing in removed:
        logger.removeHandler(existing)
    saved_level, saved_last_resort = root.level, logging.lastResort
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # A logger that does not propagate and has no handler would fall back to stderr.
    logging.lastResort = handler
    logging.captureWarnings(True)
    # An exception ending a thread (a driver's worker finding its loop closed at exit, say)
    # would print its traceback straight to stderr: it goes to the file like any log line.
    saved_excepthook = threading.excepthook
    threading.excepthook = _log_thread_exception
    try:
        yield path
    finally:
        threading.excepthook = saved_excepthook
        logging.captureWarnings(False)
        logging.lastResort = saved_last_resort
        root.removeHandler(handler)
        handler.close()
        for logger, existing in removed:
            logger.addHandler(existing)
        root.setLevel(saved_level)
