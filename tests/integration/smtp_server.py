"""A real SMTP server on loopback (aiosmtpd, in-process) for tests.

Reusable by any test that needs to see what was really sent: it records each
accepted message and can be told what to answer to RCPT TO or DATA for a given
recipient, once per attempt or always. The ``smtp_server`` fixture in
tests/integration/conftest.py starts one per test.
"""

from __future__ import annotations

import asyncio
import threading
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, TypeVar

from aiosmtpd.controller import Controller

from alerts.delivery.senders import SmtpSender
from tests.conftest import free_port

AnySmtpSender = TypeVar("AnySmtpSender", bound=SmtpSender)
# Tests send one message at a time; a short timeout makes a hung server fail fast.
TEST_SENDER_TIMEOUT_SECONDS = 5

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
        self._senders: list[SmtpSender] = []

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

    def received(self, to: str | None = None) -> list[EmailMessage]:
        """The accepted messages as parsed mail, in arrival order; only those
        whose envelope names ``to`` when it is given."""
        parser = BytesParser(policy=policy.default)
        parsed = [
            parser.parsebytes(data)
            for _, rcpts, data in self.messages
            if to is None or to.lower() in (rcpt.lower() for rcpt in rcpts)
        ]
        return [message for message in parsed if isinstance(message, EmailMessage)]

    def sender(self) -> SmtpSender:
        """A real SMTP client for this server, closed when the fixture ends."""
        return self.adopt(SmtpSender(self.url, pool_size=1, timeout=TEST_SENDER_TIMEOUT_SECONDS))

    def adopt(self, sender: AnySmtpSender) -> AnySmtpSender:
        """Close ``sender`` (a test's own subclass, say) with the others at the end."""
        self._senders.append(sender)
        return sender

    def close_senders(self) -> None:
        """Close every sender handed out, so no socket is left to the garbage collector."""
        senders, self._senders = self._senders, []
        for sender in senders:
            sender.close()

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
