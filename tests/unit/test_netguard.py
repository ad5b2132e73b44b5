"""The outbound guard: which addresses, every spelling, redirects, DNS pinning, TLS, errors.

Fetch tests run against servers on loopback that the tests start: with the
allow-list empty each spelling must be refused before anything is sent, with
loopback allowed the same spellings must reach the server. Addresses that are
not on this machine (private ranges, metadata) are only ever classified, never
connected to.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from alerts.config import Settings
from alerts.netguard import (
    AddressNotAllowedError,
    Outbound,
    OutboundError,
    Policy,
    TooManyRedirectsError,
    refusal,
)
from tests.loopback import LoopbackServer, certificate_for, redirect, send, serving

LOOPBACK = Policy.parse("127.0.0.0/8, ::1")
TIMEOUT = 5.0

# Spellings of this machine's loopback servers: {v4} is the IPv4 server's port
# on 127.0.0.1, {v6} the IPv6 server's port on ::1.
LOOPBACK_SPELLINGS = [
    "http://127.0.0.1:{v4}/",
    "http://localhost:{v4}/",
    "http://LOCALHOST:{v4}/",
    "http://127.1:{v4}/",
    "http://127.0.1:{v4}/",
    "http://0x7f000001:{v4}/",
    "http://0x7f.0.0.1:{v4}/",
    "http://0x7f.1:{v4}/",
    "http://2130706433:{v4}/",
    "http://017700000001:{v4}/",
    "http://[::ffff:127.0.0.1]:{v4}/",
    "http://[::ffff:7f00:1]:{v4}/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]:{v4}/",
    "http://[::1]:{v6}/",
    "http://[0:0:0:0:0:0:0:1]:{v6}/",
    "http://[0000::0001]:{v6}/",
    "http://user:secret@127.0.0.1:{v4}/",
]
# Spellings that reach loopback through the kernel but are not in the
# allow-list (unspecified) or that httpx itself refuses to parse (octal).
REFUSED_EVEN_WHEN_LOOPBACK_IS_ALLOWED = [
    "http://0.0.0.0:{v4}/",
    "http://0:{v4}/",
    "http://[::]:{v6}/",
    "http://0177.0.0.1:{v4}/",
]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, LoopbackServer]]:
    with serving("127.0.0.1") as v4, serving("::1") as v6:
        for server in (v4, v6):
            server.routes["/"] = lambda handler: send(handler, b"the server's own secrets")
        yield {"v4": v4, "v6": v6}


def _url(template: str, servers: dict[str, LoopbackServer]) -> str:
    return template.format(v4=servers["v4"].port, v6=servers["v6"].port)


def _get(outbound: Outbound, url: str) -> bytes:
    with outbound.open("GET", url, timeout=TIMEOUT) as reply:
        assert reply.status_code == 200
        return reply.read(1024)


def _request_count(servers: dict[str, LoopbackServer]) -> int:
    return sum(len(server.requests) for server in servers.values())


@pytest.mark.parametrize("template", LOOPBACK_SPELLINGS + REFUSED_EVEN_WHEN_LOOPBACK_IS_ALLOWED)
def test_every_spelling_of_loopback_is_refused_without_a_request(
    servers: dict[str, LoopbackServer], template: str
) -> None:
    before = _request_count(servers)
    with pytest.raises(OutboundError) as refused:
        _get(Outbound(), _url(template, servers))
    assert "secrets" not in str(refused.value)
    assert _request_count(servers) == before  # nothing was sent


@pytest.mark.parametrize("template", LOOPBACK_SPELLINGS)
def test_the_allow_list_lets_the_same_spellings_through(
    servers: dict[str, LoopbackServer], template: str
) -> None:
    assert _get(Outbound(LOOPBACK), _url(template, servers)) == b"the server's own secrets"


@pytest.mark.parametrize("template", REFUSED_EVEN_WHEN_LOOPBACK_IS_ALLOWED)
def test_unspecified_and_unparsable_stay_refused_with_the_allow_list(
    servers: dict[str, LoopbackServer], template: str
) -> None:
    with pytest.raises(OutboundError):
        _get(Outbound(LOOPBACK), _url(template, servers))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "0.0.0.0",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",  # AWS, GCP, Azure metadata
        "169.254.170.2",  # ECS task metadata
        "100.64.0.1",  # carrier-grade NAT
        "100.100.100.200",  # Alibaba metadata
        "192.0.0.192",  # Oracle metadata
        "192.0.2.1",
        "198.18.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "fe80::1%1",
        "fc00::1",
        "fd00:ec2::254",  # AWS IPv6 metadata
        "fec0::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "::a00:1",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
        "64:ff9b:1::a00:1",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",
    ],
)
def test_addresses_off_the_public_internet_are_refused(address: str) -> None:
    assert refusal(address) is not None


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"],
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(address) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/feed",
        "http://0xa000001/feed",
        "http://167772161/feed",
        "http://169.254.169.254/latest/meta-data/",
        "http://0xa9.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://100.100.100.200/",
        "https://192.168.0.1:8443/admin",
    ],
)
def test_check_url_refuses_numeric_hosts_without_connecting(url: str) -> None:
    # Numeric hosts are read without DNS and refused before any socket opens.
    with pytest.raises(AddressNotAllowedError, match="address not allowed"):
        Outbound().check_url(url)


def test_check_url_leaves_unresolvable_hosts_to_the_fetch() -> None:
    def unknown(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    Outbound(resolver=unknown).check_url("https://feeds.example/rss")


# --- redirects ----------------------------------------------------------------------


@pytest.fixture
def entry_server() -> Iterator[LoopbackServer]:
    """The one server the allow-list admits: 127.0.0.2, never 127.0.0.1 or ::1."""
    with serving("127.0.0.2") as server:
        yield server


ENTRY_ONLY = Policy.parse("127.0.0.2/32")


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{v4}/",
        "http://localhost:{v4}/",
        "http://2130706433:{v4}/",
        "http://[::1]:{v6}/",
        "http://[::ffff:127.0.0.1]:{v4}/",
    ],
)
def test_a_redirect_chain_to_loopback_is_refused_at_the_hop(
    servers: dict[str, LoopbackServer], entry_server: LoopbackServer, target: str
) -> None:
    entry_server.routes["/feed"] = redirect("/moved")
    entry_server.routes["/moved"] = redirect(_url(target, servers), 301)
    before = _request_count(servers)
    with pytest.raises(AddressNotAllowedError):
        _get(Outbound(ENTRY_ONLY), entry_server.url("/feed"))
    assert [path for path, _host in entry_server.requests] == ["/feed", "/moved"]
    assert _request_count(servers) == before


def test_five_redirects_are_followed_and_a_sixth_is_refused(entry_server: LoopbackServer) -> None:
    for hop in range(6):
        entry_server.routes[f"/hop{hop}"] = redirect(f"/hop{hop + 1}")
    entry_server.routes["/hop6"] = lambda handler: send(handler, b"arrived")
    with Outbound(ENTRY_ONLY).open("GET", entry_server.url("/hop1"), timeout=TIMEOUT) as reply:
        assert reply.read(100) == b"arrived"
        assert reply.url.endswith("/hop6")
    with pytest.raises(TooManyRedirectsError):
        _get(Outbound(ENTRY_ONLY), entry_server.url("/hop0"))


def test_a_redirect_to_another_scheme_is_refused(entry_server: LoopbackServer) -> None:
    entry_server.routes["/feed"] = redirect("file:///etc/passwd")
    with pytest.raises(OutboundError, match="not a valid"):
        _get(Outbound(ENTRY_ONLY), entry_server.url("/feed"))


# --- DNS pinning and TLS ------------------------------------------------------------


def test_the_checked_address_is_the_one_connected_to(servers: dict[str, LoopbackServer]) -> None:
    """A rebinding resolver (safe answer first, then another) is asked once per connection."""
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"] if len(asked) == 1 else ["127.0.0.9"]

    server = servers["v4"]
    guard = Outbound(Policy.parse("127.0.0.1/32"), resolver=rebinding)
    before = len(server.requests)
    assert _get(guard, f"http://feeds.rebind.test:{server.port}/") == b"the server's own secrets"
    assert asked == ["feeds.rebind.test"]
    assert server.requests[before:] == [("/", f"feeds.rebind.test:{server.port}")]


def test_only_allowed_answers_are_tried(servers: dict[str, LoopbackServer]) -> None:
    server = servers["v4"]
    guard = Outbound(
        Policy.parse("127.0.0.1/32"), resolver=lambda host, port: ["127.0.0.5", "127.0.0.1"]
    )
    assert _get(guard, f"http://mixed.test:{server.port}/") == b"the server's own secrets"


def test_a_host_name_the_operator_allows_may_resolve_anywhere(
    servers: dict[str, LoopbackServer],
) -> None:
    server = servers["v4"]
    guard = Outbound(Policy.parse("cms.intranet"), resolver=lambda host, port: ["127.0.0.1"])
    assert _get(guard, f"http://CMS.intranet.:{server.port}/") == b"the server's own secrets"
    with pytest.raises(AddressNotAllowedError):
        _get(guard, f"http://other.intranet:{server.port}/")


def test_localhost_is_resolved_once_and_keeps_its_host_header(
    servers: dict[str, LoopbackServer],
) -> None:
    server = servers["v4"]
    before = len(server.requests)
    assert _get(Outbound(LOOPBACK), f"http://localhost:{server.port}/")
    assert server.requests[before:] == [("/", f"localhost:{server.port}")]


def test_tls_is_verified_for_the_host_name_not_the_pinned_address(tmp_path: Path) -> None:
    ca, leaf, key = certificate_for("localhost", tmp_path)
    trusting = ssl.create_default_context(cafile=str(ca))
    server = LoopbackServer("127.0.0.1")
    server.use_tls(leaf, key)
    server.routes["/"] = lambda handler: send(handler, b"secure")
    server.start()
    try:
        guard = Outbound(LOOPBACK, ssl_context=trusting)
        assert _get(guard, server.url("/", host="localhost")) == b"secure"
        assert server.sni == ["localhost"]
        # The same server by its address: the certificate names localhost only.
        with pytest.raises(OutboundError, match="secure") as failed:
            _get(guard, server.url("/", host="127.0.0.1"))
        assert "CERTIFICATE" not in str(failed.value).upper()
    finally:
        server.stop()


# --- what users are told ------------------------------------------------------------


def test_a_closed_port_says_could_not_connect_and_nothing_more() -> None:
    with pytest.raises(OutboundError) as failed:
        _get(Outbound(LOOPBACK), "http://127.0.0.1:9/")
    assert str(failed.value) == "could not connect to the server"


def test_a_server_hanging_up_is_not_described_in_transport_terms(
    servers: dict[str, LoopbackServer],
) -> None:
    def hang_up(handler: object) -> None:
        handler.close_connection = True  # type: ignore[attr-defined]
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")  # type: ignore[attr-defined]

    servers["v4"].routes["/hang-up"] = hang_up
    with pytest.raises(OutboundError) as failed:
        _get(Outbound(LOOPBACK), servers["v4"].url("/hang-up"))
    assert str(failed.value) == "the server's answer was broken or cut short"


# --- the setting --------------------------------------------------------------------


def test_the_allow_list_reads_networks_addresses_and_names() -> None:
    policy = Policy.parse(" 10.1.0.0/16, ::1 ,[fd00::1], cms.intranet., ")
    assert [str(n) for n in policy.networks] == ["10.1.0.0/16", "::1/128", "fd00::1/128"]
    assert policy.hosts == frozenset({"cms.intranet"})
    assert Policy.parse("") == Policy()


@pytest.mark.parametrize("text", ["10.0.0.0/33", "not a host", "http://cms/", "*"])
def test_a_bad_allow_list_is_refused_when_settings_load(text: str) -> None:
    with pytest.raises(ValidationError, match="fetch_allowed_networks"):
        Settings(fetch_allowed_networks=text)
