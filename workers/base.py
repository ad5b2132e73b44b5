"""The base task: it owns the transaction, so task bodies stay one call long."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from celery import Task
from sqlalchemy.orm import Session

from alerts.db import get_database


class DatabaseTask(Task):
    """Give the task body a session; commit when it returns, roll back when it raises."""

    abstract = True

    @contextmanager
    def session(self) -> Iterator[Session]:
        with get_database().session_scope() as session:
            yield session
