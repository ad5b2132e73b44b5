"""Per-message outcomes and the sweeper's recovery, on SQLite and PostgreSQL.

Mail goes over SMTP to the aiosmtpd server on loopback. A process that dies
mid-send is stood in for by an exception no code catches, raised by the SMTP
sender in the middle of a real conversation: whatever was committed before it
is what a SIGKILL would leave. The real kill, against Celery, Redis and SMTP,
is in test_fault_suite.py.
"""

from __future__ import annotations

import smtplib
from collections import Counter
from datetime import timedelta
from email import message_from_bytes

import pytest
from sqlalchemy import func, select

from alerts import jobs
from alerts.config import Settings
from alerts.db import Database
from alerts.delivery.ledger import sweep
from alerts.delivery.senders import SmtpSender
from alerts.models import Delivery, DeliveryState
from alerts.tick import run_tick
from tests.conftest import RecordedJobs
from tests.integration.smtp_server import TEST_SENDER_TIMEOUT_SECONDS, SmtpTestServer
from tests.integration.test_delivery import Desk

READERS = 20


class WorkerKilled(BaseException):
    """Raised from inside a send: like SIGKILL, no clean-up of ours catches it."""


class DyingSender(SmtpSender):
    """Hands ``survive`` messages to the server, then dies on the next one:
    half-way through DATA, before the server could take it, or (``accepted``)
    after the server answered 250 but before the worker recorded the reply."""

    def __init__(self, smtp: SmtpTestServer, survive: int, *, accepted: bool) -> None:
        super().__init__(smtp.url, pool_size=1, timeout=TEST_SENDER_TIMEOUT_SECONDS)
        self.survive = survive
        self.accepted = accepted
        self.handed_over = 0

    def send(self, envelope_from: str, recipient: str, message: bytes) -> None:
        if self.handed_over == self.survive:
            if self.accepted:
                super().send(envelope_from, recipient, message)
            else:
                self._die_inside_data(envelope_from, recipient, message)
            raise WorkerKilled
        super().send(envelope_from, recipient, message)
        self.handed_over += 1

    def _die_inside_data(self, envelope_from: str, recipient: str, message: bytes) -> None:
        """Send the message but not the final ".", then drop the connection, as
        the kernel does for a killed process: the server must discard it."""
        connection = smtplib.SMTP(self.url.host, self.url.port, timeout=self.timeout)
        try:
            connection.ehlo()
            assert connection.mail(envelope_from)[0] == 250
            assert connection.rcpt(recipient)[0] == 250
            assert connection.docmd("DATA")[0] == 354
            connection.send(message)
        finally:
            connection.close()


@pytest.fixture
def desk(database: Database, recorded_jobs: RecordedJobs, smtp_server: SmtpTestServer) -> Desk:
    return Desk(database, recorded_jobs, smtp_server)


def dying(desk: Desk, survive: int, *, accepted: bool) -> DyingSender:
    """Put a sender that dies after ``survive`` messages in the worker's place."""
    sender = desk.smtp.adopt(DyingSender(desk.smtp, survive, accepted=accepted))
    desk.mailer.sender = sender
    return sender


def burst(desk: Desk) -> list[int]:
    """One article that alerts ``READERS`` immediate readers at once."""
    for n in range(READERS):
        desk.subscribe(f"reader{n:02d}@example.org", query="tram", frequency="immediate")
    desk.publish("Tbilisi approves a tram line", "The council voted for a new tram line.")
    ids = desk.queued_sends()
    assert len(ids) == READERS
    return ids


def states(desk: Desk) -> Counter[DeliveryState]:
    return Counter(d.state for d in desk.deliveries())


def settings_with(desk: Desk, **values: object) -> None:
    desk.settings = Settings(**{**desk.settings.model_dump(), **values})
    desk.mailer.settings = desk.settings


@pytest.mark.parametrize("accepted", [False, True], ids=["before-250", "after-250"])
def test_a_crash_mid_burst_leaves_only_the_message_in_flight_unsettled(
    desk: Desk, accepted: bool
) -> None:
    ids = burst(desk)
    dying(desk, survive=5, accepted=accepted)
    with pytest.raises(WorkerKilled):
        desk.send(ids)
    # The server holds the five, and the one in flight only if it answered 250.
    assert len(desk.smtp.messages) == (6 if accepted else 5)
    # Each accepted message was recorded as its reply came; the one in flight is
    # the only row in 'sending'; the rest were never claimed.
    assert states(desk) == {
        DeliveryState.SENT: 5,
        DeliveryState.SENDING: 1,
        DeliveryState.QUEUED: READERS - 6,
    }

    # The task is redelivered (acks_late) to another worker with its own connection:
    # it sends the rest, not the one in doubt.
    desk.mailer.sender = desk.smtp.sender()
    assert desk.send(ids).sent == READERS - 6
    # The sweeper returns the one in doubt once it is surely orphaned.
    later = desk.now + timedelta(seconds=desk.settings.stuck_after_seconds + 1)
    with desk.database.session_scope() as session:
        recovered = sweep(
            session,
            later,
            stuck_after=timedelta(seconds=desk.settings.stuck_after_seconds),
            requeue_after=timedelta(seconds=desk.settings.requeue_after_seconds),
        )
    assert len(recovered) == 1
    desk.now = later
    assert desk.send(recovered).sent == 1
    assert states(desk) == {DeliveryState.SENT: READERS}

    received = [(recipient, data) for _, [recipient], data in desk.smtp.messages]
    assert len(received) == len(desk.smtp.messages)  # one recipient per message
    by_recipient = Counter(recipient for recipient, _ in received)
    assert set(by_recipient) == {f"reader{n:02d}@example.org" for n in range(READERS)}
    duplicates = sum(count - 1 for count in by_recipient.values())
    assert duplicates == (1 if accepted else 0)  # at most the one message in flight
    message_ids: dict[str, set[str]] = {}
    for recipient, data in received:
        message_ids.setdefault(recipient, set()).add(str(message_from_bytes(data)["Message-ID"]))
    assert all(len(found) == 1 for found in message_ids.values())  # same Message-ID


