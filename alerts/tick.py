"""What the clock does on each tick, when it leads: queue whatever is due.

Everything here is decided by the database (``next_poll_at``, digest windows,
ledger states), so a missed tick is made up by the next and a repeated one
finds nothing new to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from alerts.config import Settings
from alerts.delivery.ledger import recover_stuck, touch, waiting_for_task
from alerts.delivery.queueing import queue_sending, queue_sending_by_kind
from alerts.digest import plan_due_digests
from alerts.ingest.service import claim_due_sources, sweep_unmatched
from alerts.jobs import enqueue_after_commit
from alerts.metrics import DIGEST_RUN_SECONDS
from alerts.newsletters import finish_sent_issues, plan_recurring, start_due_issues
from alerts.webhooks import JOB as WEBHOOK_JOB
from alerts.webhooks import due_retries


@dataclass
class TickReport:
    sources: list[int] = field(default_factory=list)
    digests: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    issues: list[int] = field(default_factory=list)
    newsletter_deliveries: list[int] = field(default_factory=list)
    webhooks: list[int] = field(default_factory=list)
    rematched: list[int] = field(default_factory=list)  # articles whose match task was lost


def run_tick(session: Session, settings: Settings, now: datetime) -> TickReport:
    report = TickReport()
    report.sources = claim_due_sources(session, now)
    with DIGEST_RUN_SECONDS.time():
        report.digests = plan_due_digests(session, settings, now)
    queue_sending(session, report.digests, settings)
    report.issues = plan_recurring(session, now)
    report.newsletter_deliveries = start_due_issues(session, settings, now)
    queue_sending(session, report.newsletter_deliveries, settings)
    finish_sent_issues(session, now)
    report.recovered = sweep_deliveries(session, settings, now)
    report.rematched = sweep_unmatched(
        session, now, requeue_after=timedelta(seconds=settings.match_requeue_after_seconds)
    )
    report.webhooks = due_retries(session, now)
    if report.webhooks:
        enqueue_after_commit(session, WEBHOOK_JOB, delivery_ids=report.webhooks)
    return report


def sweep_deliveries(session: Session, settings: Settings, now: datetime) -> list[int]:
    """Re-queue deliveries whose task was lost; returns their ids.

    Rows already queued are touched and queued inside this transaction, so a
    broker that refuses them rolls the touch back and the next tick tries
    again. Rows just taken back from a dead worker change state here, so their
    task goes out after commit (a task must see them queued); they stay
    untouched, and if that queueing fails the next sweep finds them again.
    """
    recovered = recover_stuck(
        session, now, stuck_after=timedelta(seconds=settings.stuck_after_seconds)
    )
    just_recovered = set(recovered)
    waiting = [
        i
        for i in waiting_for_task(
            session, now, requeue_after=timedelta(seconds=settings.requeue_after_seconds)
        )
        if i not in just_recovered
    ]
    touch(session, waiting, now)
    queue_sending_by_kind(session, waiting, settings, at_once=True)
    queue_sending_by_kind(session, recovered, settings)
    return sorted([*recovered, *waiting])
