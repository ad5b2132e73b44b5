"""Running a unit of work again when it lost a race with another transaction.

PostgreSQL may abort one of two transactions that wait on each other
(deadlock_detected) or that cannot both be serialised (serialization_failure);
SQLite answers "database is locked" when its busy timeout runs out or a
reader's snapshot went stale. None of these says the work was wrong: done
again from the start, in a fresh transaction, it succeeds.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from alerts.db import Database

T = TypeVar("T")

log = logging.getLogger("alerts.transactions")

# Five tries: sorted writes make a conflict rare, so a sixth would mean
# something other than bad luck is going on.
RETRY_ATTEMPTS = 5
# First pause between tries, doubled each time and jittered, so the
# transactions that collided do not collide again in step.
RETRY_FIRST_PAUSE_SECONDS = 0.05
# SQLSTATEs of a transaction aborted only because of another one.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
SQLITE_LOCKED = ("database is locked", "database table is locked")


def is_retryable(error: BaseException) -> bool:
    """True when ``error`` only means another transaction got in the way."""
    if not isinstance(error, DBAPIError):
        return False
    driver_error = error.orig
    if getattr(driver_error, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return True
    return isinstance(driver_error, sqlite3.OperationalError) and any(
        phrase in str(driver_error) for phrase in SQLITE_LOCKED
    )


def run_in_transaction(
    database: Database,
    work: Callable[[Session], T],
    *,
    attempts: int = RETRY_ATTEMPTS,
    first_pause: float = RETRY_FIRST_PAUSE_SECONDS,
) -> T:
    """Run ``work`` in one transaction and commit; start over when it lost a
    race (see ``is_retryable``), up to ``attempts`` times.

    ``work`` must do everything again from its arguments: each try gets a new
    session, and a rolled-back try leaves nothing behind (its after-commit
    jobs are dropped with it).
    """
    for attempt in range(1, attempts + 1):
        try:
            with database.session_scope() as session:
                return work(session)
        except DBAPIError as error:
            if attempt == attempts or not is_retryable(error):
                raise
            pause = first_pause * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            log.info(
                "transaction lost a race (%s), try %d of %d in %.2f s",
                type(error.orig).__name__,
                attempt + 1,
                attempts,
                pause,
            )
            time.sleep(pause)
    raise AssertionError("unreachable: the last attempt returns or raises")
