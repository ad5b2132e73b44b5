"""The Celery job sender that the edges install into alerts.jobs."""

from __future__ import annotations

from typing import Any

from celery import Celery

from alerts.jobs import JobSender
from workers.celery_app import TASK_PREFIX, app


def sender_for(celery: Celery) -> JobSender:
    """Queue jobs as tasks of ``celery``: the workers' app, or one a benchmark built."""

    def send(job: str, arguments: dict[str, Any]) -> None:
        celery.send_task(TASK_PREFIX + job, kwargs=arguments)

    return send


send_job = sender_for(app)
