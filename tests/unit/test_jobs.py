"""Jobs queued after commit: a sender that fails never undoes or breaks the commit."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery
from kombu.exceptions import OperationalError
from sqlalchemy import func, select

from alerts import jobs
from alerts.db import get_database
from alerts.jobs import enqueue_after_commit
from alerts.models import Source


def test_a_refused_job_is_logged_and_the_next_one_still_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    def sender(job: str, arguments: dict[str, Any]) -> None:
        if job == "first":
            raise OperationalError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")
        sent.append((job, arguments))

    jobs.set_job_sender(sender)
    database = get_database()
    with database.session_scope() as session:
        session.add(Source(url="https://news.test/feed", name="News"))
        first = enqueue_after_commit(session, "first", source_id=1)
        second = enqueue_after_commit(session, "second", source_id=1)
        assert (first.sent, first.error, second.sent) == (False, None, False)  # not yet
    # The commit stood, the refusal is on the handle and in the log, nothing raised.
    with database.session_scope() as session:
        assert session.scalar(select(func.count(Source.id))) == 1
    assert first.error is not None
    assert "Connection refused" in first.error
    assert first.sent is False
    assert second.sent is True
    assert sent == [("second", {"source_id": 1})]
    assert "could not queue first after commit" in caplog.text


def test_a_rolled_back_job_is_never_sent() -> None:
    sent: list[str] = []
    jobs.set_job_sender(lambda job, arguments: sent.append(job))
    database = get_database()
    handles = []

    def failing_unit_of_work() -> None:
        with database.session_scope() as session:
            handles.append(enqueue_after_commit(session, "never"))
            raise RuntimeError("the unit of work failed")

    with pytest.raises(RuntimeError):
        failing_unit_of_work()
    assert sent == []
    assert [(queued.sent, queued.error) for queued in handles] == [(False, None)]


def test_queueing_without_a_sender_is_refused_inside_the_transaction() -> None:
    jobs.set_job_sender(None)
    database = get_database()

    def add_and_queue() -> None:
        with database.session_scope() as session:
            session.add(Source(url="https://news.test/feed", name="News"))
            session.flush()
            jobs.enqueue_after_commit(session, jobs.Job.POLL_SOURCE, source_id=1)

    with pytest.raises(jobs.NoJobSenderError, match="no job sender is installed"):
        add_and_queue()
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Source)) == 0
    with pytest.raises(jobs.NoJobSenderError):
        jobs.enqueue_now(jobs.Job.POLL_SOURCE, source_id=1)


class RecordingCelery(Celery):
    """A Celery app that notes the task names it is asked to send."""

    def __init__(self) -> None:
        super().__init__("recording")
        self.sent: list[str] = []

    def send_task(self, name: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.sent.append(name)


def test_each_entry_point_installs_the_celery_sender() -> None:
    from alerts.cli import main, send_through_workers
    from alerts.web.app import create_app
    from workers import tasks
    from workers.dispatch import send_job

    jobs.set_job_sender(None)
    create_app()
    assert jobs._current_sender() is send_job

    jobs.set_job_sender(None)
    assert main(["regions", "resolve", "Georgia"]) == 0
    assert jobs._current_sender() is send_through_workers

    jobs.set_job_sender(None)
    worker_app = RecordingCelery()
    tasks.queue_follow_up_jobs(sender=SimpleNamespace(app=worker_app))
    jobs._current_sender()(jobs.Job.MATCH_ARTICLES, {"article_ids": [1]})
    assert worker_app.sent == ["alerts.match_articles"]


def test_an_embedding_process_keeps_its_own_sender() -> None:
    from alerts.web.app import create_app

    def mine(job: str, arguments: dict[str, Any]) -> None:
        """A benchmark's or test's own sender."""

    jobs.set_job_sender(mine)
    create_app()
    assert jobs._current_sender() is mine
