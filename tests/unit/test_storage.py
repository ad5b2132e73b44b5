"""Storage faults become one sentence naming the folder; doctor reports free space."""

from __future__ import annotations

import argparse
import errno
import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from alerts.cli.processes import run_doctor
from alerts.config import Settings
from alerts.health import Check, check_free_space
from alerts.storage import FreeSpace, free_space, storage_fault

GB = 1_000_000_000


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var")


def genuine_full_error(database: Path) -> OperationalError:
    """SQLite's own SQLITE_FULL, as SQLAlchemy raises it: the file may not grow."""
    database.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE ballast (data BLOB)"))
        with engine.begin() as connection:
            pages = connection.execute(text("PRAGMA page_count")).scalar_one()
            connection.execute(text(f"PRAGMA max_page_count = {pages + 1}"))
            connection.execute(text("INSERT INTO ballast VALUES (zeroblob(1000000))"))
    except OperationalError as error:
        return error
    finally:
        engine.dispose()
    raise AssertionError("the insert should not have fitted")


def test_a_full_embedded_database_names_its_folder(settings: Settings) -> None:
    database = settings.data_dir.resolve() / "alerts.db"
    error = genuine_full_error(database)
    assert storage_fault(error, settings) == (
        f"no space left in {database.parent} (database alerts.db): free some space and run again"
    )


def test_the_full_disk_is_found_behind_the_rollback_that_followed_it(settings: Settings) -> None:
    # SQLite may roll the whole transaction back on SQLITE_FULL; SQLAlchemy's
    # ROLLBACK TO SAVEPOINT then fails too, and that is the error raised.
    full = genuine_full_error(settings.data_dir.resolve() / "alerts.db")
    try:
        try:
            raise full
        except OperationalError:
            raise OperationalError(
                "ROLLBACK TO SAVEPOINT sa_savepoint_1",
                {},
                sqlite3.OperationalError("no such savepoint: sa_savepoint_1"),
            ) from None
    except OperationalError as late:
        late.__context__ = full  # what `raise` inside the handler records
        message = storage_fault(late, settings)
    assert message is not None
    assert message.startswith("no space left in ")
    assert "(database alerts.db)" in message


@pytest.mark.parametrize(
    ("relative", "folder", "what"),
    [
        ("outbox/20261203-1.eml", "outbox", "outbox"),
        ("broker/queue/1_abc.send.msg", "broker", "broker queue"),
        ("metrics/counter_1.db", "metrics", "metrics"),
        ("secret_key.123", ".", "data dir"),
        ("alerts.db-wal", ".", "database alerts.db"),
    ],
)
def test_no_space_while_writing_a_file_names_the_folder_and_what_it_holds(
    settings: Settings, relative: str, folder: str, what: str
) -> None:
    data_dir = settings.data_dir.resolve()
    error = OSError(errno.ENOSPC, "No space left on device", str(data_dir / relative))
    assert storage_fault(error, settings) == (
        f"no space left in {(data_dir / folder).resolve()} ({what}): free some space and run again"
    )


def test_a_wrapped_quota_error_and_one_without_a_file_name(settings: Settings) -> None:
    quota = OSError(errno.EDQUOT, "Disk quota exceeded")
    wrapped = RuntimeError("could not queue the job")
    wrapped.__cause__ = quota
    assert storage_fault(wrapped, settings) == (
        f"disk quota exceeded in {settings.data_dir.resolve()} (data dir): free some space"
    )


def test_a_full_postgresql_server_is_named_as_such(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://db/alerts")
    server = psycopg.errors.DiskFull('could not extend file "base/16384/2619": No space left')
    error = OperationalError("INSERT INTO articles ...", {}, server)
    message = storage_fault(error, settings)
    assert message is not None
    assert message.startswith("the PostgreSQL server has no space left (could not extend file")


@pytest.mark.parametrize(
    "error",
    [
        ValueError("not a storage fault"),
        OSError(errno.ENOENT, "No such file or directory", "/nowhere"),
        sqlite3.OperationalError("no such table: articles"),
    ],
)
def test_other_errors_are_not_storage_faults(settings: Settings, error: Exception) -> None:
    assert storage_fault(error, settings) is None


def test_free_space_is_reported_once_per_disk(settings: Settings) -> None:
    disks = free_space(settings)  # the data dir does not exist yet: its parent is asked
    assert len(disks) == 1
    assert disks[0].holds == ("data dir", "outbox", "database")
    assert disks[0].path == settings.data_dir.resolve()
    assert 0 <= disks[0].free_bytes <= disks[0].total_bytes


@pytest.mark.parametrize(
    ("free", "total", "warned"),
    [
        (50 * GB, 100 * GB, False),
        (int(0.5 * GB), 100 * GB, True),  # under 1 GB
        (3 * GB, 1000 * GB, False),  # under 5%, but over 1 GB
        (400_000, 10_000_000, True),  # a small disk under 5%
        (2_000_000, 10_000_000, False),  # a small disk with a fifth free
    ],
)
def test_doctor_warns_under_1_gb_or_5_percent_whichever_is_smaller(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, free: int, total: int, warned: bool
) -> None:
    disk = FreeSpace(settings.data_dir, free, total, ("data dir", "outbox", "database"))
    monkeypatch.setattr("alerts.health.free_space", lambda _settings: [disk])
    check = check_free_space(settings)
    assert check.ok
    assert check.warning is warned
    assert f"{free / GB:.2f} GB free" in check.detail
    assert f"in {settings.data_dir} (data dir, outbox, database)" in check.detail


def test_doctor_shows_a_warning_without_failing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checks = [
        Check("settings", True, "settings are consistent"),
        Check("disk space", True, "only 0.10 GB free (1%) in /var", warning=True),
    ]
    monkeypatch.setattr("alerts.cli.processes.all_checks", lambda _settings: checks)
    assert run_doctor(argparse.Namespace()) == 0
    out = capsys.readouterr().out
    assert "warn  disk space: only 0.10 GB free (1%) in /var" in out
    assert "all good, but 1 warning(s) above (disk space)" in out
