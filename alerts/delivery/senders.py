"""Mail senders: the one interface delivery code talks to, and its implementations.

The contract (``Sender``) is what keeps the delivery promises honest: ``send``
returns only when the server took the message; otherwise it raises
``TemporaryFailure`` (4xx, dropped or refused connections, timeouts: retry
with back-off) or ``PermanentFailure`` (5xx: record it, never retry blindly).
Each failure carries the SMTP code (0 when there was none, e.g. a refused
connection) and the ``stage`` it happened at, so callers can tell a refused
recipient (stage ``rcpt``) from a relay that refuses us (stage ``mail``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import smtplib
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from alerts.delivery.message import InvalidAddressError, validate_address
from alerts.errors import AlertsError

if TYPE_CHECKING:
    from alerts.config import Settings

NO_SMTP_CODE = 0  # the failure happened below SMTP: connect, TLS, timeout
INVALID_ADDRESS_CODE = 553  # what a server answers to a malformed mailbox
SMTP_PORT = 25
SMTPS_PORT = 465
SMTP_OK = 250
SMTP_FORWARDED = 251
ACCEPTED = frozenset({SMTP_OK, SMTP_FORWARDED})
SERVICE_CLOSING = 421  # the server is about to drop the connection
TRUTHY = frozenset({"1", "true", "yes", "on"})
OUTBOX_SUFFIX = ".eml"
OUTBOX_NAME_HASH_CHARS = 24


class DeliveryFailure(AlertsError):  # noqa: N818 - Temporary/PermanentFailure are the API
    """A message the server did not take."""

    def __init__(self, code: int, reason: str, *, stage: str = "", recipient: str = "") -> None:
        super().__init__(f"{code} {reason}" + (f" (at {stage})" if stage else ""))
        self.code = code
        self.reason = reason
        self.stage = stage
        self.recipient = recipient


class TemporaryFailure(DeliveryFailure):
    """Try again later (4xx, connection trouble)."""


class PermanentFailure(DeliveryFailure):
    """Do not try again as is (5xx)."""


class Sender(Protocol):
    def send(self, envelope_from: str, recipient: str, message: bytes) -> None:
        """Hand one message for one recipient to the mail system, or raise a failure."""

    def close(self) -> None:
        """Release connections; the sender is not used afterwards."""


def _failure(code: int, reason: str | bytes, *, stage: str, recipient: str) -> DeliveryFailure:
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else reason
    kind = PermanentFailure if 500 <= code < 600 else TemporaryFailure
    return kind(code, text, stage=stage, recipient=recipient)


def _checked_envelope(envelope_from: str, recipient: str) -> tuple[str, str]:
    try:
        sender_address = validate_address(envelope_from)
    except InvalidAddressError as error:
        # Our own address is wrong: a configuration problem, not the recipient's.
        raise TemporaryFailure(NO_SMTP_CODE, str(error), stage="address") from error
    try:
        return sender_address, validate_address(recipient)
    except InvalidAddressError as error:
        raise PermanentFailure(
            INVALID_ADDRESS_CODE, str(error), stage="address", recipient=recipient
        ) from error


class TokenBucket:
    """At most ``rate`` takes a second on average, bursts up to ``capacity``."""

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def take(self) -> None:
        """Wait until a token is free and take it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            # Going into debt reserves this caller's slot, so concurrent callers queue
            # up fairly instead of all waking at once.
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