def test_a_larger_claim_holds_more_rows_but_resends_no_more(desk: Desk) -> None:
    settings_with(desk, send_claim_size=4)
    ids = burst(desk)
    dying(desk, survive=6, accepted=True)
    with pytest.raises(WorkerKilled):
        desk.send(ids)
    assert len(desk.smtp.messages) == 7  # row 7 reached the server
    # Claimed in fours: rows 5-8 were claimed together; 5 and 6 were recorded,
    # 7 was in flight (accepted), 8 was claimed but never handed over.
    assert states(desk) == {
        DeliveryState.SENT: 6,
        DeliveryState.SENDING: 2,
        DeliveryState.QUEUED: READERS - 8,
    }


def test_an_outcome_is_committed_before_the_next_message_goes_out(desk: Desk) -> None:
    ids = burst(desk)
    seen: list[int] = []

    class Watching(SmtpSender):
        def send(self, envelope_from: str, recipient: str, message: bytes) -> None:
            # Another connection sees every earlier message settled.
            with desk.database.session_scope() as session:
                seen.append(
                    session.scalar(
                        select(func.count(Delivery.id)).where(Delivery.state == DeliveryState.SENT)
                    )
                    or 0
                )
            super().send(envelope_from, recipient, message)

    desk.mailer.sender = desk.smtp.adopt(
        Watching(desk.smtp.url, pool_size=1, timeout=TEST_SENDER_TIMEOUT_SECONDS)
    )
    assert desk.send(ids).sent == READERS
    assert seen == list(range(READERS))
    assert len(desk.smtp.messages) == READERS


def test_default_bounds_follow_the_send_timeout_and_the_tick() -> None:
    settings = Settings()
    assert settings.stuck_after_seconds == 2 * settings.smtp_timeout_seconds + 30 == 90
    assert settings.requeue_after_seconds == settings.clock_tick_seconds == 60
    tuned = Settings(smtp_timeout_seconds=10, send_claim_size=3, clock_tick_seconds=5)
    assert tuned.stuck_after_seconds == 3 * 2 * 10 + 30
    assert tuned.requeue_after_seconds == 10  # never below the floor
    fixed = Settings(delivery_stuck_after_seconds=600, delivery_requeue_after_seconds=300)
    assert (fixed.stuck_after_seconds, fixed.requeue_after_seconds) == (600, 300)


class BrokerDownError(Exception):
    """What the job sender raises while the broker is unreachable."""


def test_a_tick_that_cannot_queue_rolls_its_touch_back(desk: Desk) -> None:
    ids = burst(desk)
    # The burst's task was lost: the rows are queued and untouched for a while.
    later = desk.now + timedelta(seconds=desk.settings.requeue_after_seconds + 1)

    def refuse(job: str, arguments: dict[str, object]) -> None:
        raise BrokerDownError("broker unreachable")

    jobs.set_job_sender(refuse)
    with pytest.raises(BrokerDownError), desk.database.session_scope() as session:
        run_tick(session, desk.settings, later)
    with desk.database.session_scope() as session:
        touched = session.scalar(
            select(func.count(Delivery.id)).where(Delivery.updated_at >= later)
        )
    assert touched == 0

    # The broker is back one tick later: the same rows are queued at once,
    # not a whole requeue period later.
    recorded = RecordedJobs()
    jobs.set_job_sender(lambda job, arguments: recorded.append((job, arguments)))
    next_tick = later + timedelta(seconds=desk.settings.clock_tick_seconds)
    with desk.database.session_scope() as session:
        report = run_tick(session, desk.settings, next_tick)
    assert report.recovered == sorted(ids)
    assert [i for job in recorded.named("send_alerts") for i in job["delivery_ids"]] == sorted(ids)


def test_rows_taken_back_from_a_dead_worker_are_found_again_if_their_task_is_lost(
    desk: Desk,
) -> None:
    ids = burst(desk)
    dying(desk, survive=0, accepted=False)
    with pytest.raises(WorkerKilled):
        desk.send(ids)
    assert desk.smtp.messages == []
    stuck_at = desk.now + timedelta(seconds=desk.settings.stuck_after_seconds + 1)
    lost = RecordedJobs()
    jobs.set_job_sender(lambda job, arguments: lost.append((job, arguments)))
    with desk.database.session_scope() as session:
        first = run_tick(session, desk.settings, stuck_at)
    assert ids[0] in first.recovered
    # That task vanished (Redis flushed); the very next tick queues the row again.
    again = RecordedJobs()
    jobs.set_job_sender(lambda job, arguments: again.append((job, arguments)))
    with desk.database.session_scope() as session:
        second = run_tick(session, desk.settings, stuck_at + timedelta(seconds=1))
    assert ids[0] in second.recovered
    assert ids[0] in [i for job in again.named("send_alerts") for i in job["delivery_ids"]]
