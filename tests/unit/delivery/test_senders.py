"""Outbox and recording senders, the rate limiter, SMTP URL parsing, settings."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from alerts.config import Settings
from alerts.delivery.message import build_message, make_message_id
from alerts.delivery.senders import (
    OutboxSender,
    PermanentFailure,
    RecordingSender,
    SmtpSender,
    SmtpUrl,
    TemporaryFailure,
    TokenBucket,
    sender_from_settings,
)

SENDER = "alerts@news.example.org"


def message(key: str = "k", subject: str = "Hello") -> bytes:
    return build_message(
        sender=SENDER,
        to="reader@example.org",
        subject=subject,
        text="text\n",
        html="<p>text</p>",
        message_id=make_message_id("news.example.org", key),
        date=datetime(2024, 5, 3, 7, 0, tzinfo=UTC),
        list_id="alerts.news.example.org",
        unsubscribe_url="https://news.example.org/u",
        unsubscribe_mailto=None,
    )


def test_outbox_writes_whole_files_once_per_message_id(tmp_path: Path) -> None:
    outbox = OutboxSender(tmp_path / "outbox")
    outbox.send(SENDER, "reader@example.org", message("a", subject="first"))
    outbox.send(SENDER, "reader@example.org", message("a", subject="retried"))
    outbox.send(SENDER, "reader@example.org", message("b"))

    files = sorted((tmp_path / "outbox").iterdir())
    assert len(files) == 2
    assert all(
        path.suffix == ".eml" and path.name.startswith("20240503T070000Z-") for path in files
    )
    subjects = {
        str(BytesParser(policy=policy.default).parsebytes(path.read_bytes())["Subject"])
        for path in files
    }
    assert subjects == {"retried", "Hello"}


def test_outbox_refuses_a_message_without_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Message-ID"):
        OutboxSender(tmp_path).send(SENDER, "reader@example.org", b"Subject: x\r\n\r\nbody\r\n")


def test_recording_sender_records_and_fails_on_request() -> None:
    sender = RecordingSender()
    sender.fail("gone@example.org", 550, "no such user")
    sender.fail("busy@example.org", 451, times=1)

    sender.send(SENDER, "reader@example.org", b"m1")
    with pytest.raises(PermanentFailure) as permanent:
        sender.send(SENDER, "gone@example.org", b"m2")
    assert (permanent.value.code, permanent.value.reason) == (550, "no such user")
    with pytest.raises(TemporaryFailure):
        sender.send(SENDER, "busy@example.org", b"m3")
    sender.send(SENDER, "busy@example.org", b"m3")

    assert [sent.recipient for sent in sender.sent] == ["reader@example.org", "busy@example.org"]


def test_invalid_recipient_is_a_permanent_failure() -> None:
    with pytest.raises(PermanentFailure) as failure:
        RecordingSender().send(SENDER, "reader@example.org\r\nRCPT TO:<x@y.z>", b"m")
    assert failure.value.stage == "address"


def test_token_bucket_spaces_out_takes() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(2.0, capacity=1, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        bucket.take()
    assert sum(slept) == pytest.approx(2.0)  # the first is free, four more at 2 a second
    assert len(slept) == 4


def test_smtp_url_forms() -> None:
    plain = SmtpUrl.parse("smtp://relay.example:2525")
    assert (plain.host, plain.port, plain.starttls, plain.implicit_tls) == (
        "relay.example",
        2525,
        False,
        False,
    )
    auth = SmtpUrl.parse("smtp://us%40er:p%3Ass@relay.example:587?starttls=1")
    assert (auth.username, auth.password, auth.starttls) == ("us@er", "p:ss", True)
    tls = SmtpUrl.parse("smtps://relay.example")
    assert (tls.port, tls.implicit_tls) == (465, True)
    with pytest.raises(ValueError, match="smtp://"):
        SmtpUrl.parse("http://relay.example")


def test_sender_from_settings(tmp_path: Path) -> None:
    outbox = sender_from_settings(Settings(outbox_dir=tmp_path / "out"))
    assert isinstance(outbox, OutboxSender)
    assert outbox.folder == (tmp_path / "out").resolve()
    smtp = sender_from_settings(Settings(smtp_url="smtp://127.0.0.1:2525"))
    assert isinstance(smtp, SmtpSender)
    smtp.close()
