"""Subscriber CSV files on SQLite and PostgreSQL: the export cannot carry a
spreadsheet formula, and the import commits batch by batch, keeping what
each committed batch stored when a later one fails."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
from collections.abc import Iterator
from datetime import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from alerts.admin import EXPORT_COLUMNS, export_csv
from alerts.cli import main
from alerts.config import Settings, get_settings
from alerts.db import Database, get_database, utcnow
from alerts.models import Frequency, Interest, Role, Subscriber, SubscriberStatus
from alerts.subscribers import (
    FORMULA_PREFIXES,
    ImportReport,
    ImportStoppedError,
    import_csv,
    import_csv_in_batches,
)
from tests.integration.test_web_admin import ADMIN, add_user, form_token, signed_in

# Each cell would run in a spreadsheet as it is.
FORMULAS = {
    "email": "=1+2@example.org",
    "query": "-rain flood",
    "regions": '=HYPERLINK("http://evil.example")',
    "timezone": "+03:00",
    "name": "@SUM(A1:A9)",
    "language": "-x",
    "consent_source": "\tcmd|' /C calc'!A0",
}


def readers_csv(count: int, bad_lines: tuple[int, ...] = ()) -> str:
    """A header and ``count`` rows; a row on one of ``bad_lines`` has a bad address."""
    lines = ["email,query,frequency"]
    for n in range(count):
        line = n + 2
        email = f"broken-{n}" if line in bad_lines else f"reader{n}@example.org"
        lines.append(f"{email},flood,daily")
    return "\n".join(lines) + "\n"


def emails(database: Database) -> list[str]:
    with database.session_scope() as session:
        return list(session.scalars(select(Subscriber.email).order_by(Subscriber.id)))


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ALERTS_IMPORT_BATCH_ROWS", "3")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def commits(database: Database) -> Iterator[list[int]]:
    """One entry per transaction committed on the app's engine."""
    counted: list[int] = []

    def count(_connection: object) -> None:
        counted.append(1)

    event.listen(database.engine, "commit", count)
    yield counted
    event.remove(database.engine, "commit", count)


def second_writer(database: Database) -> Engine:
    """Another connection to the same database that will not wait for a lock."""
    if database.engine.dialect.name == "sqlite":
        return create_engine(database.engine.url, connect_args={"timeout": 0})
    return create_engine(database.engine.url, connect_args={"options": "-c lock_timeout=0"})


def write_elsewhere(engine: Engine) -> int:
    """Write a row as the clock would, and count the subscribers it can see."""
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO rate_events (key, at) VALUES ('elsewhere', :at)"), {"at": utcnow()}
        )
        return int(connection.execute(text("SELECT count(*) FROM subscribers")).scalar_one())


# --- export -----------------------------------------------------------------------


def test_export_neutralises_formula_cells_in_every_free_text_column(database: Database) -> None:
    now = utcnow()
    with database.session_scope() as session:
        # Stored straight, as a stranger's sign-up or an old import could have.
        subscriber = Subscriber(
            email=FORMULAS["email"],
            name=FORMULAS["name"],
            frequency=Frequency.DAILY,
            timezone=FORMULAS["timezone"],
            send_at=time(7, 0),
            language=FORMULAS["language"],
            consent_source=FORMULAS["consent_source"],
            created_at=now,
            status=SubscriberStatus.CONFIRMED,
            confirmed_at=now,
            last_digest_at=now,
        )
        subscriber.interests.append(
            Interest(
                query=FORMULAS["query"],
                regions=[FORMULAS["regions"]],
                created_at=now,
                updated_at=now,
            )
        )
        subscriber.interests.append(
            Interest(query="\rrain", regions=[], created_at=now, updated_at=now)
        )
        session.add(subscriber)
    with database.session_scope() as session:
        exported = export_csv(session, "test")
    [row] = list(csv.DictReader(io.StringIO(exported)))
    assert list(row) == list(EXPORT_COLUMNS)
    for column, cell in row.items():
        assert not cell.startswith(FORMULA_PREFIXES), (column, cell)
    for column, typed in FORMULAS.items():
        assert row[column] == "'" + typed, column
    assert row["other_interests"].startswith('[{"query": "\\rrain"')


