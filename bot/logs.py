"""Logging: one line per event, to stderr, or to a file in the data dir when the console is
the transport (so that no log line lands in the conversation being typed).

The level comes from `--log-level`, else GRIDBOT_LOG_LEVEL, else INFO for a running bot
and WARNING for one-off commands. Alembic's and APScheduler's loggers follow the same rule.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE = "gridbot.log"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class OneLine(logging.Formatter):
    """Keeps each event on one line: newlines in messages and tracebacks are escaped, so
    `grep chat=-100123` finds the whole event."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "").replace("\n", " \\n ")


def level_from(option: str | None, default: str) -> str:
    """The level asked for; an unknown name is an error with the known ones."""
    level = (option or os.environ.get("GRIDBOT_LOG_LEVEL") or default).upper()
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    return level


def setup(level: str, log_file: Path | None = None) -> None:
    """Sends every logger's events (ours, Alembic's, APScheduler's) to stderr or `log_file`."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine(FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO, with the Telegram token in the URL: warnings only.
    logging.getLogger("httpx").setLevel(max(logging.getLevelName(level), logging.WARNING))
