"""Matching under broker faults, on the production stack: PostgreSQL, a Redis of
the test's own that is killed and started again empty, a Celery worker process,
the clock process, and a real SMTP server on loopback.

Each test compares the delivery ledger with what the SMTP server itself
received: every immediate alert arrives (lost = 0), and once (duplicated = 0).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alerts import jobs
from alerts.cli import main as alerts_main
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.matching.service import reached_matches
from alerts.models import (
    Article,
    Delivery,
    DeliveryKind,
    DeliveryState,
    LeaderLease,
    MatchState,
)
from alerts.subscribers import NewSubscriber, add_subscriber
from tests.conftest import REPO_ROOT, wait_until
from tests.integration.private_redis import PrivateRedis
from tests.integration.smtp_server import SmtpTestServer
from workers.celery_app import create_app
from workers.dispatch import sender_for

READERS = 20
STORIES = ("Harbour cranes arrive in Poti", "Harbour strike ends", "Harbour fees cut")
ALERTS = READERS * len(STORIES)  # under the hourly alert cap of 6 per reader
# The sweeper's bound in these tests; the clock ticks every second.
REQUEUE_AFTER_SECONDS = 2
RUN_SECONDS = 120


@dataclass
class FaultStack:
    database: Database
    redis: PrivateRedis
    smtp: SmtpTestServer
    env: dict[str, str]
    tmp: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{args[0]}-{len(self.processes)}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "alerts", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def start_worker_and_clock(self) -> None:
        self.start("worker", "--pool", "prefork", "--concurrency", "2")
        self.start("clock")

    def stop_all(self) -> None:
        """Warm shutdown: a worker finishes what it holds before the ledger is read."""
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.tmp.glob("*.log"))
        )

    def sent_alerts(self) -> int:
        with self.database.session_scope() as session:
            return (
                session.scalar(
                    select(func.count(Delivery.id)).where(
                        Delivery.kind == DeliveryKind.ALERT, Delivery.state == DeliveryState.SENT
                    )
                )
                or 0
            )

    def wait_for_every_alert(self) -> None:
        def done() -> bool:
            return self.sent_alerts() == ALERTS and len(self.smtp.messages) >= ALERTS

        try:
            wait_until(done, RUN_SECONDS, f"{ALERTS} alerts sent")
        except AssertionError as error:
            raise AssertionError(
                f"{error}: {self.sent_alerts()} sent in the ledger, "
                f"{len(self.smtp.messages)} at the SMTP server\n{self.logs()}"
            ) from error

    def assert_each_alert_arrived_once(self) -> None:
        """The ledger against the SMTP server's own log, after the processes stopped."""
        with self.database.session_scope() as session:
            ledger = {
                row.message_id: row.recipient
                for row in session.execute(
                    select(Delivery.message_id, Delivery.recipient).where(
                        Delivery.kind == DeliveryKind.ALERT
                    )
                )
            }
            states = set(session.scalars(select(Article.match_state)))
            # Stored once per distinct interest; each reader reaches the article.
            matches = session.scalar(select(func.count()).select_from(reached_matches().subquery()))
        received = [
            (message_from_bytes(data)["Message-ID"], recipients)
            for _, recipients, data in self.smtp.messages
        ]
        received_ids = [message_id for message_id, _ in received]
        assert len(ledger) == ALERTS
        lost = set(ledger) - set(received_ids)
        duplicated = len(received_ids) - len(set(received_ids))
        assert (len(lost), duplicated) == (0, 0), self.logs()
        assert set(received_ids) == set(ledger)
        assert all(recipients == [ledger[mid]] for mid, recipients in received)
        assert states == {MatchState.DONE}
        assert matches == ALERTS


@pytest.fixture
def fault_stack(
    postgres_database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FaultStack]:
    private_redis = PrivateRedis(tmp_path / "redis")
    smtp = SmtpTestServer().start()
    settings_env = {
        "ALERTS_DATABASE_URL": postgres_database.url,
        "ALERTS_BROKER_URL": private_redis.url,
        "ALERTS_SMTP_URL": smtp.url,
        "ALERTS_SECRET_KEY": "fault-test-secret",
        "ALERTS_MAIL_FROM": "Desk Alerts <alerts@desk.example.org>",
        "ALERTS_CLOCK_TICK_SECONDS": "1",
        "ALERTS_MATCH_REQUEUE_AFTER_SECONDS": str(REQUEUE_AFTER_SECONDS),
    }
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    app = create_app(get_settings())
    jobs.set_job_sender(sender_for(app))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(settings_env, ALERTS_DATA_DIR=str(tmp_path / "var"), PYTHONPATH=str(REPO_ROOT))
    stack = FaultStack(postgres_database, private_redis, smtp, env, tmp_path)
    with postgres_database.session_scope() as session:
        for n in range(READERS):
            add_subscriber(
                session,
                NewSubscriber(
                    email=f"reader{n:02d}@example.org",
                    query="harbour",
                    frequency="immediate",
                    confirmed=True,
                ),
                get_settings(),
                utcnow(),
            )
    yield stack
    stack.stop_all()
    private_redis.kill()
    smtp.stop()
    app.pool.force_close_all()


def write_feed(path: Path) -> Path:
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"harbour-{n}",
                    "title": title,
                    "body": f"{title}. The port authority confirmed it on Monday.",
                    "url": f"https://desk.example.org/harbour/{n}",
                    "language": "en",
                    "source": "Desk",
                }
            )
            + "\n"
            for n, title in enumerate(STORIES)
        )
    )
    return path


@pytest.mark.slow
def test_redis_restarted_empty_with_match_tasks_queued_loses_no_alert(
    fault_stack: FaultStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fault_stack.redis.start()
    assert alerts_main(["ingest", str(write_feed(tmp_path / "feed.jsonl"))]) == 0
    assert "warning" not in capsys.readouterr().err
    assert fault_stack.redis.queue_length("match") == 1  # one task for the three stories

    fault_stack.redis.kill()
    fault_stack.redis.start()
    assert fault_stack.redis.queue_length("match") == 0  # the task is gone

    fault_stack.start_worker_and_clock()
    fault_stack.wait_for_every_alert()
    fault_stack.stop_all()
    fault_stack.assert_each_alert_arrived_once()


@pytest.mark.slow
def test_ingest_while_redis_is_down_succeeds_and_is_matched_once_it_is_back(
    fault_stack: FaultStack, tmp_path: Path
) -> None:
    fault_stack.redis.start()
    fault_stack.start_worker_and_clock()

    def clock_leads() -> bool:
        with fault_stack.database.session_scope() as session:
            return bool(session.scalar(select(func.count()).select_from(LeaderLease)))

    wait_until(clock_leads, RUN_SECONDS, "the clock to lead")
    fault_stack.redis.kill()

    feed = write_feed(tmp_path / "feed.jsonl")
    ingest = subprocess.run(
        [sys.executable, "-m", "alerts", "ingest", str(feed)],
        env=fault_stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ingest.returncode == 0, ingest.stderr
    assert ingest.stdout.strip() == f"{feed}: 3 new, 0 duplicate, 0 rejected"
    assert "alerts ingest: warning:" in ingest.stderr
    assert "3 article(s) stored but not queued for matching" in ingest.stderr
    assert "Traceback" not in ingest.stderr
    with fault_stack.database.session_scope() as session:
        assert set(session.scalars(select(Article.match_state))) == {MatchState.PENDING}

    fault_stack.redis.start()  # back, and empty
    fault_stack.wait_for_every_alert()
    fault_stack.stop_all()
    fault_stack.assert_each_alert_arrived_once()
