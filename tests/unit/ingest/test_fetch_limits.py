"""fetch_url against hostile servers on loopback: decompression bombs and trickling.

The bounds asked of the guard: peak memory under twice max_source_bytes while
a bomb is read, and a trickling server cut off within the timeout plus 2 s.
"""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from alerts.ingest import IngestLimits, SourceError, fetch_url
from alerts.netguard import Outbound, Policy
from tests.loopback import LoopbackServer, Route, send, serving

CAP = 2 * 1024 * 1024
BOMB_DECODED = 64 * 1024 * 1024  # what the bomb would inflate to: 32 times the cap
GUARD = Outbound(Policy.parse("127.0.0.0/8"))
FEED = b'<rss version="2.0"><channel><title>Zipped</title></channel></rss>'
TRICKLE_EVERY = 2.0
TRICKLE_TIMEOUT = 3.0
TRICKLE_BYTES = 30  # a minute of trickle at most; the guard stops long before


def _compressed_zeros(size: int, wbits: int) -> bytes:
    """``size`` zero bytes compressed without ever holding them (1 MiB at a time)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(size // len(block))]
    parts.append(packer.flush())
    return b"".join(parts)


GZIP_BOMB = _compressed_zeros(BOMB_DECODED, 16 + zlib.MAX_WBITS)
DEFLATE_BOMB = _compressed_zeros(BOMB_DECODED, zlib.MAX_WBITS)
# gzip of the gzip bomb: a couple of kilobytes on the wire.
STACKED_BOMB = gzip.compress(GZIP_BOMB, 9)


def _trickle_body(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.send_header("Content-Length", str(TRICKLE_BYTES))
    handler.end_headers()
    _trickle(handler, b"x" * TRICKLE_BYTES)


def _trickle_headers(handler: BaseHTTPRequestHandler) -> None:
    _trickle(handler, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * TRICKLE_BYTES)


def _trickle(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    for index in range(len(data)):
        try:
            handler.wfile.write(data[index : index + 1])
            handler.wfile.flush()
        except OSError:
            return  # the client hung up, as it should
        time.sleep(TRICKLE_EVERY)


@pytest.fixture(scope="module")
def hostile() -> Iterator[LoopbackServer]:
    with serving() as server:
        encoded = {
            "/gzip-bomb": (GZIP_BOMB, "gzip"),
            "/deflate-bomb": (DEFLATE_BOMB, "deflate"),
            "/stacked": (STACKED_BOMB, "gzip, gzip"),
            "/gzip-feed": (gzip.compress(FEED), "gzip"),
            "/two-members": (gzip.compress(FEED[:20]) + gzip.compress(FEED[20:]), "gzip"),
            "/raw-deflate": (_raw_deflate(FEED), "deflate"),
            "/brotli": (b"\x0b\x02\x80", "br"),
            "/cut-gzip": (gzip.compress(FEED)[:-12], "gzip"),
        }
        routes = {path: _encoded(body, coding) for path, (body, coding) in encoded.items()}
        routes |= {
            "/stacked-lines": _stacked_lines,
            "/plain": lambda handler: send(handler, FEED),
            "/trickle-body": _trickle_body,
            "/trickle-headers": _trickle_headers,
        }
        server.routes.update(routes)
        yield server


def _encoded(body: bytes, coding: str) -> Route:
    return lambda handler: send(handler, body, headers={"Content-Encoding": coding})


def _stacked_lines(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(len(STACKED_BOMB)))
    handler.end_headers()
    handler.wfile.write(STACKED_BOMB)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def _peak_bytes_of(url: str, match: str) -> int:
    fetch_url(f"{url.rsplit('/', 1)[0]}/plain", outbound=GUARD)  # warm caches (TLS roots, imports)
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match=match):
            fetch_url(url, limits=IngestLimits(max_source_bytes=CAP), outbound=GUARD)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("path", ["/gzip-bomb", "/deflate-bomb"])
def test_a_bomb_is_cut_off_at_the_decoded_cap_in_bounded_memory(
    hostile: LoopbackServer, path: str
) -> None:
    assert len(GZIP_BOMB) < CAP  # small on the wire: only decoding can catch it
    peak = _peak_bytes_of(hostile.url(path), "max_source_bytes")
    assert peak < 2 * CAP, f"peak {peak} bytes for a cap of {CAP}"


@pytest.mark.parametrize("path", ["/stacked", "/stacked-lines"])
def test_stacked_encodings_are_refused_before_decoding(hostile: LoopbackServer, path: str) -> None:
    peak = _peak_bytes_of(hostile.url(path), "stacked content encodings")
    assert peak < 2 * CAP


@pytest.mark.parametrize("path", ["/gzip-feed", "/two-members", "/raw-deflate", "/plain"])
def test_compressed_feeds_still_read(hostile: LoopbackServer, path: str) -> None:
    assert fetch_url(hostile.url(path), outbound=GUARD).data == FEED


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/brotli", "unsupported content encoding"), ("/cut-gzip", "cut short")],
)
def test_undecodable_bodies_say_why(hostile: LoopbackServer, path: str, reason: str) -> None:
    with pytest.raises(SourceError, match=reason):
        fetch_url(hostile.url(path), outbound=GUARD)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/trickle-body", "/trickle-headers"])
def test_a_trickling_server_is_cut_off_at_the_timeout(hostile: LoopbackServer, path: str) -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match="timed out"):
        fetch_url(
            hostile.url(path), limits=IngestLimits(fetch_timeout=TRICKLE_TIMEOUT), outbound=GUARD
        )
    elapsed = time.monotonic() - started
    assert elapsed < TRICKLE_TIMEOUT + 2, f"took {elapsed:.1f} s"
