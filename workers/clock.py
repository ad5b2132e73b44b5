"""The clock: the only scheduler. One APScheduler job ticks; the database decides.

Each tick takes or renews the leader lease and, when it leads, queues what is
due (alerts.tick). Due-ness lives in the database, so a missed
or repeated tick loses nothing and doubles nothing, and a second clock started
by mistake only waits for the lease.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from datetime import timedelta
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.orm import Session

from alerts.bounce_mailbox import Mailbox, MailboxError, poll
from alerts.bounces import take_in
from alerts.config import get_settings
from alerts.db import get_database, utcnow
from alerts.jobs import set_job_sender
from alerts.leader import release, try_lead
from alerts.logs import configure_logging
from alerts.metrics import LEADER, keep_in_files
from alerts.retention import prune_all
from alerts.tick import TickReport, run_tick
from alerts.transactions import run_in_transaction
from workers.dispatch import send_job

log = logging.getLogger("alerts.clock")

LEASE_NAME = "clock"
# A tick that starts later than this after its slot is skipped; the next one
# finds the same due work anyway.
MISFIRE_GRACE_SECONDS = 30


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def tick(holder: str) -> bool:
    """One round of scheduling; True when this clock led it."""
    settings = get_settings()

    def lead_and_plan(session: Session) -> TickReport | None:
        now = utcnow()
        leads = try_lead(
            session, LEASE_NAME, holder, now, timedelta(seconds=settings.leader_lock_ttl_seconds)
        )
        LEADER.set(1 if leads else 0)
        return run_tick(session, settings, now) if leads else None

    # A tick that lost a race with a worker (a deadlock, a serialization
    # failure) is run again at once rather than waiting for the next one.
    report = run_in_transaction(get_database(), lead_and_plan)
    if report is None:
        return False
    if report.sources or report.digests or report.recovered or report.rematched:
        log.info(
            "queued %d source polls, %d digests, %d recovered deliveries, "
            "%d articles whose match task was lost",
            len(report.sources),
            len(report.digests),
            len(report.recovered),
            len(report.rematched),
        )
    return True


def prune(holder: str) -> bool:
    """The daily retention run, by the leading clock only; True when it ran."""
    settings = get_settings()
    with get_database().session_scope() as session:
        now = utcnow()
        ttl = timedelta(seconds=settings.leader_lock_ttl_seconds)
        if not try_lead(session, LEASE_NAME, holder, now, ttl):
            return False
    report = prune_all(settings, now)
    log.info("pruned %d rows past their retention: %s", report.total, report.as_dict())
    return True


def read_bounce_mailbox(holder: str) -> bool:
    """Record the returned mail waiting in ALERTS_BOUNCE_MAILBOX_URL, leading clock only."""
    settings = get_settings()
    if not settings.bounce_mailbox_url:
        return False
    with get_database().session_scope() as session:
        ttl = timedelta(seconds=settings.leader_lock_ttl_seconds)
        if not try_lead(session, LEASE_NAME, holder, utcnow(), ttl):
            return False
    try:
        report = poll(
            Mailbox.from_url(settings.bounce_mailbox_url), lambda raw: take_in(raw, (), settings)
        )
    except MailboxError as error:
        log.warning("bounce mailbox: %s", error)
        return False
    if report.taken or report.failed:
        log.info("bounce mailbox: recorded %d, failed %d", report.taken, report.failed)
    return True


def main() -> None:
    settings = get_settings()
    configure_logging(settings, "clock")
    keep_in_files(settings)
    set_job_sender(send_job)
    holder = holder_name()
    scheduler = BlockingScheduler(
        timezone="UTC",
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": MISFIRE_GRACE_SECONDS,
        },
    )
    scheduler.add_job(
        tick,
        "interval",
        args=[holder],
        seconds=settings.clock_tick_seconds,
        id="tick",
        next_run_time=utcnow(),
    )
    scheduler.add_job(
        read_bounce_mailbox,
        "interval",
        args=[holder],
        minutes=settings.bounce_poll_minutes,
        id="bounce-mailbox",
    )
    # A clock down at this hour prunes the next day: retention counts in days.
    scheduler.add_job(
        prune, "cron", args=[holder], hour=settings.prune_hour_utc, minute=17, id="prune"
    )

    def stop(_signum: int, _frame: FrameType | None) -> None:
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("clock %s ticking every %d s", holder, settings.clock_tick_seconds)
    scheduler.start()
    with get_database().session_scope() as session:
        release(session, LEASE_NAME, holder, utcnow())


if __name__ == "__main__":
    main()
