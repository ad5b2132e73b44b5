"""Every job the domain can queue has one Celery task and one queue, and every task a job."""

from __future__ import annotations

from alerts.config import get_settings
from alerts.jobs import Job
from workers import tasks  # noqa: F401  (registers the tasks on the app)
from workers.celery_app import TASK_PREFIX, app


def product_tasks() -> set[str]:
    return {name for name in app.tasks if name.startswith(TASK_PREFIX)}


def test_each_job_has_a_registered_task_and_each_task_is_a_job() -> None:
    assert product_tasks() == {TASK_PREFIX + job for job in Job}


def test_each_job_is_routed_to_a_queue() -> None:
    settings = get_settings()
    assert set(settings.job_queues) == set(Job)
    routes = app.conf.task_routes
    for job in Job:
        assert routes[TASK_PREFIX + job] == {"queue": settings.job_queues[job]}
