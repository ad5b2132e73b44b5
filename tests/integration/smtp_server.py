"""A real SMTP server on loopback (aiosmtpd, in-process) for tests.

Reusable by any test that needs to see what was really sent: it records each
accepted message and can be told what to answer to RCPT TO or DATA for a given
recipient, once per attempt or always.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiosmtpd.controller import Controller

from tests.conftest import free_port

# A reply is an SMTP line such as "550 5.1.1 no such user". A list of replies is
# used up one per attempt (then the recipient is accepted), a string applies always.
Replies = dict[str, str | list[str]]


class SmtpTestServer:
    """aiosmtpd on 127.0.0.1 with programmable replies, counting connections by EHLO."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.rcpt_replies: Replies = {}
        self.data_replies: Replies = {}
        self.ehlo_count = 0
        # Seconds DATA takes before the reply: a slow relay, so a fault can land mid-run.
        self.data_delay = 0.0
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> SmtpTestServer:
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def recipients(self) -> list[str]:
        return [rcpt for _, rcpts, _ in self.messages for rcpt in rcpts]

    def next_reply(self, replies: Replies, address: str) -> str | None:
        """The programmed reply for this address, using up one from a list."""
        with self._lock:
            planned = replies.get(address.lower())
            if isinstance(planned, list):
                return planned.pop(0) if planned else None
            return planned


class _Handler:
    def __init__(self, server: SmtpTestServer) -> None:
        self.server = server

    async def handle_EHLO(  # noqa: N802 - aiosmtpd looks hooks up by this name
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self.server._lock:
            self.server.ehlo_count += 1
        return responses

    async def handle_RCPT(  # noqa: N802 - aiosmtpd looks hooks up by this name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.server.next_reply(self.server.rcpt_replies, address)
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd looks hooks up by this name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        if self.server.data_delay:
            await asyncio.sleep(self.server.data_delay)
        for recipient in envelope.rcpt_tos:
            reply = self.server.next_reply(self.server.data_replies, recipient)
            if reply is not None and not reply.startswith("2"):
                return reply
        with self.server._lock:
            self.server.messages.append(
                (envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 Message accepted"
