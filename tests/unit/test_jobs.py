"""Jobs queued after commit: a sender that fails never undoes or breaks the commit."""

from __future__ import annotations

from typing import Any

import pytest
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
