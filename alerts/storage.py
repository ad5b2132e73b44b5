"""Storage faults in words an operator can act on, and the free space of our folders.

A full disk reaches us in several shapes: ``sqlite3.OperationalError:
database or disk is full`` (often wrapped by SQLAlchemy, and often on
``RELEASE SAVEPOINT`` or ``COMMIT``), an ``OSError`` with ``ENOSPC`` from the
outbox, the broker folder or the metrics files, or PostgreSQL's ``53100``. Each
becomes one sentence that names the folder and what in it could not be
written, so the CLI can print it instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from alerts.config import Settings
from alerts.metrics import metrics_dir

# sqlite3 result codes (the low byte of an extended code), from sqlite3.h.
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_RESULT_MASK = 0xFF
# PostgreSQL's SQLSTATE for "disk full" (class 53, insufficient resources).
PG_DISK_FULL = "53100"
# Files SQLite keeps beside the database.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def sqlite_path(settings: Settings) -> Path | None:
    """The embedded database file, or None when the database is a server."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).resolve()


@dataclass(frozen=True)
class Place:
    """A folder of ours and what we keep there, as said to an operator."""

    folder: Path
    what: str


def _database_place(settings: Settings) -> Place | None:
    database = sqlite_path(settings)
    return None if database is None else Place(database.parent, f"database {database.name}")


def _place_of(path: Path, settings: Settings) -> Place:
    """Which of our folders ``path`` is in, the most specific one."""
    path = path.resolve()
    database = sqlite_path(settings)
    database_files = (
        {database.name + suffix for suffix in ("", *SQLITE_SIDE_FILES)} if database else set()
    )
    if database is not None and path.parent == database.parent and path.name in database_files:
        return Place(database.parent, f"database {database.name}")
    folders = (  # the data dir holds the others, so it comes last
        Place(settings.resolved_outbox_dir, "outbox"),
        Place(settings.broker_dir, "broker queue"),
        Place(metrics_dir(settings), "metrics"),
        Place(settings.data_dir.resolve(), "data dir"),
    )
    for place in folders:
        if path.is_relative_to(place.folder):
            return place
    return Place(path.parent, f"writing {path.name}")


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error, what it wraps (SQLAlchemy's ``orig``), and what caused it."""
    seen: set[int] = set()
    queue = [error]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(nested, BaseException):
                queue.append(nested)


def _full(place: Place) -> str:
    return f"no space left in {place.folder} ({place.what}): free some space and run again"


def _sqlite_fault(error: sqlite3.Error, settings: Settings) -> str | None:
    place = _database_place(settings)
    if place is None:
        return None
    database = place.folder / place.what.removeprefix("database ")
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & SQLITE_RESULT_MASK if isinstance(code, int) else None
    if primary == SQLITE_FULL or "database or disk is full" in str(error):
        return _full(place)
    if primary == SQLITE_IOERR:
        return f"input/output error in {place.folder} ({place.what}): check the disk and its space"
    if primary == SQLITE_READONLY:
        return f"cannot write {database} (read-only): check its permissions and the file system"
    if primary == SQLITE_CANTOPEN:
        return f"cannot open {database}: check that {place.folder} exists and can be written"
    return None


def _os_fault(error: OSError, settings: Settings) -> str | None:
    if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
        return None
    name = error.filename if isinstance(error.filename, str | bytes | os.PathLike) else None
    place = (
        _place_of(Path(os.fsdecode(name)), settings)
        if name
        else Place(settings.data_dir.resolve(), "data dir")
    )
    if error.errno == errno.ENOSPC:
        return _full(place)
    if error.errno == errno.EDQUOT:
        return f"disk quota exceeded in {place.folder} ({place.what}): free some space"
    if error.errno == errno.EROFS:
        return f"{place.folder} is on a read-only file system ({place.what})"
    return f"input/output error in {place.folder} ({place.what}): check the disk"


def storage_fault(error: BaseException, settings: Settings) -> str | None:
    """One sentence for a storage fault anywhere in ``error``'s chain; None if none is."""
    for cause in _causes(error):
        message: str | None = None
        if isinstance(cause, sqlite3.Error):
            message = _sqlite_fault(cause, settings)
        elif isinstance(cause, OSError):
            message = _os_fault(cause, settings)
        elif getattr(cause, "sqlstate", None) == PG_DISK_FULL:
            first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else "disk full"
            message = (
                f"the PostgreSQL server has no space left ({first_line}): "
                "free space on the database server and run again"
            )
        if message is not None:
            return message
    return None


@dataclass(frozen=True)
class FreeSpace:
    """The free space of one file system, and which of our folders are on it."""

    path: Path
    free_bytes: int
    total_bytes: int
    holds: tuple[str, ...]


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent: a folder made on first use may be missing."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_space(settings: Settings) -> list[FreeSpace]:
    """Free space where the data dir, the outbox (when mail goes there) and the
    embedded database live, one entry per file system."""
    folders: list[tuple[Path, str]] = [(settings.data_dir.resolve(), "data dir")]
    if not settings.smtp_url:
        folders.append((settings.resolved_outbox_dir, "outbox"))
    database = sqlite_path(settings)
    if database is not None:
        folders.append((database.parent, "database"))
    by_device: dict[int, tuple[Path, list[str]]] = {}
    for folder, what in folders:
        existing = _existing(folder)
        device = existing.stat().st_dev
        by_device.setdefault(device, (folder, []))[1].append(what)
    found = []
    for folder, holds in by_device.values():
        usage = shutil.disk_usage(_existing(folder))
        found.append(FreeSpace(folder, usage.free, usage.total, tuple(holds)))
    return found
