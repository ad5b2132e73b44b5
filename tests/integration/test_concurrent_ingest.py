"""Ingests racing each other on PostgreSQL: no deadlock loses a batch.

Three ingests of the same articles in different orders used to deadlock on the
unique dedup keys (each waiting for a row another had inserted first); now
every ingest writes in fingerprint order and a transaction that loses a race
anyway is run again.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from alerts.db import Database, get_database
from alerts.ingest.limits import IngestLimits
from alerts.ingest.service import ingest_document
from alerts.ingest.store import IngestReport
from alerts.models import Article, Source
from alerts.transactions import is_retryable, run_in_transaction
from tests.conftest import RecordedJobs

WRITERS = 3
ROUNDS = 6
ARTICLES = 30
JOIN_SECONDS = 120


def document(round_number: int, order: list[int]) -> bytes:
    return "".join(
        json.dumps(
            {
                "id": f"r{round_number}-{n}",
                "title": f"Round {round_number} story {n} about the harbour",
                "body": f"Story {n} of round {round_number}: cranes, ships and grain.",
                "url": f"https://harbour.test/{round_number}/{n}",
                "language": "en",
                "source": "Harbour Desk",
            }
        )
        + "\n"
        for n in order
    ).encode()


def run_together(work: list[Callable[[], Any]]) -> tuple[list[Any], list[Exception]]:
    """Start every callable at the same moment on its own thread (and so its own
    connection); return their results and whatever they raised."""
    barrier = threading.Barrier(len(work))
    results: list[Any] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def run(job: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            result = job()
        except Exception as error:  # noqa: BLE001 - collected, asserted on by the caller
            with lock:
                errors.append(error)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "an ingest hung"
    return results, errors


@pytest.mark.slow
def test_three_ingests_of_the_same_articles_in_different_orders_store_each_once(
    postgres_database: Database, recorded_jobs: RecordedJobs
) -> None:
    limits = IngestLimits()
    shuffler = random.Random(19)
    for round_number in range(ROUNDS):
        forward = list(range(ARTICLES))
        shuffled = forward[:]
        shuffler.shuffle(shuffled)
        orders = [forward, forward[::-1], shuffled]

        def ingest(data: bytes) -> Callable[[], IngestReport]:
            """One CLI-like ingest: its own transaction, retried when it lost a race."""
            return lambda: run_in_transaction(
                postgres_database,
                lambda session: ingest_document(
                    session, data, location="-", content_type=None, limits=limits
                ),
            )

        reports, errors = run_together([ingest(document(round_number, order)) for order in orders])
        assert errors == [], f"round {round_number}: {errors!r}"
        assert sum(report.new for report in reports) == ARTICLES
        assert all(report.new + report.duplicate == ARTICLES for report in reports)
        with postgres_database.session_scope() as session:
            stored = session.scalar(
                select(func.count(Article.id)).where(
                    Article.title.like(f"Round {round_number} story %")
                )
            )
        assert stored == ARTICLES, f"round {round_number}"
    queued = sorted(i for job in recorded_jobs.named("match_articles") for i in job["article_ids"])
    with postgres_database.session_scope() as session:
        stored_ids = sorted(session.scalars(select(Article.id)))
    assert len(stored_ids) == ROUNDS * ARTICLES
    assert queued == stored_ids  # each new article queued for matching once


def test_a_transaction_chosen_as_deadlock_victim_is_run_again(
    postgres_database: Database,
) -> None:
    """A real deadlock (two rows locked in opposite orders): PostgreSQL aborts
    one transaction and ``run_in_transaction`` runs it again to success."""
    with postgres_database.session_scope() as session:
        session.add_all([Source(url=f"https://{n}.test/", name=str(n)) for n in (1, 2)])
    attempts: list[str] = []
    both_hold_one = threading.Barrier(2)

    def lock_in_order(name: str, first: int, second: int) -> Callable[[], str]:
        def work(session: Session) -> str:
            attempts.append(name)
            session.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
            session.execute(update(Source).where(Source.id == first).values(name=name))
            if attempts.count(name) == 1:  # only the first try meets the other
                both_hold_one.wait()
            session.execute(update(Source).where(Source.id == second).values(name=name))
            return name

        return lambda: run_in_transaction(postgres_database, work)

    results, errors = run_together([lock_in_order("a", 1, 2), lock_in_order("b", 2, 1)])
    assert errors == []
    assert sorted(results) == ["a", "b"]
    assert len(attempts) == 3  # one of them tried twice


def test_sqlite_locked_is_retryable() -> None:
    """ "database is locked" from a writer that gave up waiting counts as a lost race."""
    database = get_database()  # the embedded default: SQLite
    impatient = create_engine(database.url, connect_args={"timeout": 0})
    with database.engine.connect() as holder:
        holder.execute(text("SELECT 1"))  # the engine begins IMMEDIATE: the write lock is held
        with pytest.raises(OperationalError) as raised, impatient.begin() as connection:
            connection.execute(text("UPDATE sources SET name = 'x'"))
        holder.rollback()
    impatient.dispose()
    assert "database is locked" in str(raised.value)
    assert is_retryable(raised.value)
