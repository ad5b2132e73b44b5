"""The Celery application, configured from alerts.config and nothing else."""

from __future__ import annotations

from typing import Any

from celery import Celery

from alerts.config import Settings, get_settings

# Celery task name = this prefix + the alerts.jobs.Job value.
TASK_PREFIX = "alerts."

# Tasks are short and idempotent (the delivery ledger makes a rerun a no-op), so
# they are acknowledged after they run: a worker that dies mid-task gets its
# message redelivered on brokers that can (Redis), and the sweeper covers the rest.
TASK_DEFAULTS: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "task_ignore_result": True,
    "task_serializer": "json",
    "accept_content": ["json"],
    "worker_hijack_root_logger": False,
    "broker_connection_retry_on_startup": True,
    "enable_utc": True,
}
# Longer than any countdown we set, so Redis never redelivers a task early.
REDIS_VISIBILITY_TIMEOUT_SECONDS = 2 * 60 * 60
# Filesystem broker: 4 prefetched messages and a 0.1 s poll gave about 1,200
# tasks/s on this machine; prefetch 1 crawled (see ../shared/NOTES.md).
FILESYSTEM_PREFETCH = 4
FILESYSTEM_POLL_SECONDS = 0.1


def broker_options(settings: Settings) -> dict[str, Any]:
    url = settings.resolved_broker_url
    if url.startswith("filesystem://"):
        folder = settings.broker_dir
        queue, processed, control = folder / "queue", folder / "processed", folder / "control"
        for path in (queue, processed, control):
            path.mkdir(parents=True, exist_ok=True)
        return {
            "broker_transport_options": {
                "data_folder_in": str(queue),
                "data_folder_out": str(queue),
                "processed_folder": str(processed),
                "control_folder": str(control),
                "store_processed": False,
                "polling_interval": FILESYSTEM_POLL_SECONDS,
            },
            "worker_prefetch_multiplier": FILESYSTEM_PREFETCH,
        }
    if url.startswith(("redis://", "rediss://", "redis+socket://")):
        return {
            "broker_transport_options": {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT_SECONDS},
            "worker_prefetch_multiplier": 1,
        }
    return {}


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("alerts", broker=settings.resolved_broker_url, include=["workers.tasks"])
    app.conf.update(TASK_DEFAULTS)
    app.conf.update(broker_options(settings))
    app.conf.task_routes = {
        f"{TASK_PREFIX}{job}": {"queue": queue} for job, queue in settings.job_queues.items()
    }
    return app


app = create_app()