@dataclass(frozen=True)
class SmtpUrl:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpUrl:
        """``smtp://[user:pass@]host[:port][?starttls=1]`` or ``smtps://...``."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"SMTP URL must be smtp://host:port or smtps://host:port: {url!r}")
        query = parse_qs(parts.query)
        starttls = query.get("starttls", ["0"])[-1].lower() in TRUTHY
        implicit_tls = parts.scheme == "smtps"
        if implicit_tls and starttls:
            raise ValueError("smtps:// is TLS already; starttls=1 is for smtp://")
        return cls(
            host=parts.hostname,
            port=parts.port or (SMTPS_PORT if implicit_tls else SMTP_PORT),
            implicit_tls=implicit_tls,
            starttls=starttls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class SmtpSender:
    """SMTP through a small pool of persistent, thread-safe connections.

    Opening a connection (TCP, EHLO, maybe TLS and AUTH) costs more than sending
    a message, so connections stay open and are reused; one found dropped is
    replaced once before the send counts as a temporary failure. ``pool_size``
    caps concurrent connections; ``rate_per_second`` caps this instance's sends.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        rate_per_second: float | None = None,
        timeout: float = 30,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.url = SmtpUrl.parse(url)
        self.timeout = timeout
        self.bucket = TokenBucket(rate_per_second) if rate_per_second else None
        self._slots = threading.BoundedSemaphore(pool_size)
        self._idle: list[smtplib.SMTP] = []
        self._lock = threading.Lock()
        self._closed = False
        self.connections_opened = 0

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        connection: smtplib.SMTP
        if self.url.implicit_tls:
            connection = smtplib.SMTP_SSL(
                self.url.host, self.url.port, timeout=self.timeout, context=context
            )
        else:
            connection = smtplib.SMTP(self.url.host, self.url.port, timeout=self.timeout)
        try:
            connection.ehlo()
            if self.url.starttls:
                connection.starttls(context=context)
                connection.ehlo()
            if self.url.username is not None:
                connection.login(self.url.username, self.url.password or "")
        except BaseException:
            _drop(connection)
            raise
        with self._lock:
            self.connections_opened += 1
        return connection

    def _take_idle(self) -> smtplib.SMTP | None:
        with self._lock:
            if self._closed:
                raise RuntimeError("SmtpSender is closed")
            return self._idle.pop() if self._idle else None

    def _release(self, connection: smtplib.SMTP, *, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed:
                self._idle.append(connection)
                return
        _drop(connection)

    def send(self, envelope_from: str, recipient: str, message: bytes) -> None:
        envelope_from, recipient = _checked_envelope(envelope_from, recipient)
        with self._slots:
            if self.bucket is not None:
                self.bucket.take()
            try:
                self._send_once(envelope_from, recipient, message, fresh=False)
            except _DroppedBeforeDataError:
                # The server had closed the connection (idle timeout, restart) before it
                # could take anything, so one try on a fresh connection sends nothing twice.
                try:
                    self._send_once(envelope_from, recipient, message, fresh=True)
                except _DroppedBeforeDataError as error:
                    raise TemporaryFailure(
                        NO_SMTP_CODE,
                        f"connection dropped: {error}",
                        stage="connect",
                        recipient=recipient,
                    ) from error

    def _send_once(
        self, envelope_from: str, recipient: str, message: bytes, *, fresh: bool
    ) -> None:
        stage = "connect"
        healthy = False
        connection = None if fresh else self._take_idle()
        try:
            if connection is None:
                connection = self._connect()
            steps = (
                ("mail", connection.mail, (envelope_from,)),
                ("rcpt", connection.rcpt, (recipient,)),
                ("data", connection.data, (message,)),
            )
            for stage, step, arguments in steps:
                code, reply = step(*arguments)
                if code not in ACCEPTED:
                    healthy = _reset(connection, code)
                    raise _failure(code, reply, stage=stage, recipient=recipient)
            healthy = True
        except smtplib.SMTPServerDisconnected as error:
            if stage in ("connect", "mail"):
                raise _DroppedBeforeDataError(str(error)) from error
            # Dropped after RCPT or during DATA: the server may or may not have the
            # message; a later retry is the lesser evil than losing it.
            raise TemporaryFailure(
                NO_SMTP_CODE, f"connection dropped: {error}", stage=stage, recipient=recipient
            ) from error
        except smtplib.SMTPResponseException as error:
            # Raised by smtplib itself: greeting/EHLO/STARTTLS/AUTH replies, or DATA not 354.
            failure = _failure(error.smtp_code, error.smtp_error, stage=stage, recipient=recipient)
            if stage == "connect":
                # A relay refusing us (AUTH, TLS) says nothing about the recipient.
                raise TemporaryFailure(
                    failure.code, failure.reason, stage=stage, recipient=recipient
                ) from error
            raise failure from error
        except (OSError, smtplib.SMTPException) as error:
            raise TemporaryFailure(
                NO_SMTP_CODE, f"{type(error).__name__}: {error}", stage=stage, recipient=recipient
            ) from error
        finally:
            if connection is not None:
                self._release(connection, healthy=healthy)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                connection.quit()
            _drop(connection)


class _DroppedBeforeDataError(Exception):
    """The connection died before the server could have taken the message."""


def _drop(connection: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        connection.close()


def _reset(connection: smtplib.SMTP, code: int) -> bool:
    """After a refused step, RSET so the connection can carry the next message.

    Returns whether the connection is still fit for reuse: not after a 421
    (the server is closing it) nor after an RSET that fails.
    """
    if code == SERVICE_CLOSING:
        return False
    try:
        rset_code, _ = connection.rset()
    except (OSError, smtplib.SMTPException):
        return False
    return bool(rset_code == SMTP_OK)


class OutboxSender:
    """Writes each message as ``<folder>/<timestamp>-<hash of Message-ID>.eml``.

    The embedded default: nothing is sent, the web app shows the folder. Files
    appear whole (written aside, then renamed), and the name depends only on
    the message's Date and Message-ID headers, so a retried send of the same
    message overwrites its file instead of adding a second one.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, envelope_from: str, recipient: str, message: bytes) -> None:
        _checked_envelope(envelope_from, recipient)
        headers = BytesHeaderParser(policy=compat32).parsebytes(message)
        message_id = headers.get("Message-ID")
        if not message_id:
            raise ValueError("every message needs a Message-ID")
        date = _header_date(headers.get("Date"))
        digest = hashlib.sha256(message_id.strip().encode()).hexdigest()
        name = f"{date:%Y%m%dT%H%M%SZ}-{digest[:OUTBOX_NAME_HASH_CHARS]}{OUTBOX_SUFFIX}"
        self.folder.mkdir(parents=True, exist_ok=True)
        draft = self.folder / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            draft.write_bytes(message)
            os.replace(draft, self.folder / name)
        except OSError as error:
            draft.unlink(missing_ok=True)
            raise TemporaryFailure(NO_SMTP_CODE, f"outbox write failed: {error}") from error

    def close(self) -> None:
        """Nothing to release."""


def _header_date(value: str | None) -> datetime:
    if value:
        with contextlib.suppress(TypeError, ValueError):
            parsed = parsedate_to_datetime(value)
            if parsed.tzinfo is not None:
                return parsed.astimezone(UTC)
    return datetime.now(UTC)


class SentMessage(NamedTuple):
    envelope_from: str
    recipient: str
    message: bytes


class RecordingSender:
    """Keeps what it is given in ``sent``. For unit tests only: it proves nothing
    about SMTP, which the integration tests check against a real server.

    ``fail(recipient, code)`` makes sends to that recipient raise the failure
    an SMTP server with that reply would cause, ``times`` times (or always).
    """

    def __init__(self) -> None:
        self.sent: list[SentMessage] = []
        self.closed = False
        self._failures: dict[str, tuple[int, str, int | None]] = {}
        self._lock = threading.Lock()

    def fail(
        self, recipient: str, code: int, reason: str = "refused", *, times: int | None = None
    ) -> None:
        self._failures[recipient.lower()] = (code, reason, times)

    def send(self, envelope_from: str, recipient: str, message: bytes) -> None:
        _checked_envelope(envelope_from, recipient)
        with self._lock:
            planned = self._failures.get(recipient.lower())
            if planned is not None:
                code, reason, times = planned
                if times is None or times > 0:
                    if times is not None:
                        self._failures[recipient.lower()] = (code, reason, times - 1)
                    raise _failure(code, reason, stage="rcpt", recipient=recipient)
            self.sent.append(SentMessage(envelope_from, recipient, message))

    def close(self) -> None:
        self.closed = True


def sender_from_settings(settings: Settings) -> Sender:
    """SMTP when ``smtp_url`` is set, else the outbox folder."""
    if settings.smtp_url:
        return SmtpSender(
            settings.smtp_url,
            pool_size=settings.smtp_pool_size,
            rate_per_second=settings.smtp_rate_per_second,
            timeout=settings.smtp_timeout_seconds,
        )
    return OutboxSender(settings.resolved_outbox_dir)
