"""Commands facing outages and interruptions: one clear line instead of a
traceback, and an interrupted ``alerts digests send`` that a second run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alerts.cli import EXIT_UNAVAILABLE, main, outage_message
from alerts.config import get_settings
from alerts.db import Database
from alerts.models import Delivery, DeliveryState
from tests.conftest import REPO_ROOT, free_port, wait_until
from tests.integration.smtp_server import SmtpTestServer
from tests.integration.test_delivery_stack import message_ids_by_recipient, seed_due_digests
from workers.celery_app import create_app

pytestmark = pytest.mark.integration

READERS = 40


def test_a_database_outage_is_one_line_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on this port: the server is down.
    monkeypatch.setenv(
        "ALERTS_DATABASE_URL", f"postgresql+psycopg://alerts:hunter2@127.0.0.1:{free_port()}/x"
    )
    get_settings.cache_clear()
    assert main(["subscribers", "list"]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith("alerts: the database is unavailable (postgresql+psycopg://alerts:***@")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "hunter2" not in err


def test_a_broker_outage_is_named_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("ALERTS_BROKER_URL", broker)
    get_settings.cache_clear()
    app = create_app(get_settings())
    app.conf.broker_connection_timeout = 1
    app.conf.task_publish_retry = False
    with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever kombu raises
        app.send_task("alerts.send_alerts", kwargs={"delivery_ids": [1]})
    message = outage_message(raised.value)
    assert message is not None
    assert message.startswith("the broker is unavailable (redis://:***@127.0.0.1:")
    assert "hunter2" not in message


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    server = SmtpTestServer().start()
    yield server
    server.stop()


def digests_send(
    postgres_database: Database, smtp: SmtpTestServer, tmp_path: Path, *args: str
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(
        ALERTS_DATABASE_URL=postgres_database.url,
        ALERTS_SMTP_URL=smtp.url,
        ALERTS_SMTP_POOL_SIZE="1",
        ALERTS_SECRET_KEY="cli-test",
        ALERTS_DATA_DIR=str(tmp_path / "var"),
        PYTHONPATH=str(REPO_ROOT),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "alerts", "digests", "send", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def states(database: Database) -> dict[DeliveryState, int]:
    with database.session_scope() as session:
        return dict(
            session.execute(  # type: ignore[arg-type]
                select(Delivery.state, func.count(Delivery.id)).group_by(Delivery.state)
            ).all()
        )


def resume(
    monkeypatch: pytest.MonkeyPatch, database: Database, smtp: SmtpTestServer, **env: str
) -> None:
    monkeypatch.setenv("ALERTS_DATABASE_URL", database.url)
    monkeypatch.setenv("ALERTS_SMTP_URL", smtp.url)
    monkeypatch.setenv("ALERTS_SMTP_POOL_SIZE", "1")
    monkeypatch.setenv("ALERTS_SECRET_KEY", "cli-test")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    assert main(["digests", "send"]) == 0


@pytest.mark.slow
def test_digests_send_stopped_by_ctrl_c_is_resumed_by_running_it_again(
    postgres_database: Database,
    smtp: SmtpTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emails = seed_due_digests(postgres_database, READERS)
    smtp.data_delay = 0.1
    run = digests_send(postgres_database, smtp, tmp_path, "--now")
    wait_until(lambda: len(smtp.messages) >= 5, 60, "the run to be under way")
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=30)
    assert run.returncode == 130, err
    assert b"run `alerts digests send` again" in err
    assert b"Traceback" not in err
    left = states(postgres_database)
    assert DeliveryState.SENDING not in left  # it stopped after the message in flight
    assert left.get(DeliveryState.QUEUED, 0) > 0

    resume(monkeypatch, postgres_database, smtp)
    assert "left over from an earlier run" in capsys.readouterr().out
    received = message_ids_by_recipient(smtp)
    assert set(received) == set(emails)
    assert all(len(ids) == 1 for ids in received.values())  # stopped cleanly: no copy
    assert states(postgres_database) == {DeliveryState.SENT: READERS}


@pytest.mark.slow
def test_digests_send_killed_is_resumed_once_its_row_in_flight_is_surely_orphaned(
    postgres_database: Database,
    smtp: SmtpTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emails = seed_due_digests(postgres_database, READERS)
    smtp.data_delay = 0.1
    run = digests_send(postgres_database, smtp, tmp_path, "--now")
    wait_until(lambda: len(smtp.messages) >= 5, 60, "the run to be under way")
    run.kill()
    run.communicate(timeout=30)
    assert states(postgres_database).get(DeliveryState.SENDING, 0) <= 1

    stuck_after = 1
    time.sleep(stuck_after + 0.5)
    resume(
        monkeypatch,
        postgres_database,
        smtp,
        ALERTS_DELIVERY_STUCK_AFTER_SECONDS=str(stuck_after),
    )
    received = message_ids_by_recipient(smtp)
    assert set(received) == set(emails)
    assert sum(len(ids) - 1 for ids in received.values()) <= 1  # the one in flight
    assert all(len(set(ids)) == 1 for ids in received.values())
    assert states(postgres_database) == {DeliveryState.SENT: READERS}
