"""Delivery on the production stack: PostgreSQL, Redis, Celery worker processes,
the clock, and a real SMTP server on loopback. Crashes included."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import dkim
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, insert, select

from alerts import jobs
from alerts.cli import main as alerts_main
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.delivery.ledger import sweep, touch
from alerts.delivery.outbound import RESENT_AT_MOST_PER_CONNECTION, send_deliveries
from alerts.delivery.queueing import queue_sending
from alerts.digest import plan_due_digests
from alerts.mailer import build_mailer
from alerts.models import (
    Article,
    Delivery,
    DeliveryState,
    Frequency,
    Interest,
    LeaderLease,
    Match,
    Subscriber,
    SubscriberStatus,
)
from alerts.newsletters import create_newsletter, progress, send_now, start_due_issues
from tests.conftest import REPO_ROOT, wait_until
from tests.factories import distinct_of, link
from tests.integration.smtp_server import SmtpTestServer
from workers.celery_app import create_app
from workers.dispatch import sender_for

REDIS_BROKER_DB = 8  # a database of its own, flushed before each test
WORKER_CONCURRENCY = 2
# Longer than one message takes (each row is 'sending' only during its own SMTP
# exchange), so the sweeper only recovers dead workers' rows.
STUCK_AFTER = timedelta(seconds=8)
REQUEUE_AFTER = timedelta(seconds=3)
RUN_SECONDS = 240


@dataclass
class Stack:
    database: Database
    smtp: SmtpTestServer
    broker: str
    env: dict[str, str]
    tmp: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        # The child keeps its own copy of the file descriptor.
        with (self.tmp / f"{args[0]}-{len(self.processes)}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "alerts", *args],
                env={**self.env, **extra_env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def worker(self) -> subprocess.Popen[bytes]:
        return self.start("worker", "--pool", "prefork", "--concurrency", str(WORKER_CONCURRENCY))

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and its children: no clean-up runs anywhere."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def sweep_once(self) -> list[int]:
        """What the clock's sweeper does, with test-sized time limits."""
        with self.database.session_scope() as session:
            now = utcnow()
            ids = sweep(session, now, stuck_after=STUCK_AFTER, requeue_after=REQUEUE_AFTER)
            touch(session, ids, now)
            queue_sending(session, ids, get_settings())
        return ids

    def states(self) -> Counter[DeliveryState]:
        with self.database.session_scope() as session:
            return Counter(
                dict(
                    session.execute(  # type: ignore[arg-type]
                        select(Delivery.state, func.count(Delivery.id)).group_by(Delivery.state)
                    ).all()
                )
            )

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-2000:] for path in self.tmp.glob("*.log")
        )


@contextmanager
def running_stack(
    database: Database,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_db: int = REDIS_BROKER_DB,
) -> Iterator[Stack]:
    """Redis (its own flushed database), an SMTP server on loopback, settings for
    ``database``, and the processes the test starts, stopped at the end.

    Queue names are the test's own: another checkout's tests on the same Redis
    must not take these tasks, nor these workers theirs.
    """
    broker = f"{redis_url.rsplit('/', 1)[0]}/{redis_db}"
    redis.Redis.from_url(broker).flushdb()
    smtp = SmtpTestServer().start()
    tag = uuid.uuid4().hex[:8]
    settings_env = {
        **{
            f"ALERTS_QUEUE_{queue.upper()}": f"{queue}-{tag}"
            for queue in ("ingest", "match", "send", "alerts", "webhooks")
        },
        "ALERTS_DATABASE_URL": database.url,
        "ALERTS_BROKER_URL": broker,
        "ALERTS_SMTP_URL": smtp.url,
        "ALERTS_SECRET_KEY": "stack-test-secret",
        "ALERTS_MAIL_FROM": "Desk Alerts <alerts@desk.example.org>",
    }
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    app = create_app(get_settings())
    jobs.set_job_sender(sender_for(app))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(settings_env, ALERTS_DATA_DIR=str(tmp_path / "var"), PYTHONPATH=str(REPO_ROOT))
    stack = Stack(database, smtp, broker, env, tmp_path)
    try:
        yield stack
    finally:
        stack.stop_all()
        smtp.stop()


