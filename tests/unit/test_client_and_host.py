"""Who the client is and which hosts are ours: only what the operator configured counts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from starlette.requests import Request

from alerts.config import Settings, get_settings
from alerts.web.security import client_address, host_allowed, request_is_https


def request(peer: str, *headers: tuple[str, str]) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            "scheme": "http",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
            "client": (peer, 50000),
        }
    )


def configure(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"ALERTS_{name.upper()}", value)
    get_settings.cache_clear()


def test_forwarded_headers_count_only_from_trusted_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forged = ("X-Forwarded-For", "1.2.3.4")
    https = ("X-Forwarded-Proto", "https")
    assert client_address(request("127.0.0.1", forged)) == "127.0.0.1"  # nothing trusted
    assert not request_is_https(request("127.0.0.1", https))

    configure(monkeypatch, trusted_proxies="10.0.0.0/8, ::1")
    assert client_address(request("192.0.2.5", forged)) == "192.0.2.5"  # not our proxy
    # From our proxy: the right-most address that is not one of our proxies.
    chain = ("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.1.1.1")
    assert client_address(request("10.0.0.2", chain)) == "203.0.113.9"
    assert client_address(request("::1", forged)) == "1.2.3.4"
    assert client_address(request("10.0.0.2")) == "10.0.0.2"  # no header: the proxy itself
    assert client_address(request("10.0.0.2", ("X-Forwarded-For", "junk"))) == "unknown"
    assert request_is_https(request("10.0.0.2", https))
    assert not request_is_https(request("192.0.2.5", https))


def test_a_bad_proxy_network_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTS_TRUSTED_PROXIES", "10.0.0.0/8, not-a-network")
    with pytest.raises(ValidationError, match="not-a-network"):
        Settings()


def test_default_hosts_are_the_base_url_and_loopback() -> None:
    settings = Settings(base_url="https://news.example.org/alerts", trusted_hosts="")
    assert settings.allowed_hosts == ["news.example.org", "127.0.0.1", "localhost", "::1"]
    for host in ("news.example.org", "NEWS.example.org:443", "127.0.0.1:8000", "[::1]:8000"):
        assert host_allowed(host, settings), host
    for host in ("evil.example", "news.example.org.evil.example", "", "[::1"):
        assert not host_allowed(host, settings), host
    listed = Settings(trusted_hosts="alerts.internal, news.example.org")
    assert host_allowed("alerts.internal:8000", listed)
    assert not host_allowed("127.0.0.1", listed)
