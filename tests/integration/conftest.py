"""Fixtures of the integration tests: the real SMTP server every mail goes to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.smtp_server import SmtpTestServer


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    """aiosmtpd on loopback for this test; ``smtp_server.sender()`` speaks SMTP to
    it and ``smtp_server.received()`` reads back what it accepted."""
    server = SmtpTestServer().start()
    try:
        yield server
    finally:
        # Clients first: a server stopped under an open connection leaves it to the GC.
        server.close_senders()
        server.stop()