@pytest.fixture
def stack(
    postgres_database: Database,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Stack]:
    with running_stack(postgres_database, redis_url, monkeypatch, tmp_path) as running:
        yield running


def seed_due_digests(database: Database, count: int) -> list[str]:
    """``count`` confirmed daily readers, each with matches due in today's digest."""
    now = utcnow()
    since = now - timedelta(days=2)
    with database.session_scope() as session:
        emails = [f"reader{n:05d}@example.org" for n in range(count)]
        subscriber_ids = session.scalars(
            insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True),
            [
                {
                    "email": email,
                    "status": SubscriberStatus.CONFIRMED,
                    "frequency": Frequency.DAILY,
                    "timezone": "UTC",
                    "send_at": datetime.min.time(),
                    "weekly_day": 0,
                    "language": "en",
                    "paused": False,
                    "created_at": since,
                    "confirmed_at": since,
                    "last_digest_at": since,
                }
                for email in emails
            ],
        ).all()
        # Every reader follows the same words: one distinct interest they all share.
        shared_id = distinct_of(session, "flood")
        interest_ids = session.scalars(
            insert(Interest).returning(Interest.id, sort_by_parameter_order=True),
            [
                {
                    "subscriber_id": s,
                    "query": "flood",
                    "regions": [],
                    "created_at": since,
                    "updated_at": since,
                }
                for s in subscriber_ids
            ],
        ).all()
        link(session, interest_ids, shared_id, since)
        article_ids = session.scalars(
            insert(Article).returning(Article.id, sort_by_parameter_order=True),
            [
                {
                    "title": f"Flood report {n}",
                    "lead": f"Water rose in district {n}.",
                    "body": f"Water rose in district {n}.",
                    "fingerprint": f"stack-{n}",
                    "title_key": f"stack-{n}",
                    "language": "en",
                    "tags": [],
                    "ingested_at": since,
                    "published_at": since,
                    "source_name": "Stack Desk",
                }
                for n in range(3)
            ],
        ).all()
        explanation = {"terms": [{"term": "flood", "zones": ["title"]}], "regions": []}
        session.execute(
            insert(Match),
            [
                {
                    "article_id": a,
                    "distinct_id": shared_id,
                    "score": 3.0,
                    "explanation": explanation,
                    "matched_at": since + timedelta(hours=1),
                }
                for a in article_ids
            ],
        )
    return emails


def plan_and_queue(database: Database) -> list[int]:
    with database.session_scope() as session:
        planned = plan_due_digests(session, get_settings(), utcnow())
        queue_sending(session, planned, get_settings())
    return planned


def message_ids_by_recipient(smtp: SmtpTestServer) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for _, recipients, data in smtp.messages:
        message_id = message_from_bytes(data)["Message-ID"]
        for recipient in recipients:
            found[recipient].append(message_id)
    return found


def finish(stack: Stack, total: int) -> None:
    """Sweep like the clock until every delivery is settled as sent."""

    def all_sent() -> bool:
        stack.sweep_once()
        return stack.states().get(DeliveryState.SENT, 0) == total

    try:
        wait_until(all_sent, RUN_SECONDS, f"{total} deliveries to be sent")
    except AssertionError as error:
        raise AssertionError(f"{error}: {stack.states()}\n{stack.logs()}") from error


