"""Prometheus metrics, counted in every process and read at ``/metrics``.

Each process of a host keeps its figures in files under ``<data dir>/metrics``,
in prometheus-client's multiprocess file format; the web app's ``/metrics``
adds them up, so the figures of the workers and the clock on the same machine
appear there too. A worker on another machine serves its own machine's
figures with ``alerts worker --metrics-port``.

Why not prometheus-client's own multiprocess mode: it is switched on by the
``PROMETHEUS_MULTIPROC_DIR`` environment variable, and it opens a file per
process when the first metric is *defined*, that is when this module is
imported. It makes that file by extending it with a hole and then writes
through a memory map; on a full disk the first write to such a page kills the
process with SIGBUS, so every ``alerts`` command, ``doctor`` and ``--help``
included, died without a word. Here instead:

- importing this module touches neither the environment nor the disk;
- a process keeps its figures in files only once its entry point (the
  ``alerts`` command, the worker, the clock) calls :func:`keep_in_files`,
  and the files are opened at the first figure counted, not before;
- every byte of a file is allocated (``posix_fallocate``) before it is mapped
  or grown, so a full disk is an ``OSError`` we catch, never a SIGBUS;
- when the folder cannot be written, or is full, or holds a file we cannot
  read, this process counts in memory only, after one warning line.

Reading (``/metrics``, the dashboard) skips files that do not parse, and reads
them with ``read()``, never a map, so a truncated file cannot crash the reader.
"""

from __future__ import annotations

import glob
import hmac
import logging
import mmap
import os
import shutil
import struct
import sys
import threading
from collections.abc import Iterable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.exposition import MetricsHandler
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.mmap_dict import _read_all_values as read_entries
from prometheus_client.parser import text_string_to_metric_families

from alerts.config import Settings, get_settings

log = logging.getLogger("alerts.metrics")

FOLDER_NAME = "metrics"
# prometheus-client's first size for a file; it doubles it when full.
INITIAL_FILE_BYTES = 1 << 16
# The file header: a 4-byte "bytes used" count and 4 bytes of padding.
HEADER_BYTES = 8


def metrics_dir(settings: Settings | None = None) -> Path:
    """The folder every process of this host writes its figures into."""
    return ((settings or get_settings()).data_dir / FOLDER_NAME).resolve()


class _AllocatedMmapedDict(MmapedDict):
    """prometheus-client's file, with every byte allocated before it is mapped.

    The library grows a file with ``truncate``, which leaves a hole: the disk
    space is taken only when a page of the map is first written, and if there
    is none the kernel sends SIGBUS. ``posix_fallocate`` takes the space up
    front, so running out of it is an ``OSError`` at a point we can handle.
    """

    def __init__(self, path: Path) -> None:
        _prepare(path)
        super().__init__(str(path))

    def _init_value(self, key: str) -> None:
        encoded = key.encode("utf-8")
        # The same entry size and doubling as the library's own _init_value.
        entry = 4 + len(encoded) + (8 - (len(encoded) + 4) % 8) + 16
        capacity = self._capacity
        while self._used + entry > capacity:
            capacity *= 2
        if capacity != self._capacity:
            os.posix_fallocate(self._f.fileno(), 0, capacity)
            # Mapped here, so the library finds room and never truncates (which
            # could shrink the file below the space just taken).
            grown = mmap.mmap(self._f.fileno(), capacity)
            self._m.close()
            self._m, self._capacity = grown, capacity
        super()._init_value(key)


