"""The one way the server makes HTTP requests to addresses that users typed.

Feeds, pages, `alerts ingest URL` and webhooks all go through :class:`Outbound`,
so a source or webhook URL cannot reach the server's own network (loopback,
private ranges, link-local cloud metadata...) however the address is spelled.

How it holds:

- The check sits where the socket is opened (an httpcore network backend):
  the host name is resolved once, every answer is checked, and the connection
  goes to an address that passed. A second DNS answer (rebinding) is never
  asked for, and the Host header, TLS SNI and certificate check still use the
  name from the URL.
- Redirects are followed here, one hop at a time (at most ``MAX_REDIRECTS``),
  and every new host is checked at its own connect.
- One wall-clock deadline covers resolving, connecting, TLS, headers and body
  of every hop: each socket wait gets only the time that is left, so a server
  that trickles a byte at a time is cut off at the deadline.
- The body is decoded here, piece by piece, and reading stops at a cap on the
  *decoded* bytes; at most one Content-Encoding (gzip or deflate) is accepted.

Errors raised to callers are :class:`OutboundError`, whose text is safe to show
to editors and on public pages ("could not connect", "address not allowed");
the detail an operator needs goes to the log.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from alerts.errors import UnavailableError

if TYPE_CHECKING:
    from alerts.config import Settings

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses the name stands for (as getaddrinfo gives them)
Resolver = Callable[[str, int], Sequence[str]]

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
WEB_SCHEMES = frozenset({"http", "https"})
# Raw bytes asked of the socket layer per read, and the largest decoded piece
# produced from one: a bomb's expansion is checked every 64 KiB of output.
RAW_CHUNK_BYTES = 64 * 1024
DECODED_PIECE_BYTES = 64 * 1024
# How long a check at add time waits for DNS before leaving it to the fetch.
CHECK_RESOLVE_SECONDS = 5.0
# Only these are asked for and understood; anything else is refused.
ACCEPT_ENCODING = "gzip, deflate"
GZIP_WBITS = 16 + zlib.MAX_WBITS

# Ranges that Python's is_global does not refuse (3.11) but that no feed or
# webhook receiver lives on: multicast is checked separately.
_EXTRA_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT; Alibaba's metadata
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments; Oracle's metadata
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("fec0::/10"),  # deprecated site-local
)
# Cloud metadata services, named in refusals so the log says what was tried.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "fd00:ec2::254")
)
# IPv6 prefixes that carry an IPv4 address in their last 32 bits and are
# translated to it by a gateway: NAT64 (well-known and local-use).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_-]{1,63})*$")


class OutboundError(UnavailableError):
    """A request refused or failed; ``str()`` is fit for editors and public pages."""


class AddressNotAllowedError(OutboundError):
    """The URL's host is, or resolves to, an address outside the public internet."""


class OutboundTimeoutError(OutboundError):
    """The whole request did not finish within its deadline."""


class TooManyRedirectsError(OutboundError):
    pass


class ResponseTooLargeError(OutboundError):
    """The body, once decoded, is over the cap the caller gave."""


# --- which addresses ----------------------------------------------------------------