@pytest.mark.slow
def test_worker_killed_mid_digest_run_loses_nothing(stack: Stack) -> None:
    emails = seed_due_digests(stack.database, 3000)
    planned = plan_and_queue(stack.database)
    assert len(planned) == 3000

    first = stack.worker()
    wait_until(lambda: len(stack.smtp.messages) >= 600, RUN_SECONDS, "the run to be under way")
    stack.kill(first)
    at_kill = len(stack.smtp.messages)
    assert at_kill < 3000, "the run finished before the kill: nothing was tested"

    time.sleep(STUCK_AFTER.total_seconds() + 0.5)
    stack.worker()
    finish(stack, 3000)

    received = message_ids_by_recipient(stack.smtp)
    assert set(received) == set(emails)  # 0 lost
    duplicates = {email: ids for email, ids in received.items() if len(ids) > 1}
    # In flight when killed: sent but not yet recorded, one per SMTP connection.
    assert (
        sum(len(ids) - 1 for ids in duplicates.values())
        <= RESENT_AT_MOST_PER_CONNECTION * WORKER_CONCURRENCY * get_settings().smtp_pool_size
    )
    assert all(len(set(ids)) == 1 for ids in duplicates.values())  # same Message-ID


@pytest.mark.slow
def test_redis_flushed_mid_run_loses_nothing_once_swept(stack: Stack) -> None:
    emails = seed_due_digests(stack.database, 1000)
    plan_and_queue(stack.database)
    stack.start("worker", "--pool", "prefork", "--concurrency", "1")
    wait_until(lambda: len(stack.smtp.messages) >= 150, RUN_SECONDS, "the run to be under way")
    redis.Redis.from_url(stack.broker).flushdb()
    finish(stack, 1000)
    received = message_ids_by_recipient(stack.smtp)
    assert set(received) == set(emails)
    assert all(len(ids) == 1 for ids in received.values())


@pytest.mark.slow
def test_two_clocks_send_each_digest_once(stack: Stack) -> None:
    emails = seed_due_digests(stack.database, 300)
    stack.start("clock", ALERTS_CLOCK_TICK_SECONDS="1")
    stack.start("clock", ALERTS_CLOCK_TICK_SECONDS="1")
    stack.worker()
    wait_until(lambda: len(stack.smtp.messages) >= 300, RUN_SECONDS, "300 digests")
    time.sleep(4)  # several more ticks of both clocks
    received = message_ids_by_recipient(stack.smtp)
    assert set(received) == set(emails)
    assert all(len(ids) == 1 for ids in received.values())
    with stack.database.session_scope() as session:
        assert session.scalar(select(func.count(Delivery.id))) == 300
        assert session.scalar(select(func.count()).select_from(LeaderLease)) == 1


def dkim_key(tmp: Path) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp / "dkim.pem"
    path.write_bytes(pem)

    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