def test_an_export_imports_as_it_was(database: Database) -> None:
    settings = get_settings()
    upload = "email,query,regions\n=1+2@example.org,-rain flood,Abkhazia\n+x@example.org,@home,\n"
    with database.session_scope() as session:
        assert import_csv(session, upload, settings, utcnow()).added == 2
    with database.session_scope() as session:
        exported = export_csv(session, "test")
        session.execute(text("DELETE FROM subscribers"))
    assert "'=1+2@example.org,'-rain flood," in exported
    with database.session_scope() as session:
        report = import_csv(session, exported, settings, utcnow())
    assert (report.added, report.errors) == (2, [])
    with database.session_scope() as session:
        rows = session.execute(
            select(Subscriber.email, Interest.query, Interest.regions)
            .join(Interest, Interest.subscriber_id == Subscriber.id)
            .order_by(Subscriber.email)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("+x@example.org", "@home", []),
        ("=1+2@example.org", "-rain flood", ["ge-ab"]),
    ]


# --- batched import ---------------------------------------------------------------


def test_the_import_commits_once_per_batch_and_reports_lines_across_batches(
    database: Database, small_batches: Settings, commits: list[int]
) -> None:
    progress: list[tuple[int, int, int]] = []

    def committed(report: ImportReport) -> None:
        progress.append((report.batches, report.last_line, report.added))

    report = import_csv_in_batches(
        database, readers_csv(8, bad_lines=(3, 7)), small_batches, utcnow(), on_batch=committed
    )
    assert len(commits) == 4  # rows 2-4, 5-7, 8-9, then the audit entry of the outcome
    assert progress == [(1, 4, 2), (2, 7, 4), (3, 9, 6)]
    assert (report.added, report.batches) == (6, 3)
    assert [line for line, _ in report.errors] == [3, 7]
    assert len(emails(database)) == 6


def test_other_writers_get_in_between_batches(database: Database, small_batches: Settings) -> None:
    other = second_writer(database)
    seen_between: list[int] = []
    locked_during: list[bool] = []

    def row_done() -> None:
        if database.engine.dialect.name == "sqlite" and not locked_during:
            # Inside a batch SQLite's one write lock is taken: this is what
            # a single transaction did to the clock for a whole 10 MB file.
            try:
                write_elsewhere(other)
            except OperationalError as error:
                locked_during.append("locked" in str(error))

    def committed(report: ImportReport) -> None:
        seen_between.append(write_elsewhere(other))

    import_csv_in_batches(
        database, readers_csv(7), small_batches, utcnow(), on_row=row_done, on_batch=committed
    )
    other.dispose()
    # each write went through at once, and saw every batch committed so far
    assert seen_between == [3, 6, 7]
    if database.engine.dialect.name == "sqlite":
        assert locked_during == [True]
    with database.session_scope() as session:
        assert session.scalar(text("SELECT count(*) FROM rate_events")) == 3


def test_a_failure_in_the_second_batch_keeps_the_first(
    database: Database, small_batches: Settings
) -> None:
    rows_done = []

    def fail_in_second_batch() -> None:
        rows_done.append(1)
        if len(rows_done) == 5:
            raise RuntimeError("disk I/O error")

    with pytest.raises(ImportStoppedError) as stopped:
        import_csv_in_batches(
            database,
            readers_csv(8, bad_lines=(3,)),
            small_batches,
            utcnow(),
            on_row=fail_in_second_batch,
        )
    assert stopped.value.line == 5
    assert "line 5" in str(stopped.value)
    assert "disk I/O error" in str(stopped.value)
    assert "2 subscribers" in str(stopped.value)
    assert (stopped.value.report.added, stopped.value.report.batches) == (2, 1)
    assert [line for line, _ in stopped.value.report.errors] == [3]
    assert emails(database) == ["reader0@example.org", "reader2@example.org"]


