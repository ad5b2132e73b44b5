"""Thin tasks: load by id, call one domain function. The base task commits."""

from __future__ import annotations

import gc
import threading
from functools import lru_cache
from typing import Any

from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from alerts.alerting import process_new_articles
from alerts.config import get_settings
from alerts.db import forget_connections_after_fork, get_database, utcnow
from alerts.delivery.outbound import Mailer, send_deliveries
from alerts.ingest.service import limits_from, poll_source
from alerts.jobs import Job, set_job_sender
from alerts.logs import configure_logging, current_task_id
from alerts.mailer import close_process_mailer, process_mailer
from alerts.matching.service import IndexCache
from alerts.metrics import keep_in_files
from alerts.netguard import Outbound
from alerts.regions import default_gazetteer
from alerts.transactions import run_in_transaction
from alerts.webhooks import deliver
from workers.base import DatabaseTask
from workers.celery_app import TASK_PREFIX, app
from workers.dispatch import sender_for

# One compiled interest index per worker process; thread-pool workers share it.
_index_lock = threading.Lock()


@lru_cache(maxsize=1)
def index_cache() -> IndexCache:
    return IndexCache(default_gazetteer(), get_settings())


def mailer() -> Mailer:
    return process_mailer(get_settings())


@setup_logging.connect
def use_our_logging(**_: Any) -> None:
    """Celery's own log set-up is replaced by the project's structured one."""
    configure_logging(get_settings(), "worker")


@task_prerun.connect
def name_the_task(task_id: str, **_: Any) -> None:
    current_task_id.set(task_id)


@task_postrun.connect
def forget_the_task(**_: Any) -> None:
    current_task_id.set(None)


@worker_init.connect
def keep_metrics_in_files(**_: Any) -> None:
    """Count into this host's metrics files; prefork children start their own."""
    keep_in_files(get_settings())


@worker_init.connect
def queue_follow_up_jobs(sender: Any = None, **_: Any) -> None:
    """Jobs that tasks queue (matching queues alerts) go to this worker's broker."""
    set_job_sender(sender_for(sender.app if sender is not None else app))


@worker_init.connect
def warm_caches(sender: Any = None, **_: Any) -> None:
    """Build what tasks share before the pool starts, in the parent process:
    prefork children inherit it, and threads do not each build a copy at once
    (``lru_cache`` does not lock). Each worker builds only what its queues use.
    """
    consumed = sender.app.amqp.queues.consume_from if sender is not None else None
    settings = get_settings()

    def consumes(queue: str) -> bool:
        return not consumed or queue in consumed

    if consumes(settings.queue_send) or consumes(settings.queue_alerts):
        mailer()
        default_gazetteer()
    if consumes(settings.queue_match):
        with _index_lock, get_database().session_scope() as session:
            index_cache().refresh(session)
    # Untrack all of it from the cyclic collector: its passes would write to
    # every object header and so copy the shared pages into each child.
    gc.freeze()


@worker_process_init.connect
def forget_inherited_connections(**_: Any) -> None:
    """A forked child must not share the parent's database connections."""
    forget_connections_after_fork()


@worker_process_shutdown.connect
@worker_shutdown.connect
def close_mail_connections(**_: Any) -> None:
    """Say QUIT to the SMTP server instead of leaving it a dropped connection."""
    close_process_mailer()


@app.task(name=TASK_PREFIX + Job.POLL_SOURCE)
def poll_source_task(source_id: int) -> None:
    # Retried whole when it lost a race with another ingest (a deadlock).
    limits = limits_from(get_settings())
    run_in_transaction(
        get_database(), lambda session: poll_source(session, source_id, utcnow(), limits)
    )


@app.task(name=TASK_PREFIX + Job.MATCH_ARTICLES, base=DatabaseTask, bind=True)
def match_articles_task(self: DatabaseTask, article_ids: list[int]) -> None:
    with _index_lock, self.session() as session:
        process_new_articles(session, article_ids, index_cache(), get_settings(), utcnow())


@lru_cache(maxsize=1)
def webhook_client() -> Outbound:
    return Outbound.from_settings(get_settings())


@app.task(name=TASK_PREFIX + Job.DELIVER_WEBHOOKS)
def deliver_webhooks_task(delivery_ids: list[int]) -> None:
    # Like sending, posting owns its transactions (see alerts.webhooks).
    deliver(get_database(), delivery_ids, webhook_client(), utcnow)


@app.task(name=TASK_PREFIX + Job.SEND_DELIVERIES)
def send_deliveries_task(delivery_ids: list[int]) -> None:
    # Sending owns its transactions (see alerts.delivery.outbound).
    send_deliveries(get_database(), delivery_ids, mailer(), utcnow)


@app.task(name=TASK_PREFIX + Job.SEND_ALERTS)
def send_alerts_task(delivery_ids: list[int]) -> None:
    """The same sending, named apart so it is routed to the alerts queue."""
    send_deliveries_task(delivery_ids)