@pytest.mark.slow
def test_ingested_article_reaches_the_smtp_server_as_a_signed_alert(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_path, txt_record = dkim_key(tmp_path)
    stack.env.update(
        ALERTS_DKIM_SELECTOR="news",
        ALERTS_DKIM_DOMAIN="desk.example.org",
        ALERTS_DKIM_PRIVATE_KEY_FILE=str(key_path),
    )
    assert (
        alerts_main(
            [
                "subscribers",
                "add",
                "alert@example.org",
                "--query",
                "tram",
                "--frequency",
                "immediate",
                "--confirmed",
            ]
        )
        == 0
    )
    stack.worker()
    feed = tmp_path / "feed.jsonl"
    feed.write_text(
        '{"id": "t1", "title": "Tbilisi orders <b>trams</b> & buses", '
        '"body": "The city ordered forty trams.", "url": "https://desk.example.org/t1", '
        '"language": "en", "source": "Desk"}\n'
    )
    assert alerts_main(["ingest", str(feed)]) == 0
    wait_until(lambda: len(stack.smtp.messages) == 1, 60, "the alert")
    mail_from, recipients, data = stack.smtp.messages[0]
    assert (mail_from, recipients) == ("alerts@desk.example.org", ["alert@example.org"])
    message = message_from_bytes(data)
    assert message["From"] == "Desk Alerts <alerts@desk.example.org>"
    assert message["To"] == "alert@example.org"
    assert "\n" not in message["Subject"]
    assert message["Date"]
    assert message["Message-ID"].endswith("@desk.example.org>")
    assert message["List-Id"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = message["List-Unsubscribe"]
    assert "<mailto:" in unsubscribe
    assert "/unsubscribe/" in unsubscribe
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.get_payload()] == [  # type: ignore[union-attr]
        "text/plain",
        "text/html",
    ]
    signed_headers = "".join(message["DKIM-Signature"].split()).lower()
    assert "list-unsubscribe:list-unsubscribe-post" in signed_headers

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"news._domainkey.desk.example.org."
        return txt_record

    assert dkim.verify(data, dnsfunc=dns)
    with stack.database.session_scope() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert delivery.state is DeliveryState.SENT
        assert delivery.message_id == message["Message-ID"]


def test_smtp_temporary_refusals_retry_and_permanent_ones_bounce(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """421/451 then accepted: delivered; 550 for one reader: bounced and suppressed."""
    emails = seed_due_digests(stack.database, 6)
    stack.smtp.rcpt_replies[emails[0]] = ["451 4.3.0 try again later"]
    stack.smtp.data_replies[emails[1]] = ["421 4.7.0 too busy"]
    stack.smtp.rcpt_replies[emails[2]] = "550 5.1.1 no such user"
    planned = plan_and_queue(stack.database)
    mailer = build_mailer(get_settings())
    now = utcnow()
    report = send_deliveries(stack.database, planned, mailer, lambda: now)
    assert (report.sent, report.deferred, report.bounced) == (3, 2, 1)

    later = now + timedelta(hours=1)
    with stack.database.session_scope() as session:
        due = sweep(session, later, stuck_after=STUCK_AFTER, requeue_after=REQUEUE_AFTER)
    assert len(due) == 2
    report = send_deliveries(stack.database, due, mailer, lambda: later)
    assert report.sent == 2
    received = message_ids_by_recipient(stack.smtp)
    assert set(received) == set(emails) - {emails[2]}
    assert all(len(ids) == 1 for ids in received.values())
    with stack.database.session_scope() as session:
        bounced = session.scalars(select(Subscriber).where(Subscriber.email == emails[2])).one()
        assert bounced.status is SubscriberStatus.BOUNCED
    assert alerts_main(["subscribers", "list", "--json"]) == 0
    assert '"status": "bounced"' in capsys.readouterr().out
    mailer.sender.close()


@pytest.mark.slow
def test_newsletter_to_ten_thousand_reaches_each_once_despite_a_killed_worker(
    stack: Stack,
) -> None:
    emails = seed_due_digests(stack.database, 10_000)
    settings = get_settings()
    with stack.database.session_scope() as session:
        article_ids = list(session.scalars(select(Article.id)))
        issue = create_newsletter(
            session,
            "test",
            subject="Caucasus Weekly",
            intro_markdown="This week on the desk.",
            sections=[{"title": "Floods", "article_ids": article_ids}],
            settings=settings,
            now=utcnow(),
        )
        send_now(session, issue.id, utcnow(), actor="system")
    with stack.database.session_scope() as session:
        planned = start_due_issues(session, settings, utcnow())
        queue_sending(session, planned, settings)
    assert len(planned) == 10_000

    first = stack.worker()
    wait_until(lambda: len(stack.smtp.messages) >= 2000, RUN_SECONDS, "the issue to be going out")
    stack.kill(first)
    assert len(stack.smtp.messages) < 10_000, "the issue finished before the kill"
    time.sleep(STUCK_AFTER.total_seconds() + 0.5)
    stack.worker()
    finish(stack, 10_000)

    received = message_ids_by_recipient(stack.smtp)
    assert set(received) == set(emails)
    duplicates = {email: ids for email, ids in received.items() if len(ids) > 1}
    assert (
        sum(len(ids) - 1 for ids in duplicates.values())
        <= RESENT_AT_MOST_PER_CONNECTION * WORKER_CONCURRENCY * get_settings().smtp_pool_size
    )
    assert all(len(set(ids)) == 1 for ids in duplicates.values())
    with stack.database.session_scope() as session:
        assert progress(session, issue.id)["sent"] == 10_000
