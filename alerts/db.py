"""Engine, sessions, schema upgrades and the after-commit hook.

Transactions live at the edges: a CLI command, a web request or a task run
opens ``session_scope()``; domain functions take the session and never commit.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from alerts.config import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any fixed number shared by every process that may migrate one PostgreSQL database.
PG_MIGRATION_LOCK_ID = 724_311

AfterCommit = Callable[[], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    """An engine with the per-backend settings the system relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 module's own transaction handling issues BEGIN only before
    # INSERT/UPDATE/DELETE, so a SAVEPOINT could open the transaction and its
    # RELEASE commit it: rows from a savepoint then outlived the rollback of the
    # unit of work. Turning it off (SQLAlchemy's pysqlite recipe, which works on
    # Python 3.11; ``autocommit=False`` would need 3.12) lets SQLAlchemy emit
    # BEGIN and SAVEPOINT itself, so transactions mean what they mean on PostgreSQL.
    dbapi_connection.isolation_level = None
    # WAL lets the web app read while a worker writes; the busy timeout makes
    # concurrent writers (web, worker, clock, CLI) wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock at the start, waiting (busy timeout) while
    # another process writes. A deferred BEGIN would read first and then fail at
    # once with "database is locked" when it tries to write after another
    # process did: SQLite cannot let a stale snapshot write, and does not wait.
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine plus its session factory; one per process and database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self.sessions, "after_commit", _run_after_commit)
        event.listen(self.sessions, "after_soft_rollback", _drop_rolled_back)

    @contextlib.contextmanager
    def session_scope(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


_databases: dict[str, Database] = {}


def get_database(settings: Settings | None = None) -> Database:
    """The process-wide Database for the configured URL, migrated on first use."""
    settings = settings or get_settings()
    url = settings.resolved_database_url
    database = _databases.get(url)
    if database is None:
        if url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(url)
        upgrade_schema(database.engine, settings)
        _databases[url] = database
    return database


def forget_connections_after_fork() -> None:
    """In a forked child: drop the parent's pooled connections without closing them
    (they still belong to the parent), so the child opens its own."""
    for database in _databases.values():
        database.engine.dispose(close=False)


def after_commit(session: Session, callback: AfterCommit) -> None:
    """Run ``callback`` once the session's transaction commits (never on rollback).

    This is how work is queued: a task must not start before the rows it reads
    are visible to other connections. A callback added inside a savepoint is
    dropped when that savepoint (or anything around it) rolls back; the
    rollback of a savepoint leaves the callbacks of the transaction around it.
    """
    opened_in = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault("after_commit", []).append((opened_in, callback))


def _run_after_commit(session: Session) -> None:
    # SQLAlchemy also fires after_commit when a savepoint that began the session's
    # transaction is released; the unit of work is still open then.
    if session.in_nested_transaction():
        return
    for _opened_in, callback in session.info.pop("after_commit", []):
        callback()


def _drop_rolled_back(session: Session, rolled_back: SessionTransaction) -> None:
    """Forget the callbacks whose transaction, or one around it, was rolled back."""
    pending = session.info.get("after_commit")
    if not pending:
        return
    if rolled_back.parent is None:  # the whole unit of work
        session.info.pop("after_commit")
        return
    kept = [
        (opened_in, callback)
        for opened_in, callback in pending
        if not _within(opened_in, rolled_back)
    ]
    session.info["after_commit"] = kept


def _within(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def schema_is_current(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


def upgrade_schema(engine: Engine, settings: Settings | None = None) -> None:
    """Bring the schema to the newest migration, once, whoever else is starting.

    Web, worker, clock and CLI may all start together; a file lock (SQLite) or an
    advisory lock (PostgreSQL) lets exactly one of them migrate.
    """
    if schema_is_current(engine):
        return
    config = _alembic_config(engine)
    if engine.dialect.name == "sqlite":
        settings = settings or get_settings()
        lock_path = _sqlite_lock_path(engine, settings)
        with lock_path.open("w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            command.upgrade(config, "head")
    elif engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": PG_MIGRATION_LOCK_ID})
            try:
                command.upgrade(config, "head")
            finally:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": PG_MIGRATION_LOCK_ID}
                )
                connection.commit()
    else:
        command.upgrade(config, "head")


def _sqlite_lock_path(engine: Engine, settings: Settings) -> Path:
    database = engine.url.database
    if database and database != ":memory:":
        return Path(database).with_suffix(".migrate-lock")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.data_dir / "migrate.lock"
