"""Structured logs: JSON lines when not on a terminal, readable text when on one.

Records carry ids (task, article, subscriber, delivery, source) as fields,
never a reader's address: any e-mail address in a message is replaced by a
short hash before it is written, so logs can be shipped and kept freely.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from alerts.config import Settings

# Fields a log call may pass in ``extra=`` that end up as JSON keys.
CONTEXT_FIELDS = (
    "task_id",
    "article_id",
    "subscriber_id",
    "delivery_id",
    "source_id",
    "newsletter_id",
    "kind",
    "outcome",
    "smtp_code",
)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Set by the worker for the duration of a task, so every line it logs names it.
current_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_task_id", default=None
)


def redact(text: str) -> str:
    """Addresses become ``<email:1a2b3c4d>``: the same address, the same tag."""
    return EMAIL.sub(
        lambda m: f"<email:{hashlib.sha256(m.group().lower().encode()).hexdigest()[:8]}>", text
    )


class RedactingFilter(logging.Filter):
    """Rewrites the message so no handler ever sees an address in clear."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        task_id = current_task_id.get()
        if task_id and not hasattr(record, "task_id"):
            record.task_id = task_id
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process_name = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": self.process_name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(settings: Settings, process: str) -> None:
    """Set up the root logger of one process (web, worker, clock or a command)."""
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter(process) if use_json else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