def _prepare(path: Path) -> None:
    """Create or check ``path`` so that mapping it is safe; raise OSError if not.

    A file already there has our process id, so it was left by a dead process
    (ids are reused): it is continued, as prometheus-client does, when it
    parses; one that does not (truncated, or a half-written header) is
    replaced, because mapping it would read past its end.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        size = os.fstat(descriptor).st_size
        if size and not _parses(os.pread(descriptor, size, 0)):
            log.warning("alerts: replacing the unreadable metrics file %s", path)
            os.ftruncate(descriptor, 0)
            size = 0
        # Also fills any hole a crashed process left, so no page is unbacked.
        os.posix_fallocate(descriptor, 0, size or INITIAL_FILE_BYTES)
    finally:
        os.close(descriptor)


def _parses(data: bytes) -> bool:
    """Whether ``data`` is a whole prometheus-client metrics file."""
    if len(data) < HEADER_BYTES:
        return False
    used = int.from_bytes(data[:4], sys.byteorder, signed=True)
    if used == 0:
        return True  # allocated, nothing written yet
    if not HEADER_BYTES <= used <= len(data):
        return False
    try:
        for _ in read_entries(data, used):
            pass
    except (RuntimeError, ValueError, IndexError, struct.error) as error:
        log.debug("metrics file does not parse: %s", error)
        return False
    return True


class _Files:
    """This process's metrics files: where, which are open, and whether to try.

    One lock for all of it, like prometheus-client's multiprocess values: the
    files are shared by every metric of a type, and workers may run threads.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.folder: Path | None = None
        self.failed = False
        self.pid = os.getpid()
        self.open: dict[str, _AllocatedMmapedDict] = {}
        self.values: list[_FileBackedValue] = []

    def file_for(self, prefix: str) -> _AllocatedMmapedDict | None:
        """The open file for ``prefix``, opening it on first use; None: memory only."""
        if self.folder is None or self.failed:
            return None
        existing = self.open.get(prefix)
        if existing is not None:
            return existing
        path = self.folder / f"{prefix}_{self.pid}.db"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            opened = _AllocatedMmapedDict(path)
        except (OSError, ValueError, RuntimeError) as error:
            self.give_up(error)
            return None
        self.open[prefix] = opened
        return opened

    def give_up(self, error: BaseException) -> None:
        """Count in memory from now on, and say so once."""
        if not self.failed:
            log.warning(
                "alerts: metrics of this process are kept in memory only: cannot write %s (%s)",
                self.folder,
                getattr(error, "strerror", None) or error,
            )
        self.failed = True
        self.close()

    def close(self) -> None:
        for opened in self.open.values():
            opened.close()
        self.open.clear()
        for value in self.values:
            value.detach()

    def check_fork(self) -> None:
        """In a forked child: start a file of its own, from zero, like the library."""
        pid = os.getpid()
        if pid == self.pid:
            return
        # The parent's maps are the parent's: drop them without writing.
        self.open.clear()
        self.pid = pid
        for value in self.values:
            value.forget()


_files = _Files()


class _FileBackedValue:
    """One figure: in memory always, and in this process's file when there is one.

    The interface prometheus-client's metrics call on ``values.ValueClass``.
    """

    _multiprocess = True

    def __init__(
        self,
        typ: str,
        metric_name: str,
        name: str,
        labelnames: Iterable[str],
        labelvalues: Iterable[str],
        help_text: str,
        multiprocess_mode: str = "",
        **_kwargs: Any,
    ) -> None:
        self._prefix = f"{typ}_{multiprocess_mode}" if typ == "gauge" else typ
        self._key = mmap_key(metric_name, name, list(labelnames), list(labelvalues), help_text)
        self._is_gauge = typ == "gauge"
        self._value = 0.0
        self._timestamp = 0.0
        self._file: _AllocatedMmapedDict | None = None
        with _files.lock:
            _files.values.append(self)

    def detach(self) -> None:
        self._file = None

    def forget(self) -> None:
        self._file = None
        self._value = 0.0
        self._timestamp = 0.0

    def _store(self) -> None:
        """Write the value through to the file (lock held); never raise for the disk."""
        if self._file is None:
            opened = _files.file_for(self._prefix)
            if opened is None:
                return
            try:
                stored, _ = opened.read_value(self._key)
            except OSError as error:
                _files.give_up(error)
                return
            if not self._is_gauge:
                # A dead process with our id counted this already; go on from there.
                self._value += stored
            self._file = opened
        try:
            self._file.write_value(self._key, self._value, self._timestamp)
        except OSError as error:
            _files.give_up(error)

    def inc(self, amount: float) -> None:
        with _files.lock:
            _files.check_fork()  # before counting: a child starts from zero
            self._value += amount
            self._timestamp = 0.0
            self._store()

    def set(self, value: float, timestamp: float | None = None) -> None:
        with _files.lock:
            _files.check_fork()
            self._value = value
            self._timestamp = timestamp or 0.0
            self._store()

    def set_exemplar(self, _exemplar: Any) -> None:
        """Exemplars are not kept in multiprocess files."""

    def get(self) -> float:
        with _files.lock:
            _files.check_fork()
            return self._value

    def get_exemplar(self) -> None:
        return None


# The library creates each figure's value through this class attribute, also for
# label sets first used later, so it is replaced for the whole process. Metrics
# defined before this line (none of ours) keep the library's choice.
values.ValueClass = _FileBackedValue


def keep_in_files(settings: Settings) -> None:
    """Keep this process's figures in ``<data dir>/metrics`` from now on.

    Called once by each process entry point (the ``alerts`` command, which
    runs the web app in its own process; the worker; the clock) before it
    counts anything. Nothing is opened yet: the file of a metric type is
    opened when its first figure is counted. Later calls keep the first
    folder: a process writes into one folder. No environment variable is
    needed: the files are written by this module and read with an explicit
    path, so ``PROMETHEUS_MULTIPROC_DIR`` is never set.
    """
    with _files.lock:
        if _files.folder is None:
            _files.folder = metrics_dir(settings)


def files_folder() -> Path | None:
    """The folder this process writes its figures into, if it does."""
    return _files.folder


