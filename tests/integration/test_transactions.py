"""A unit of work means the same on SQLite and PostgreSQL, and so does the
after-commit hook: a savepoint that rolls back takes only its own work with it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.db import Database, after_commit
from alerts.models import Subscriber


class FailedOnPurposeError(Exception):
    """Raised on purpose to roll a savepoint or a unit of work back."""


def _count(database: Database) -> int:
    with database.session_scope() as session:
        return session.scalar(select(func.count(Subscriber.id))) or 0


def test_rows_of_a_released_savepoint_go_when_the_unit_of_work_rolls_back(
    database: Database,
) -> None:
    def unit_of_work() -> None:
        with database.session_scope() as session:
            for number in range(3):
                with session.begin_nested():
                    session.add(Subscriber(email=f"reader{number}@example.org"))
            raise FailedOnPurposeError

    with pytest.raises(FailedOnPurposeError):
        unit_of_work()
    assert _count(database) == 0


def test_a_rolled_back_savepoint_keeps_the_rest_of_the_unit_of_work(database: Database) -> None:
    with database.session_scope() as session:
        session.add(Subscriber(email="kept@example.org"))
        with pytest.raises(FailedOnPurposeError):
            _fail_in_a_savepoint(session, lambda: session.add(Subscriber(email="gone@example.org")))
    with database.session_scope() as session:
        assert session.scalars(select(Subscriber.email)).all() == ["kept@example.org"]


def _fail_in_a_savepoint(session: Session, work: Callable[[], object]) -> None:
    with session.begin_nested():
        work()
        session.flush()
        raise FailedOnPurposeError


def _queue(session: Session, ran: list[str], name: str) -> None:
    after_commit(session, lambda: ran.append(name))


def test_a_savepoint_rollback_keeps_the_callbacks_queued_around_it(database: Database) -> None:
    ran: list[str] = []
    with database.session_scope() as session:
        session.add(Subscriber(email="one@example.org"))
        session.flush()
        _queue(session, ran, "before the savepoint")
        with session.begin_nested():
            session.add(Subscriber(email="two@example.org"))
            _queue(session, ran, "in a released savepoint")
        with pytest.raises(FailedOnPurposeError):
            _fail_in_a_savepoint(session, lambda: _queue(session, ran, "in a failed savepoint"))
        _queue(session, ran, "after the savepoint")
    assert ran == ["before the savepoint", "in a released savepoint", "after the savepoint"]


def test_nothing_queued_runs_when_the_unit_of_work_rolls_back(database: Database) -> None:
    ran: list[str] = []

    def unit_of_work() -> None:
        with database.session_scope() as session:
            _queue(session, ran, "before any statement")
            session.add(Subscriber(email="one@example.org"))
            with session.begin_nested():
                session.add(Subscriber(email="two@example.org"))
                _queue(session, ran, "in a released savepoint")
            raise FailedOnPurposeError

    with pytest.raises(FailedOnPurposeError):
        unit_of_work()
    with database.session_scope() as session:
        session.add(Subscriber(email="three@example.org"))
        _queue(session, ran, "next unit of work")
    assert ran == ["next unit of work"]


def test_releasing_a_savepoint_that_opened_the_transaction_runs_nothing(
    database: Database,
) -> None:
    ran: list[str] = []
    with database.session_scope() as session:
        _queue(session, ran, "queued first")
        with session.begin_nested():  # the unit of work's first statement
            session.add(Subscriber(email="one@example.org"))
        assert ran == []
    assert ran == ["queued first"]
