"""Naming background work without knowing the queue that runs it.

The domain says ``enqueue_after_commit(session, "match_articles", article_ids=[...])``;
the sender that turns a job name into a queued task is plugged in at run time
(the Celery one lives in ``workers.dispatch``), so ``alerts/`` never imports
Celery. Jobs take ids and JSON values only: never ORM objects, never naive times.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from alerts.db import after_commit

JobSender = Callable[[str, dict[str, Any]], None]

# Where the production sender lives; looked up on first use.
DEFAULT_SENDER_PATH = "workers.dispatch:send_job"

_sender: JobSender | None = None


def set_job_sender(sender: JobSender | None) -> None:
    """Install a sender (tests install a recording one; None restores the default)."""
    global _sender
    _sender = sender


def _current_sender() -> JobSender:
    global _sender
    if _sender is None:
        module_name, _, attribute = DEFAULT_SENDER_PATH.partition(":")
        _sender = getattr(importlib.import_module(module_name), attribute)
    return _sender


def enqueue_after_commit(session: Session, job: str, **arguments: Any) -> None:
    """Queue ``job`` once the session commits, so the task sees committed rows."""
    after_commit(session, lambda: _current_sender()(job, arguments))


def enqueue_now(job: str, **arguments: Any) -> None:
    """Queue ``job`` at once, inside the caller's open transaction.

    For re-queueing rows that are already committed (the sweeper's finds): a
    task that starts before the commit still sees them, and a broker that
    refuses the job raises here, so the transaction that recorded "queued at"
    rolls back with it instead of hiding the rows until the next bound.
    """
    _current_sender()(job, arguments)
