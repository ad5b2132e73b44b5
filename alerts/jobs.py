"""Naming background work without knowing the queue that runs it.

The domain says ``enqueue_after_commit(session, Job.MATCH_ARTICLES, article_ids=[...])``;
the sender that turns a job name into a queued task is installed by the
process's entry point (the web app factory, the ``alerts`` command, the worker
and the clock install the Celery one from ``workers.dispatch``), so the domain
never imports Celery and names no module above it. Jobs take ids and JSON
values only: never ORM objects, never naive times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from alerts.db import after_commit
from alerts.errors import AlertsError


class Job(StrEnum):
    """Every background job, named once.

    The value is the job name the sender receives; the workers register the
    Celery task ``alerts.<value>`` for each member, and ``Settings.job_queues``
    routes each member to a queue. A StrEnum so a member still equals its name.
    """

    POLL_SOURCE = "poll_source"
    MATCH_ARTICLES = "match_articles"
    SEND_DELIVERIES = "send_deliveries"
    SEND_ALERTS = "send_alerts"
    DELIVER_WEBHOOKS = "deliver_webhooks"


JobSender = Callable[[str, dict[str, Any]], None]

log = logging.getLogger("alerts.jobs")

_sender: JobSender | None = None


@dataclass
class QueuedJob:
    """One job handed to ``enqueue_after_commit``, and what became of it.

    ``sent`` turns true once the sender took it; ``error`` says why it did not
    (the broker was down). Neither is set while the transaction is open, nor
    when it rolled back.
    """

    job: str
    arguments: dict[str, Any]
    sent: bool = False
    error: str | None = None


class NoJobSenderError(AlertsError):
    """Work was queued in a process whose entry point installed no job sender."""


def set_job_sender(sender: JobSender | None) -> None:
    """Install the sender this process queues with (None uninstalls it)."""
    global _sender
    _sender = sender


def install_job_sender(sender: JobSender) -> None:
    """Install ``sender`` unless the process already has one.

    For entry points that can also run embedded: a test or benchmark that
    builds the web app after installing its own sender keeps that one.
    """
    if _sender is None:
        set_job_sender(sender)


def _current_sender() -> JobSender:
    if _sender is None:
        raise NoJobSenderError(
            "no job sender is installed: the entry point (web app, alerts command, "
            "worker, clock) installs one with alerts.jobs.install_job_sender"
        )
    return _sender


def enqueue_after_commit(session: Session, job: str, **arguments: Any) -> QueuedJob:
    """Queue ``job`` once the session commits, so the task sees committed rows.

    A job that cannot be queued then (the broker is down) is logged and marked
    on the returned handle, never raised: the rows are committed whatever
    happens, so raising would only tell the caller a lie, leave the session in
    its 'committed' state and skip the jobs queued after this one. Every kind
    of work has a ledger row and a sweeper that queues it again.
    """
    _current_sender()  # refuse now, inside the transaction, not silently after commit
    queued = QueuedJob(job, arguments)
    after_commit(session, lambda: _send(queued))
    return queued


def _send(queued: QueuedJob) -> None:
    try:
        _current_sender()(queued.job, queued.arguments)
    # Whatever the sender raises (kombu's OperationalError for a broker that is
    # down, a timeout, a bug): the transaction is already committed and nothing
    # may raise from here. One line says so; the traceback goes to debug, so a
    # command line run shows no traceback for a broker outage.
    except Exception as error:
        queued.error = f"{type(error).__name__}: {error}"
        log.warning(
            "could not queue %s after commit (%s); its sweeper will queue it again",
            queued.job,
            queued.error,
        )
        log.debug("queueing %s failed", queued.job, exc_info=True)
        return
    queued.sent = True


def enqueue_now(job: str, **arguments: Any) -> None:
    """Queue ``job`` at once, inside the caller's open transaction.

    For re-queueing rows that are already committed (the sweeper's finds): a
    task that starts before the commit still sees them, and a broker that
    refuses the job raises here, so the transaction that recorded "queued at"
    rolls back with it instead of hiding the rows until the next bound.
    """
    _current_sender()(job, arguments)