def _normalised(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address it maps."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a translating prefix (NAT64, 6to4, Teredo, compatible) carries."""
    if any(ip in prefix for prefix in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if int(ip) >> 32 == 0 and int(ip) > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(int(ip))
    return None


def refusal(address: str | IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is one.

    Checks the address itself and, for IPv6 forms that carry an IPv4 address
    (mapped, compatible, NAT64, 6to4, Teredo), the address inside as well.
    """
    ip = _normalised(ipaddress.ip_address(address) if isinstance(address, str) else address)
    if ip in _METADATA:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = refusal(inner)
            if reason is not None:
                return f"{reason} inside an IPv6 address"
            if any(ip in prefix for prefix in _NAT64):
                # Python counts the prefix as reserved, but on an IPv6-only
                # network with DNS64 every IPv4 site has such an address: the
                # IPv4 address inside is what the gateway connects to.
                return None
    checks = (
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (
            any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version),
            "a shared or special-use address",
        ),
        (not ip.is_global, "not a public address"),
    )
    for failed, reason in checks:
        if failed:
            return reason
    return None


@dataclass(frozen=True)
class Policy:
    """What an operator allows on purpose beyond the public internet.

    ``networks`` are checked against every resolved address; ``hosts`` are
    names whose addresses are all allowed (an intranet CMS behind a name).
    """

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> Policy:
        """Read "10.1.2.0/24, ::1, cms.intranet" (CIDRs, addresses or host names)."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass  # not an address or network: perhaps a host name
            name = entry.lower().rstrip(".")
            if not _HOST_NAME.match(name):
                raise ValueError(
                    f"{entry!r} is neither a network (10.0.0.0/8), an address nor a host name"
                )
            hosts.add(name)
        return cls(tuple(networks), frozenset(hosts))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows(self, ip: IPAddress) -> bool:
        ip = _normalised(ip)
        return any(ip in net for net in self.networks if net.version == ip.version)


def system_resolver(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _numeric(host: str, port: int) -> list[IPAddress] | None:
    """The address a numeric host stands for, in every notation the C library reads.

    That includes 127.1, 0x7f000001, 2130706433 and 0177.0.0.1: the socket
    layer would connect to those, so they are read the way it reads them.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return [_normalised(ipaddress.ip_address(str(info[4][0]))) for info in infos]


def _resolve(resolver: Resolver, host: str, port: int, deadline: float) -> list[IPAddress]:
    """Every address of ``host``, once, within the deadline (DNS has no timeout of its own)."""
    numeric = _numeric(host, port)
    if numeric is not None:
        return numeric
    answer: dict[str, Any] = {}

    def look_up() -> None:
        try:
            answer["addresses"] = resolver(host, port)
        except Exception as error:  # noqa: BLE001 - handed to the waiting thread, which raises it
            answer["error"] = error

    # A daemon thread, so that a resolver stuck past the deadline cannot hold
    # the fetch (it ends by itself at the resolver's own timeout).
    worker = threading.Thread(target=look_up, name="netguard-resolve", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        raise OutboundTimeoutError(f"timed out looking up {host}")
    error = answer.get("error")
    if isinstance(error, (OSError, UnicodeError)):
        logger.info("could not resolve %s: %s", host, error)
        raise OutboundError(f"could not find the server {host}")
    if error is not None:
        raise error
    unique: list[IPAddress] = []
    for text in answer["addresses"]:
        ip = _normalised(ipaddress.ip_address(text))
        if ip not in unique:
            unique.append(ip)
    if not unique:
        raise OutboundError(f"could not find the server {host}")
    return unique


# --- the socket layer ---------------------------------------------------------------


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait ends by the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the deadline of the whole request has passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # server_hostname is the URL's host name (httpcore passes it), so SNI
        # and certificate verification are for the name, not the pinned address.
        wrapped = self._inner.start_tls(
            ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(wrapped, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves once, checks every answer, connects only to an address that passed."""

    def __init__(self, outbound: Outbound, deadline: float) -> None:
        self._outbound = outbound
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._outbound.allowed_addresses(host, port, self._deadline)
        failure: Exception | None = None
        for address in addresses:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise httpcore.ConnectTimeout("the deadline of the whole request has passed")
            try:
                stream = self._inner.connect_tcp(
                    address,
                    port,
                    timeout=left if timeout is None else min(timeout, left),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error  # try the host's next allowed address
                continue
            return _DeadlineStream(stream, self._deadline)
        assert failure is not None  # allowed_addresses never returns an empty list
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise AddressNotAllowedError("address not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# httpcore's errors as httpx's, most specific first (what httpx's own transport does).
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        for core, mapped in _ERRORS:
            if isinstance(error, core):
                raise mapped(str(error)) from error
        raise


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class _GuardedTransport(httpx.BaseTransport):
    """httpx on an httpcore pool that connects through the guarded backend."""

    def __init__(self, backend: httpcore.NetworkBackend, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, network_backend=backend, http1=True, http2=False
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            core_response = self._pool.handle_request(core_request)
        assert isinstance(core_response.stream, Iterable)  # a sync pool streams synchronously
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_Body(core_response.stream),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


@lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    """httpx's verifying context (certifi's roots), built once: loading roots is slow."""
    return httpx.create_ssl_context()


# --- decoding -----------------------------------------------------------------------


def _content_encoding(headers: httpx.Headers) -> str | None:
    """The one coding applied to the body, or None; stacked codings are refused."""
    codings = [
        part.strip().lower()
        for value in headers.get_list("content-encoding")
        for part in value.split(",")
        if part.strip() and part.strip().lower() != "identity"
    ]
    if len(codings) > 1:
        raise OutboundError(f"the server stacked content encodings ({', '.join(codings)})")
    if not codings:
        return None
    if codings[0] not in ("gzip", "x-gzip", "deflate"):
        raise OutboundError(f"unsupported content encoding {codings[0]!r}")
    return "deflate" if codings[0] == "deflate" else "gzip"


class _Decoder:
    """Inflates gzip or deflate in bounded pieces, so no step can explode in memory."""

    def __init__(self, coding: str | None) -> None:
        self._coding = coding
        self._raw_deflate_tried = False
        self._started = False
        self._z = self._new()

    def _new(self) -> Any:
        if self._coding == "gzip":
            return zlib.decompressobj(GZIP_WBITS)
        return zlib.decompressobj(zlib.MAX_WBITS)

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._coding is None:
            if data:
                yield data
            return
        while True:
            try:
                piece = self._z.decompress(data, DECODED_PIECE_BYTES)
            except zlib.error as error:
                if self._coding == "deflate" and not self._started and not self._raw_deflate_tried:
                    # Some servers send raw deflate without the zlib wrapper.
                    self._raw_deflate_tried = True
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise OutboundError("the server sent a corrupt compressed body") from error
            self._started = True
            if piece:
                yield piece
            data = self._z.unconsumed_tail
            if self._z.eof:
                rest = self._z.unused_data
                if not rest:
                    return
                if self._coding != "gzip":
                    raise OutboundError("the server sent data after the compressed body")
                self._z = self._new()  # gzip allows members one after another
                data = rest
                continue
            # A full piece may leave output inside zlib even when all input is taken.
            if not data and len(piece) < DECODED_PIECE_BYTES:
                return

    def finish(self) -> None:
        if self._coding is not None and self._started and not self._z.eof:
            raise OutboundError("the compressed body was cut short")


class Reply:
    """A response after redirects: status and headers now, the body on request."""

    def __init__(self, response: httpx.Response, outbound: Outbound) -> None:
        self._response = response
        self._outbound = outbound
        self.status_code = response.status_code
        self.reason_phrase = response.reason_phrase
        self.headers = response.headers
        self.url = str(response.url)

    def _pieces(self, limit: int) -> Iterator[bytes]:
        """Decoded pieces until the body ends or more than ``limit`` bytes came."""
        decoder = _Decoder(_content_encoding(self.headers))
        decoded = raw = 0
        try:
            for chunk in self._response.iter_raw(RAW_CHUNK_BYTES):
                raw += len(chunk)
                for piece in decoder.decode(chunk):
                    decoded += len(piece)
                    yield piece
                    if decoded > limit:
                        return
                if raw > limit:  # compressed input that decodes to (almost) nothing
                    raise ResponseTooLargeError(f"the response is over {limit} bytes")
            decoder.finish()
        except httpx.HTTPError as error:
            raise self._outbound.public_error(error, self.url) from error

    def read(self, limit: int) -> bytes:
        """The decoded body; ResponseTooLargeError as soon as it passes ``limit`` bytes."""
        pieces: list[bytes] = []
        received = 0
        for piece in self._pieces(limit):
            received += len(piece)
            if received > limit:
                raise ResponseTooLargeError(f"the decoded response is over {limit} bytes")
            pieces.append(piece)
        return b"".join(pieces)

    def read_prefix(self, limit: int) -> bytes:
        """At most ``limit`` decoded bytes of the body; the rest is not read."""
        pieces: list[bytes] = []
        received = 0
        for piece in self._pieces(limit):
            pieces.append(piece[: limit - received])
            received += len(pieces[-1])
            if received >= limit:
                break
        return b"".join(pieces)


# --- the client ---------------------------------------------------------------------


class Outbound:
    """Guarded HTTP for user-given URLs; one instance serves any number of requests."""

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy or Policy()
        self._resolver = resolver
        self._ssl_context = ssl_context

    @classmethod
    def from_settings(cls, settings: Settings) -> Outbound:
        return cls(Policy.parse(settings.fetch_allowed_networks))

    def allowed_addresses(self, host: str, port: int, deadline: float) -> list[str]:
        """The addresses of ``host`` that may be connected to; AddressNotAllowedError if none."""
        resolved = _resolve(self._resolver, host, port, deadline)
        if self.policy.allows_host(host):
            return [str(ip) for ip in resolved]
        allowed: list[str] = []
        refused: list[str] = []
        for ip in resolved:
            reason = None if self.policy.allows(ip) else refusal(ip)
            if reason is None:
                allowed.append(str(ip))
            else:
                refused.append(f"{ip} is {reason}")
        if not allowed:
            logger.warning("refused a request to %s: %s", host, "; ".join(refused))
            raise AddressNotAllowedError(
                f"address not allowed: {host} is not a public internet address"
            )
        return allowed

    def check_url(self, url: str) -> None:
        """Refuse, before it is stored, a URL that no fetch would be allowed to reach.

        A host that does not resolve now is let through: the fetch checks again.
        """
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as error:
            raise OutboundError(f"not a valid web address: {error}") from error
        if parsed.scheme not in WEB_SCHEMES or not parsed.host:
            raise OutboundError("give an http:// or https:// address with a host name")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            self.allowed_addresses(parsed.host, port, time.monotonic() + CHECK_RESOLVE_SECONDS)
        except AddressNotAllowedError:
            raise
        except OutboundError as error:
            logger.info("could not check %s now (%s); its fetches will", url, error)

    def public_error(self, error: Exception, url: str) -> OutboundError:
        """An error to show for a failed request, with the detail logged instead."""
        if isinstance(error, OutboundError):
            return error
        logger.warning("request to %s failed: %s: %s", url, type(error).__name__, error)
        if isinstance(error, httpx.TimeoutException):
            return OutboundTimeoutError("timed out")
        if isinstance(error, httpx.InvalidURL | httpx.UnsupportedProtocol):
            return OutboundError("not a valid http(s) address")
        if isinstance(error, httpx.ConnectError):
            if _caused_by(error, ssl.SSLError):
                return OutboundError("could not make a secure (TLS) connection")
            return OutboundError("could not connect to the server")
        return OutboundError("the server's answer was broken or cut short")

    @contextmanager
    def open(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        max_redirects: int = MAX_REDIRECTS,
    ) -> Iterator[Reply]:
        """Send a request and yield its reply, redirects followed and checked.

        ``timeout`` is for everything, every hop and the body included.
        ``max_redirects=0`` hands back a redirect as it is (webhooks do).
        """
        deadline = time.monotonic() + timeout
        transport = _GuardedTransport(
            _GuardedBackend(self, deadline), self._ssl_context or _default_ssl_context()
        )
        # trust_env=False: a proxy from the environment would connect for us,
        # around the check, and .netrc credentials must not go to feeds.
        with httpx.Client(
            transport=transport, trust_env=False, follow_redirects=False, timeout=timeout
        ) as client:
            try:
                response = self._send(client, method, url, headers, content, max_redirects)
            except (httpx.HTTPError, httpx.InvalidURL) as error:
                raise self.public_error(error, url) from error
            try:
                yield Reply(response, self)
            finally:
                response.close()

    def _send(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        content: bytes | None,
        max_redirects: int,
    ) -> httpx.Response:
        wanted = {"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})}
        target = httpx.URL(url)
        for _hop in range(max_redirects + 1):
            if target.scheme not in WEB_SCHEMES:
                raise OutboundError("not a valid http(s) address")
            response = client.send(
                client.build_request(method, target, headers=wanted, content=content),
                stream=True,
            )
            location = response.headers.get("location")
            if max_redirects == 0 or response.status_code not in REDIRECT_STATUSES or not location:
                return response
            response.close()
            # Each hop is checked again when its host is connected to.
            target = target.join(location)
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method == "POST"
            ):
                method, content = "GET", None
        raise TooManyRedirectsError(f"more than {max_redirects} redirects")


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
