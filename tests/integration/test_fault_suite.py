"""The fault suite: a worker SIGKILLed mid alert burst, PostgreSQL down for 30 s
mid digest run, the SMTP server killed mid run.

Real services throughout: Celery worker processes over Redis, PostgreSQL (a
private instance this test starts and stops where the fault is PostgreSQL
itself), and an SMTP server on loopback that logs every message it accepts.
Each test checks the ledger against that log: nothing lost, and duplicates
within the stated bound (one per SMTP connection in flight), each with the
Message-ID of the first copy.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from alerts import jobs
from alerts.config import Settings, get_settings
from alerts.db import Database, get_database, utcnow
from alerts.delivery.ledger import Promise, alert_key, promise
from alerts.delivery.outbound import RESENT_AT_MOST_PER_CONNECTION
from alerts.delivery.queueing import URGENT_SEND_JOB, message_id_for
from alerts.models import (
    Article,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Frequency,
    Subscriber,
    SubscriberStatus,
)
from tests.conftest import free_port, service_missing, wait_until
from tests.integration.test_delivery_stack import (
    WORKER_CONCURRENCY,
    Stack,
    finish,
    message_ids_by_recipient,
    plan_and_queue,
    running_stack,
    seed_due_digests,
)

pytestmark = pytest.mark.integration

# Each prefork child sends over at most its SMTP pool's connections at once
# (one stream each, one message in flight per stream).
CONNECTIONS_IN_FLIGHT = WORKER_CONCURRENCY * Settings().smtp_pool_size
DUPLICATES_BOUND = RESENT_AT_MOST_PER_CONNECTION * CONNECTIONS_IN_FLIGHT
# A Redis database apart from the other stack tests' (8) and the benchmarks' (9).
FAULT_REDIS_DB = 12
POSTGRES_DOWN_SECONDS = 30
PG_START_SECONDS = 30


@pytest.fixture
def stack(
    postgres_database: Database, redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Stack]:
    """The shared PostgreSQL server is enough where the fault is elsewhere."""
    with running_stack(
        postgres_database, redis_url, monkeypatch, tmp_path, FAULT_REDIS_DB
    ) as running:
        yield running


def check_ledger_against_smtp_log(stack: Stack, emails: list[str]) -> int:
    """Nothing lost, duplicates within bound, each copy with the same Message-ID,
    and the ledger's Message-IDs exactly those the server took. Returns the
    number of duplicates."""
    received = message_ids_by_recipient(stack.smtp)
    assert set(received) == set(emails)  # lost = 0
    duplicates = sum(len(ids) - 1 for ids in received.values())
    assert duplicates <= DUPLICATES_BOUND, received
    assert all(len(set(ids)) == 1 for ids in received.values())
    with stack.database.session_scope() as session:
        ledger = dict(
            session.execute(
                select(Delivery.recipient, Delivery.message_id).where(
                    Delivery.state == DeliveryState.SENT
                )
            ).all()
        )
    assert ledger == {email: ids[0] for email, ids in received.items()}
    # Shown with -rP: what the fault really cost, against the bound.
    print(
        f"accepted {sum(map(len, received.values()))} for {len(emails)}: lost 0, "
        f"{duplicates} duplicated (bound {DUPLICATES_BOUND})"
    )
    return duplicates


def seed_alert_burst(database: Database, count: int) -> tuple[list[str], list[int]]:
    """One article alerting ``count`` immediate readers at once: the ledger rows
    a match task promises (the matching itself is tested elsewhere)."""
    settings = get_settings()
    now = utcnow()
    with database.session_scope() as session:
        emails = [f"alert{n:03d}@example.org" for n in range(count)]
        subscriber_ids = session.scalars(
            insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True),
            [
                {
                    "email": email,
                    "status": SubscriberStatus.CONFIRMED,
                    "frequency": Frequency.IMMEDIATE,
                    "timezone": "UTC",
                    "send_at": datetime.min.time(),
                    "weekly_day": 0,
                    "language": "en",
                    "paused": False,
                    "created_at": now,
                    "confirmed_at": now,
                }
                for email in emails
            ],
        ).all()
        article_id = session.scalar(
            insert(Article).returning(Article.id),
            {
                "title": "Avalanche closes the Kazbegi road",
                "lead": "Rescuers closed the road.",
                "body": "Rescuers closed the road after an avalanche.",
                "fingerprint": "fault-burst",
                "title_key": "fault-burst",
                "language": "en",
                "tags": [],
                "ingested_at": now,
                "published_at": now,
                "source_name": "Fault Desk",
            },
        )
        ids = promise(
            session,
            [
                Promise(
                    dedup_key=alert_key(subscriber_id, article_id),
                    kind=DeliveryKind.ALERT,
                    recipient=email,
                    message_id=message_id_for(settings, alert_key(subscriber_id, article_id)),
                    due_at=now,
                    subscriber_id=subscriber_id,
                    article_id=article_id,
                )
                for subscriber_id, email in zip(subscriber_ids, emails, strict=True)
            ],
            now,
        )
    return emails, sorted(ids)


# Big enough that the last kill point still leaves seconds of sending: with
# 20 the burst sometimes finished between the poll and the kill on a busy CI.
ALERT_BURST = 40


@pytest.mark.slow
@pytest.mark.parametrize("killed_after", [1, 5, 15])
def test_worker_killed_mid_alert_burst_resends_at_most_one_per_connection(
    stack: Stack, killed_after: int
) -> None:
    emails, ids = seed_alert_burst(stack.database, ALERT_BURST)
    stack.smtp.data_delay = 0.2  # a slow relay: the kill lands mid-burst
    # Two tasks, so both worker processes have a message in flight.
    half = ALERT_BURST // 2
    for part in (ids[:half], ids[half:]):
        jobs.enqueue_now(URGENT_SEND_JOB, delivery_ids=part)
    worker = stack.worker()
    wait_until(
        lambda: len(stack.smtp.messages) >= killed_after, 60, f"{killed_after} alerts accepted"
    )
    stack.kill(worker)
    assert len(stack.smtp.messages) < ALERT_BURST, "the burst finished before the kill"
    stack.worker()
    finish(stack, ALERT_BURST)
    check_ledger_against_smtp_log(stack, emails)


@pytest.mark.slow
def test_smtp_server_killed_mid_run_loses_nothing(stack: Stack) -> None:
    emails = seed_due_digests(stack.database, 200)
    stack.smtp.data_delay = 0.02
    plan_and_queue(stack.database)
    stack.worker()
    wait_until(lambda: len(stack.smtp.messages) >= 50, 60, "the run to be under way")
    stack.smtp.stop()
    killed_at = len(stack.smtp.messages)
    time.sleep(3)  # every send in this while is refused: deferred with back-off
    stack.smtp.start()
    assert killed_at < 200, "the run finished before the kill"
    # The back-off is a minute or more; move the clock on instead of waiting.
    with stack.database.session_scope() as session:
        deferred = session.execute(
            update(Delivery)
            .where(Delivery.state == DeliveryState.QUEUED, Delivery.attempts > 0)
            .values(due_at=utcnow())
            .returning(Delivery.id)
        ).all()
    assert deferred, "no send was refused while the server was down"
    finish(stack, 200)
    check_ledger_against_smtp_log(stack, emails)


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of the test's own, on a free port in a temp folder,
    so the test can stop and start it. Run as the ``postgres`` OS user when
    the test runs as root (PostgreSQL refuses to run as root)."""

    root: Path
    port: int
    bin_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, check: bool = True) -> int:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *command], check=check, capture_output=True, timeout=60)
        return done.returncode

    def init(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.root / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.root / "data"),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(PG_START_SECONDS),
            "start",
        )

    def running(self) -> bool:
        status = self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "status", check=False
        )
        return status == 0

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", mode, "stop")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        service_missing("PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    root = Path(tempfile.mkdtemp(prefix="alerts-private-pg-"))
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(root, postgres.pw_uid, postgres.pw_gid)
    server = PrivatePostgres(root, free_port(), Path(found[-1]).parent)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running():
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def private_stack(
    private_postgres: PrivatePostgres,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Stack]:
    monkeypatch.setenv("ALERTS_DATABASE_URL", private_postgres.url)
    get_settings.cache_clear()
    database = get_database()
    with running_stack(database, redis_url, monkeypatch, tmp_path, FAULT_REDIS_DB) as running:
        yield running
    database.dispose()


@pytest.mark.slow
def test_postgres_down_mid_digest_run_loses_nothing(
    private_stack: Stack, private_postgres: PrivatePostgres
) -> None:
    stack = private_stack
    emails = seed_due_digests(stack.database, 300)
    stack.smtp.data_delay = 0.02
    plan_and_queue(stack.database)
    stack.worker()
    wait_until(lambda: len(stack.smtp.messages) >= 60, 60, "the run to be under way")
    private_postgres.stop("immediate")  # as abrupt as a crash: no shutdown checkpoint
    down_at = len(stack.smtp.messages)
    time.sleep(POSTGRES_DOWN_SECONDS)
    # While the database was away, at most the messages in flight went out.
    assert len(stack.smtp.messages) - down_at <= CONNECTIONS_IN_FLIGHT
    private_postgres.start()
    assert down_at < 300, "the run finished before the outage"
    finish(stack, 300)
    check_ledger_against_smtp_log(stack, emails)
    with stack.database.session_scope() as session:
        stuck = session.scalar(
            select(Delivery.id).where(Delivery.state != DeliveryState.SENT).limit(1)
        )
    assert stuck is None