def test_the_command_line_shows_each_committed_batch(
    database: Database,
    small_batches: Settings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text(readers_csv(7, bad_lines=(6,)))
    assert main(["subscribers", "import", str(csv_file)]) == 1
    captured = capsys.readouterr()
    assert "6 added, 1 rejected" in captured.out
    assert "batch 1 committed through line 4: 3 added, 0 rejected so far" in captured.err
    assert "batch 2 committed through line 7: 5 added, 1 rejected so far" in captured.err
    assert "batch 3 committed through line 8: 6 added, 1 rejected so far" in captured.err
    assert f"{csv_file}:6:" in captured.err


def test_the_console_import_shows_its_batches(database: Database, small_batches: Settings) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    client = signed_in(ADMIN)
    response = client.post(
        "/admin/subscribers/import",
        data={"csrf_token": form_token(client, "/admin/subscribers/import")},
        files={"file": ("readers.csv", readers_csv(7).encode(), "text/csv")},
    )
    assert response.status_code == 200
    assert "7 added, 0 rejected" in response.text
    assert "Stored in 3 batches" in response.text
    assert "of up to 3 rows, through line 8" in response.text
    with database.session_scope() as session:
        assert session.scalar(select(func.count(Subscriber.id))) == 7


def test_the_console_says_what_was_kept_when_an_import_stops(
    database: Database, small_batches: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    client = signed_in(ADMIN)
    # The second batch meets a table the database refuses to write to.
    with database.session_scope() as session:
        if database.engine.dialect.name == "sqlite":
            session.execute(
                text(
                    "CREATE TRIGGER refuse_ninth BEFORE INSERT ON subscribers "
                    "WHEN NEW.email = 'reader4@example.org' "
                    "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
                )
            )
        else:
            session.execute(
                text(
                    "CREATE FUNCTION refuse_ninth() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.email = 'reader4@example.org' THEN RAISE EXCEPTION 'disk full' "
                    "USING ERRCODE = '53100'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            session.execute(
                text(
                    "CREATE TRIGGER refuse_ninth BEFORE INSERT ON subscribers "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_ninth()"
                )
            )
    try:
        response = client.post(
            "/admin/subscribers/import",
            data={"csrf_token": form_token(client, "/admin/subscribers/import")},
            files={"file": ("readers.csv", readers_csv(7).encode(), "text/csv")},
        )
    finally:
        with database.session_scope() as session:
            session.execute(
                text(
                    "DROP TRIGGER refuse_ninth"
                    + ("" if database.engine.dialect.name == "sqlite" else " ON subscribers")
                )
            )
            if database.engine.dialect.name != "sqlite":
                session.execute(text("DROP FUNCTION refuse_ninth()"))
    assert response.status_code == 503
    assert "stopped in the rows from line 5" in response.text
    assert "3 subscribers from the lines before it are stored" in response.text
    assert "Stored in 1 batch of up to 3 rows, through line 4" in response.text
    assert emails(database) == [f"reader{n}@example.org" for n in range(3)]


def test_a_waiting_sqlite_writer_gets_in_between_batches(small_batches: Settings) -> None:
    """SQLite passes its lock to no one: a writer that waits (as the clock does,
    with a busy timeout) must still find a gap before the import ends."""
    database = get_database()  # the embedded default: SQLite in the data dir
    path = str(database.engine.url.database)
    seen: list[int] = []

    def clock_tick() -> None:
        with sqlite3.connect(path, timeout=60) as tick:
            tick.execute("INSERT INTO rate_events (key, at) VALUES ('tick', '2026-01-01')")
            seen.append(tick.execute("SELECT count(*) FROM subscribers").fetchone()[0])

    waiting = threading.Thread(target=clock_tick)

    def row_done() -> None:
        if not waiting.is_alive() and not seen:
            waiting.start()  # inside the first batch: the lock is taken

    report = import_csv_in_batches(
        database, readers_csv(30), small_batches, utcnow(), on_row=row_done
    )
    waiting.join()
    assert report.added == 30
    assert len(seen) == 1
    assert seen[0] < 30  # it wrote while the import was still going
