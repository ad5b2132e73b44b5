"""A full disk, an unwritable metrics folder, a truncated metrics file: every
``alerts`` command still speaks, in one line, and the database stays whole.

The disk is a real one: a small tmpfs mounted for the test and filled with a
ballast file, so SQLite and the metrics files meet a genuine ENOSPC (the
kernel's, not a mock's). Mounting needs root; without it the tests skip, or
fail under ALERTS_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, service_missing

pytestmark = pytest.mark.integration

SAMPLE = REPO_ROOT / "sample"
COMMAND_SECONDS = 120
# 600 articles make a database of about 3 MB: more than the 1 MB left free.
BATCH_ARTICLES = 600
DISK_SIZE = "16m"
LEFT_FREE_BYTES = 1024 * 1024
METRICS_DISK_SIZE = "256k"

Mount = Callable[[Path, str], Path]


@pytest.fixture
def small_disk() -> Iterator[Mount]:
    """Mount a tmpfs of a given size on a folder; unmounted after the test."""
    mounted: list[Path] = []

    def mount(folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if shutil.which("mount") is None:
            service_missing("mount(8), to make a small disk")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            service_missing(f"a tmpfs to fill (mount needs root): {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path, leave: int = 0, name: str = "ballast") -> Path:
    """Take all but ``leave`` bytes of the disk under ``folder`` with one ballast file."""
    ballast = folder / name
    free = shutil.disk_usage(folder).free
    descriptor = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(descriptor, 0, max(1, free - leave))
    finally:
        os.close(descriptor)
    return ballast


def alerts(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in its own process, so a SIGBUS shows as returncode -7."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(ALERTS_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "alerts", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=COMMAND_SECONDS,
    )


def python(data_dir: Path, script: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(ALERTS_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=COMMAND_SECONDS,
    )


def write_batch(path: Path, count: int) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for number in range(count):
            article = {
                "id": f"batch-{number}",
                "title": f"Council meeting {number}: the tram line to the airport",
                "body": "The city council met about the tram line to the airport. " * 40,
                "url": f"https://example.org/news/batch-{number}",
                "published": "2026-11-24T08:15:00Z",
                "language": "en",
            }
            handle.write(json.dumps(article) + "\n")
    return path


def articles_and_integrity(database: Path) -> tuple[int, str]:
    connection = sqlite3.connect(database)
    try:
        count = connection.execute("SELECT count(*) FROM articles").fetchone()[0]
        integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        connection.close()
    return int(count), str(integrity)


def assert_spoke(result: subprocess.CompletedProcess[str]) -> None:
    """The command ran to its end: no signal, no traceback."""
    assert result.returncode != -signal.SIGBUS, "killed by SIGBUS"
    assert result.returncode >= 0, f"killed by signal {-result.returncode}"
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.slow
def test_ingest_on_a_full_disk_says_so_in_one_line_and_the_database_stays_whole(
    small_disk: Mount, tmp_path: Path
) -> None:
    data_dir = small_disk(tmp_path / "disk", DISK_SIZE) / "var"
    batch = write_batch(tmp_path / "batch.jsonl", BATCH_ARTICLES)
    assert alerts(data_dir, "db", "upgrade").returncode == 0
    ballast = fill(data_dir.parent, leave=LEFT_FREE_BYTES)

    failed = alerts(data_dir, "ingest", str(batch))

    assert_spoke(failed)
    assert failed.returncode == 1
    expected = (
        f"alerts: no space left in {data_dir.resolve()} (database alerts.db): "
        "free some space and run again"
    )
    error_lines = [line for line in failed.stderr.splitlines() if line.startswith("alerts: no")]
    assert error_lines == [expected], failed.stderr
    # The failed unit of work rolled back whole: no half batch (SQLite's savepoints
    # now nest in a real BEGIN, see alerts/db.py).
    assert articles_and_integrity(data_dir / "alerts.db") == (0, "ok")

    # The rollback gave its pages back: take the last of the disk for doctor.
    rest = fill(data_dir.parent, name="rest")
    full_doctor = alerts(data_dir, "doctor")
    assert_spoke(full_doctor)
    assert "warn  disk space: only 0.00 GB free" in full_doctor.stdout, full_doctor.stdout
    assert f"in {data_dir.resolve()} (data dir, outbox, database)" in full_doctor.stdout

    ballast.unlink()
    rest.unlink()
    doctor = alerts(data_dir, "doctor")
    assert_spoke(doctor)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "ok    disk space: 0.0" in doctor.stdout  # about 12 MB free of 16 MB
    assert "all good" in doctor.stdout

    again = alerts(data_dir, "ingest", "--json", str(batch))
    assert_spoke(again)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["new"] == BATCH_ARTICLES
    assert articles_and_integrity(data_dir / "alerts.db") == (BATCH_ARTICLES, "ok")


@pytest.fixture
def full_metrics_folder(small_disk: Mount, tmp_path: Path) -> Path:
    """A data dir whose metrics folder is a disk with no byte left."""
    data_dir = tmp_path / "var"
    assert alerts(data_dir, "db", "upgrade").returncode == 0
    fill(small_disk(data_dir / "metrics", METRICS_DISK_SIZE))
    return data_dir


def test_every_command_speaks_when_the_metrics_disk_is_full(full_metrics_folder: Path) -> None:
    data_dir = full_metrics_folder
    helped = alerts(data_dir, "--help")
    assert_spoke(helped)
    assert helped.returncode == 0
    assert "usage: alerts" in helped.stdout

    doctor = alerts(data_dir, "doctor")
    assert_spoke(doctor)
    assert "all good" in doctor.stdout, doctor.stdout + doctor.stderr

    # Ingest counts its entries, so it opens a metrics file: that fails, once, quietly.
    ingested = alerts(data_dir, "ingest", str(SAMPLE / "articles.jsonl"))
    assert_spoke(ingested)
    assert ingested.returncode == 0, ingested.stderr
    assert "4 new" in ingested.stdout
    warnings = ingested.stderr.splitlines()
    assert len(warnings) == 1, ingested.stderr
    assert warnings[0].startswith("alerts: metrics of this process are kept in memory only")
    assert str((data_dir / "metrics").resolve()) in warnings[0]


def test_a_hole_left_in_a_metrics_file_on_a_full_disk_is_no_bus_error(
    full_metrics_folder: Path,
) -> None:
    # What prometheus-client left behind: a file extended with truncate, all hole.
    # Writing its first page through a map on a full disk was SIGBUS.
    script = (
        "import os\n"
        "from pathlib import Path\n"
        "from alerts import metrics\n"
        "from alerts.config import get_settings\n"
        "folder = metrics.metrics_dir()\n"
        "os.truncate(os.open(folder / f'gauge_max_{os.getpid()}.db', os.O_CREAT | os.O_RDWR),"
        " 65536)\n"
        "metrics.keep_in_files(get_settings())\n"
        "metrics.LEADER.set(1)\n"
        "print(metrics.LEADER._value.get())\n"
    )
    result = python(full_metrics_folder, script)
    assert_spoke(result)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.0"
    assert "kept in memory only" in result.stderr


def test_commands_speak_when_the_metrics_folder_cannot_be_made(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    assert alerts(data_dir, "db", "upgrade").returncode == 0
    (data_dir / "metrics").write_text("a file where the folder should be")
    doctor = alerts(data_dir, "doctor")
    assert_spoke(doctor)
    assert "all good" in doctor.stdout
    ingested = alerts(data_dir, "ingest", str(SAMPLE / "articles.jsonl"))
    assert_spoke(ingested)
    assert ingested.returncode == 0
    assert "4 new" in ingested.stdout
    assert "kept in memory only" in ingested.stderr


def test_truncated_metrics_files_are_replaced_or_skipped(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    folder = data_dir / "metrics"
    folder.mkdir(parents=True)
    # Another (dead) process's file, cut short: the reader skips it.
    (folder / "counter_1.db").write_bytes(b"\x40\x00\x00\x00\x00")
    script = (
        "import os\n"
        "from alerts import metrics\n"
        "from alerts.config import get_settings\n"
        "folder = metrics.metrics_dir()\n"
        # Our own id's file, its header saying more than it holds: replaced.
        "header = (4096).to_bytes(4, 'little') + bytes(12)\n"
        "(folder / f'counter_{os.getpid()}.db').write_bytes(header)\n"
        "metrics.keep_in_files(get_settings())\n"
        "metrics.INGEST_ENTRIES.labels('desk', 'new').inc(3)\n"
        "print(metrics.render_all().decode())\n"
    )
    result = python(data_dir, script)
    assert_spoke(result)
    assert result.returncode == 0, result.stderr
    assert 'alerts_ingest_entries_total{outcome="new",source="desk"} 3.0' in result.stdout
    assert "replacing the unreadable metrics file" in result.stderr
    assert "kept in memory only" not in result.stderr


def test_importing_metrics_leaves_the_environment_and_the_disk_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    script = (
        "import os, json\n"
        "before = dict(os.environ)\n"
        "import alerts.metrics\n"
        "import alerts.cli\n"
        "imported = dict(os.environ) == before\n"
        "alerts.metrics.LEADER.set(1)\n"
        "alerts.metrics.keep_in_files(alerts.metrics.get_settings())\n"
        "alerts.metrics.LEADER.set(1)\n"
        "print(json.dumps([imported, 'PROMETHEUS_MULTIPROC_DIR' in os.environ]))\n"
    )
    result = python(data_dir, script)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [True, False]
    # Nothing on disk until an entry point asked for files; then only the metrics.
    assert [path.name for path in data_dir.iterdir()] == ["metrics"]


def test_a_forked_child_counts_into_a_file_of_its_own(tmp_path: Path) -> None:
    # What a prefork worker does: the parent counted, then forked; the child must
    # not write into the parent's map nor count the parent's figures again.
    script = (
        "import os\n"
        "from alerts import metrics\n"
        "from alerts.config import get_settings\n"
        "metrics.keep_in_files(get_settings())\n"
        "metrics.INGEST_ENTRIES.labels('desk', 'new').inc(2)\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    metrics.INGEST_ENTRIES.labels('desk', 'new').inc(1)\n"
        "    os._exit(0)\n"
        "os.waitpid(child, 0)\n"
        "print(sorted(path.name.split('_')[0] for path in metrics.metrics_dir().iterdir()))\n"
        "print(metrics.render_all().decode())\n"
    )
    result = python(tmp_path / "var", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "['counter', 'counter']"
    assert 'alerts_ingest_entries_total{outcome="new",source="desk"} 3.0' in result.stdout
