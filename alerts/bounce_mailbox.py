"""Reading returned mail from a mailbox (IMAP or POP3), for relays that deliver it there.

``ALERTS_BOUNCE_MAILBOX_URL`` names the mailbox: ``imaps://user:password@host/INBOX``
(``imap://`` for plain or STARTTLS-less servers on a trusted network),
``pop3s://user:password@host`` or ``pop3://...``. Each message is handed to a
callback that records it in its own transaction; only once that returns is the
message deleted (IMAP: flagged \\Deleted and expunged; POP3: DELE before QUIT).
A message whose recording fails stays in the mailbox for the next poll.
"""

from __future__ import annotations

import imaplib
import logging
import poplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from alerts.errors import UnavailableError

log = logging.getLogger(__name__)

# One poll takes at most this many messages: a flood of bounces is worked off
# over several polls instead of one long run.
MAX_MESSAGES_PER_POLL = 500
TIMEOUT_SECONDS = 30
DEFAULT_PORTS = {"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}


class MailboxError(UnavailableError):
    """The mailbox cannot be reached or read; the message says why, without secrets."""


@dataclass(frozen=True)
class Mailbox:
    scheme: str
    host: str
    port: int
    user: str
    password: str
    folder: str

    @classmethod
    def from_url(cls, url: str) -> Mailbox:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise MailboxError(f"a bounce mailbox URL starts with one of {sorted(DEFAULT_PORTS)}")
        if not parts.hostname or not parts.username:
            raise MailboxError("a bounce mailbox URL needs user@host")
        return cls(
            scheme=scheme,
            host=parts.hostname,
            port=parts.port or DEFAULT_PORTS[scheme],
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
            folder=unquote(parts.path.lstrip("/")) or "INBOX",
        )


@dataclass
class PollReport:
    taken: int = 0
    failed: int = 0
    left: int = 0


Take = Callable[[bytes], object]


def poll(mailbox: Mailbox, take: Take) -> PollReport:
    """Hand every waiting message to ``take``; delete those it took without raising."""
    try:
        if mailbox.scheme.startswith("imap"):
            return _poll_imap(mailbox, take)
        return _poll_pop3(mailbox, take)
    except (OSError, imaplib.IMAP4.error, poplib.error_proto) as error:
        raise MailboxError(f"cannot read {mailbox.scheme}://{mailbox.host}: {error}") from error


def _take_each(messages: list[tuple[str, bytes]], take: Take, report: PollReport) -> list[str]:
    """The ids of the messages recorded; a failing one is logged and left."""
    done = []
    for message_id, raw in messages:
        try:
            take(raw)
        except Exception:
            # Left in the mailbox on purpose: the next poll tries it again.
            log.exception("could not record a returned message; it stays in the mailbox")
            report.failed += 1
            continue
        done.append(message_id)
        report.taken += 1
    return done


def _poll_imap(mailbox: Mailbox, take: Take) -> PollReport:
    report = PollReport()
    if mailbox.scheme == "imaps":
        client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            mailbox.host,
            mailbox.port,
            ssl_context=ssl.create_default_context(),
            timeout=TIMEOUT_SECONDS,
        )
    else:
        client = imaplib.IMAP4(mailbox.host, mailbox.port, timeout=TIMEOUT_SECONDS)
    with client:
        client.login(mailbox.user, mailbox.password)
        status, _ = client.select(mailbox.folder)
        if status != "OK":
            raise MailboxError(f"no folder {mailbox.folder!r} in the bounce mailbox")
        _status, found = client.uid("SEARCH", "UNDELETED")
        uids = [uid.decode() for uid in found[0].split()] if found and found[0] else []
        report.left = max(len(uids) - MAX_MESSAGES_PER_POLL, 0)
        messages: list[tuple[str, bytes]] = []
        for uid in uids[:MAX_MESSAGES_PER_POLL]:
            _status, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((item[1] for item in data if isinstance(item, tuple)), None)
            if isinstance(raw, bytes):
                messages.append((uid, raw))
        for uid in _take_each(messages, take, report):
            client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
        client.expunge()
    return report


def _poll_pop3(mailbox: Mailbox, take: Take) -> PollReport:
    report = PollReport()
    if mailbox.scheme == "pop3s":
        client: poplib.POP3 = poplib.POP3_SSL(
            mailbox.host,
            mailbox.port,
            context=ssl.create_default_context(),
            timeout=TIMEOUT_SECONDS,
        )
    else:
        client = poplib.POP3(mailbox.host, mailbox.port, timeout=TIMEOUT_SECONDS)
    try:
        client.user(mailbox.user)
        client.pass_(mailbox.password)
        count, _size = client.stat()
        report.left = max(count - MAX_MESSAGES_PER_POLL, 0)
        messages: list[tuple[str, bytes]] = []
        for number in range(1, min(count, MAX_MESSAGES_PER_POLL) + 1):
            _response, lines, _octets = client.retr(number)
            messages.append((str(number), b"\r\n".join(lines) + b"\r\n"))
        for taken in _take_each(messages, take, report):
            client.dele(int(taken))
    finally:
        # QUIT commits the deletions (RFC 1939); a dropped connection deletes nothing.
        client.quit()
    return report
