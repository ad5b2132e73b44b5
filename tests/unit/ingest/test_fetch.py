"""fetch_url against a real HTTP server on loopback, and read_source for files and stdin."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from alerts.config import get_settings
from alerts.ingest import IngestLimits, SourceError, fetch_url, read_source
from alerts.netguard import Outbound, Policy

FEED_BODY = b'<rss version="2.0"><channel><title>Loopback</title></channel></rss>'
ETAG = '"loopback-v1"'
LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)
FIFTY_MB = 50 * 1024 * 1024
STREAM_CHUNK = b"x" * (1024 * 1024)
SHORT_TIMEOUT = 0.5
# The slow handler waits on this event; the fixture sets it so shutdown is prompt.
RELEASE_SLOW = threading.Event()
SLOW_HANDLER_WAIT = 30.0
LOOPBACK = Policy.parse("127.0.0.0/8")


class _Handler(BaseHTTPRequestHandler):
    """Routes by path; each route plays one kind of real-world server."""

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        routes = {
            "/etag": self._etag,
            "/modified": self._modified,
            "/missing": lambda: self._status(404),
            "/broken": lambda: self._status(500),
            "/slow": self._slow,
            "/huge-streamed": self._huge_streamed,
            "/huge-declared": self._huge_declared,
        }
        routes.get(self.path, lambda: self._status(404))()

    def _status(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _ok(self, extra: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        self.send_header("Content-Length", str(len(FEED_BODY)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(FEED_BODY)

    def _etag(self) -> None:
        if self.headers.get("If-None-Match") == ETAG:
            self._status(304)
        else:
            self._ok({"ETag": ETAG})

    def _modified(self) -> None:
        if self.headers.get("If-Modified-Since") == LAST_MODIFIED:
            self._status(304)
        else:
            self._ok({"Last-Modified": LAST_MODIFIED})

    def _slow(self) -> None:
        RELEASE_SLOW.wait(SLOW_HANDLER_WAIT)
        try:
            self._ok({})
        except OSError:
            return  # the client gave up long ago, which is the point of this route

    def _huge_streamed(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for _ in range(FIFTY_MB // len(STREAM_CHUNK)):
                self.wfile.write(STREAM_CHUNK)
        except OSError:
            return  # the client stops reading at its limit and closes the socket

    def _huge_declared(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(FIFTY_MB))
        self.end_headers()
        try:
            self.wfile.write(STREAM_CHUNK)
        except OSError:
            return  # the client refuses on the header alone


@pytest.fixture(autouse=True)
def _loopback_allowed(allow_loopback_fetches: str) -> None:
    """This module's servers are on loopback, which an operator allows on purpose."""


@pytest.fixture
def no_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALERTS_FETCH_ALLOWED_NETWORKS")
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    RELEASE_SLOW.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        RELEASE_SLOW.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_etag_round_trip_gets_304(server: str) -> None:
    first = fetch_url(f"{server}/etag")
    assert first.status == 200
    assert first.data == FEED_BODY
    assert first.etag == ETAG
    assert first.content_type is not None
    assert first.content_type.startswith("application/rss+xml")
    second = fetch_url(f"{server}/etag", etag=first.etag)
    assert second.status == 304
    assert second.data is None


def test_last_modified_round_trip_gets_304(server: str) -> None:
    first = fetch_url(f"{server}/modified")
    assert first.last_modified == LAST_MODIFIED
    second = fetch_url(f"{server}/modified", last_modified=first.last_modified)
    assert second.status == 304
    assert second.data is None


@pytest.mark.parametrize(("path", "status"), [("/missing", "404"), ("/broken", "500")])
def test_http_errors_name_the_status(server: str, path: str, status: str) -> None:
    with pytest.raises(SourceError, match=f"HTTP {status}"):
        fetch_url(f"{server}{path}")


def test_slow_server_times_out(server: str) -> None:
    with pytest.raises(SourceError, match="timed out"):
        fetch_url(f"{server}/slow", limits=IngestLimits(fetch_timeout=SHORT_TIMEOUT))


def test_streamed_body_over_the_limit_is_cut_off(server: str) -> None:
    with pytest.raises(SourceError, match="max_source_bytes"):
        fetch_url(f"{server}/huge-streamed")


def test_declared_length_over_the_limit_is_refused(server: str) -> None:
    with pytest.raises(SourceError, match="max_source_bytes"):
        fetch_url(f"{server}/huge-declared")


def test_caller_supplied_guard_is_used(server: str) -> None:
    assert fetch_url(f"{server}/etag", outbound=Outbound(LOOPBACK)).data == FEED_BODY
    with pytest.raises(SourceError, match="address not allowed"):
        fetch_url(f"{server}/etag", outbound=Outbound())


@pytest.mark.usefixtures("no_allow_list")
@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "127.1", "0x7f000001", "2130706433", "[::ffff:127.0.0.1]"]
)
def test_loopback_sources_are_refused_by_default(server: str, host: str) -> None:
    port = server.rsplit(":", 1)[1]
    with pytest.raises(SourceError, match="address not allowed"):
        fetch_url(f"http://{host}:{port}/etag")
    with pytest.raises(SourceError, match="address not allowed"):
        read_source(f"http://{host}:{port}/etag")


def test_read_source_over_http(server: str) -> None:
    data, content_type = read_source(f"{server}/etag")
    assert data == FEED_BODY
    assert content_type is not None


def test_unreachable_port_is_a_source_error_without_transport_detail() -> None:
    with pytest.raises(SourceError, match="cannot fetch") as failed:
        fetch_url("http://127.0.0.1:9/feed", limits=IngestLimits(fetch_timeout=SHORT_TIMEOUT))
    assert str(failed.value) == (
        "cannot fetch http://127.0.0.1:9/feed: could not connect to the server"
    )


def test_read_source_file(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(FEED_BODY)
    assert read_source(str(path)) == (FEED_BODY, None)


def test_read_source_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        read_source(str(tmp_path / "absent.xml"))


def test_read_source_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="directory"):
        read_source(str(tmp_path))


def test_read_source_fifty_megabyte_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.xml"
    with path.open("wb") as handle:
        handle.truncate(FIFTY_MB)  # sparse: costs no disk and is never read
    with pytest.raises(SourceError, match="max_source_bytes"):
        read_source(str(path))


class _EndlessStream(io.RawIOBase):
    """A stdin that would produce 50 MB; counts how much was actually read."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), FIFTY_MB - self.served)
        buffer[:size] = b"y" * size
        self.served += size
        return size


def test_read_source_stdin_stops_at_the_limit() -> None:
    stream = _EndlessStream()
    limits = IngestLimits(max_source_bytes=1024 * 1024)
    with pytest.raises(SourceError, match="max_source_bytes"):
        read_source("-", limits=limits, stdin=stream)  # type: ignore[arg-type]
    assert stream.served < 2 * limits.max_source_bytes


def test_read_source_stdin() -> None:
    assert read_source("-", stdin=io.BytesIO(FEED_BODY)) == (FEED_BODY, None)