INGEST_ENTRIES = Counter(
    "alerts_ingest_entries_total", "Entries read from sources, by outcome.", ["source", "outcome"]
)
INGEST_FAILURES = Counter(
    "alerts_ingest_source_failures_total", "Sources that could not be read.", ["source"]
)
MATCH_SECONDS = Histogram(
    "alerts_match_seconds",
    "Time to analyse and match one article against every interest.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
MATCHES_PER_ARTICLE = Histogram(
    "alerts_matches_per_article",
    "Interests one article matched.",
    buckets=(0, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000),
)
INTERESTS_SKIPPED = Gauge(
    "alerts_interests_skipped",
    "Stored interests a matching worker cannot parse or file, and so skips.",
    multiprocess_mode="max",
)
PREVIEW_ARTICLES = Counter(
    "alerts_preview_articles_total", "Stored articles analysed to preview an interest."
)
DELIVERIES = Counter(
    "alerts_deliveries_total", "Delivery outcomes, by kind and state.", ["kind", "state"]
)
SMTP_RESPONSES = Counter(
    "alerts_smtp_responses_total", "Relay answers by class (2xx, 4xx, 5xx, none).", ["class"]
)
DIGEST_RUN_SECONDS = Histogram(
    "alerts_digest_run_seconds", "Time the clock spent planning due digests in one tick."
)
LEADER = Gauge(
    "alerts_scheduler_leader",
    "1 while this clock holds the leader lease.",
    multiprocess_mode="max",
)
QUEUE_DEPTH = Gauge(
    "alerts_queue_depth", "Tasks waiting in each broker queue.", ["queue"], multiprocess_mode="max"
)


def smtp_class(code: int | None) -> str:
    if not code:
        return "none"
    return f"{code // 100}xx"


class _FolderCollector:
    """Every readable file in a folder, added up the way prometheus-client does."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def collect(self) -> Iterable[Metric]:
        readable = []
        for name in glob.glob(os.path.join(self.folder, "*.db")):
            try:
                data = Path(name).read_bytes()
            except OSError as error:
                log.debug("metrics file %s unreadable: %s", name, error)
                continue
            if _parses(data):
                readable.append(name)
        merged: Iterable[Metric] = multiprocess.MultiProcessCollector.merge(readable)
        return merged


def _registry(folder: Path | None) -> CollectorRegistry:
    """The files of ``folder`` when there are some, else this process's own figures."""
    if folder is None or not folder.is_dir():
        return REGISTRY
    registry = CollectorRegistry()
    registry.register(_FolderCollector(folder))
    return registry


def render_all() -> bytes:
    """Every process's figures on this machine, in the text exposition format.

    A process that keeps no files (or could not) shows what it counted itself.
    """
    with _files.lock:
        folder = None if _files.failed else _files.folder
    return generate_latest(_registry(folder))


# Counters shown on the admin dashboard, summed over their labels but the listed one.
DASHBOARD_COUNTERS = {
    "alerts_ingest_entries_total": "outcome",
    "alerts_deliveries_total": "state",
    "alerts_smtp_responses_total": "class",
}


def totals() -> dict[str, float]:
    """A few headline figures from the same files ``/metrics`` reads, for the dashboard."""
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(render_all().decode()):
        for sample in family.samples:
            label = DASHBOARD_COUNTERS.get(sample.name)
            if label is None:
                continue
            key = f"{family.name.removeprefix('alerts_')}: {sample.labels.get(label, '')}"
            figures[key] = figures.get(key, 0.0) + sample.value
    return figures


def reset() -> None:
    """Start from zero (``alerts up`` at start): files of dead processes would linger."""
    with _files.lock:
        folder = _files.folder
        if folder is None:
            return
        _files.close()
        shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            _files.give_up(error)


def serve(port: int) -> None:
    """Serve this machine's figures on ``port`` (``alerts worker --metrics-port``).

    On ``ALERTS_METRICS_BIND`` (loopback unless the operator opens it), and,
    when ``ALERTS_METRICS_TOKEN`` is set, only to ``Authorization: Bearer <token>``.
    """
    settings = get_settings()
    handler = MetricsHandler.factory(_registry(metrics_dir()))
    if settings.metrics_token:
        handler = _token_guarded(handler, settings.metrics_token)
    ThreadingHTTPServer((settings.metrics_bind, port), handler).serve_forever()


def _token_guarded(handler: type[MetricsHandler], token: str) -> type[MetricsHandler]:
    """The library's handler, answering 401 unless the request carries the bearer token."""

    class TokenGuarded(handler):  # type: ignore[valid-type, misc]
        def do_GET(self) -> None:  # noqa: N802 - http.server's method name
            scheme, _, sent = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                sent.strip().encode(), token.encode()
            ):
                super().do_GET()
                return
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="metrics"')
            self.send_header("Content-Length", "0")
            self.end_headers()

    return TokenGuarded


if __name__ == "__main__":
    serve(int(sys.argv[1]))
