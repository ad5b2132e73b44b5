"""`alerts bounces poll` against a real Dovecot: returned mail is recorded, then deleted;
what cannot be recorded stays for the next poll. IMAP and POP3 alike."""

from __future__ import annotations

import imaplib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from alerts.bounce_mailbox import Mailbox, MailboxError, poll
from alerts.cli import main as cli_main
from alerts.config import get_settings
from alerts.db import Database
from alerts.delivery.verp import verp_address
from alerts.models import Subscriber, SubscriberStatus
from tests.conftest import free_port, service_missing, wait_until
from tests.factories import reader_with_a_sent_digest
from tests.unit.test_bounces import OUT_OF_OFFICE, dsn

DOVECOT = "/usr/sbin/dovecot"
USER = "bounces@news.example.org"
PASSWORD = "mailbox-secret"
SECRET = "test-secret"


@dataclass
class Dovecot:
    imap_port: int
    pop3_port: int

    def url(self, scheme: str) -> str:
        port = self.imap_port if scheme == "imap" else self.pop3_port
        return f"{scheme}://{USER.replace('@', '%40')}:{PASSWORD}@127.0.0.1:{port}/INBOX"

    def deliver(self, *messages: bytes) -> None:
        with imaplib.IMAP4("127.0.0.1", self.imap_port) as client:
            client.login(USER, PASSWORD)
            for message in messages:
                client.append("INBOX", None, None, message)

    def waiting(self) -> int:
        with imaplib.IMAP4("127.0.0.1", self.imap_port) as client:
            client.login(USER, PASSWORD)
            _status, count = client.select("INBOX")
            return int(count[0] or 0)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A private Dovecot on free loopback ports, with one mailbox, gone afterwards."""
    if not os.path.exists(DOVECOT):
        service_missing(f"Dovecot at {DOVECOT} (Debian: dovecot-imapd dovecot-pop3d)")
    # Dovecot's own users (dovenull, nobody) must reach the folder: not pytest's 0700 tmp.
    root = Path(tempfile.mkdtemp(prefix="alerts-dovecot-"))
    root.chmod(0o755)
    (root / "run").mkdir()
    (root / "home").mkdir()
    shutil.chown(root / "home", "nobody", "nogroup")
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    ports = Dovecot(free_port(), free_port())
    config = root / "dovecot.conf"
    config.write_text(
        f"""protocols = imap pop3
listen = 127.0.0.1
base_dir = {root}/run
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/home/%u
}}
mail_location = maildir:~/Maildir
first_valid_uid = 1
service imap-login {{
  inet_listener imap {{
    port = {ports.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {ports.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""
    )
    subprocess.run([DOVECOT, "-c", str(config)], check=True, timeout=30)

    def answers() -> bool:
        try:
            ports.waiting()
        except OSError:
            return False
        return True

    try:
        wait_until(answers, 30, "Dovecot")
        yield ports
    finally:
        pid = int((root / "run" / "master.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("scheme", ["imap", "pop3"])
def test_returned_mail_is_recorded_then_deleted(
    database: Database,
    dovecot: Dovecot,
    scheme: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ALERTS_SECRET_KEY", SECRET)
    monkeypatch.setenv("ALERTS_BOUNCE_MAILBOX_URL", dovecot.url(scheme))
    get_settings.cache_clear()
    reader, delivery = reader_with_a_sent_digest(database, "gone@reader.example")
    verp = verp_address("bounces", "news.example.org", delivery, SECRET)
    dovecot.deliver(dsn("failed", "5.1.1", verp=verp), OUT_OF_OFFICE)
    assert cli_main(["bounces", "poll"]) == 0
    assert "recorded 2, failed 0" in capsys.readouterr().out
    assert dovecot.waiting() == 0
    with database.session_scope() as session:
        status = session.scalar(select(Subscriber.status).where(Subscriber.id == reader))
    assert status is SubscriberStatus.BOUNCED


def test_a_message_that_cannot_be_recorded_stays_in_the_mailbox(dovecot: Dovecot) -> None:
    dovecot.deliver(b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\nsecond\r\n")
    seen: list[bytes] = []

    def take(raw: bytes) -> None:
        seen.append(raw)
        if b"second" in raw:
            raise RuntimeError("the database went away")

    report = poll(Mailbox.from_url(dovecot.url("imap")), take)
    assert (report.taken, report.failed) == (1, 1)
    assert dovecot.waiting() == 1
    assert len(seen) == 2


def test_wrong_credentials_and_bad_urls_are_clear_errors(dovecot: Dovecot) -> None:
    wrong = dovecot.url("imap").replace(PASSWORD, "guess")
    with pytest.raises(MailboxError, match=r"cannot read imap://127\.0\.0\.1"):
        poll(Mailbox.from_url(wrong), lambda raw: None)
    with pytest.raises(MailboxError, match="starts with one of"):
        Mailbox.from_url("http://example.org/inbox")
    with pytest.raises(MailboxError, match="user@host"):
        Mailbox.from_url("imap://127.0.0.1/INBOX")
