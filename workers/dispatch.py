"""The Celery job sender plugged into alerts.jobs."""

from __future__ import annotations

from typing import Any

from workers.celery_app import TASK_PREFIX, app


def send_job(job: str, arguments: dict[str, Any]) -> None:
    app.send_task(TASK_PREFIX + job, kwargs=arguments)
