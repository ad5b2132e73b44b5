"""Returned mail is classified by kind, recipient, status and delivery.

The messages are written here in the shapes MTAs and providers send (an
RFC 3464 DSN as Postfix writes it, Exim's X-Failed-Recipients prose, qmail's
QSBMF, an RFC 5965 complaint, an RFC 3834 out-of-office), with our own addresses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alerts.bounces import classify
from alerts.cli import main as cli_main
from alerts.config import get_settings
from alerts.delivery.verp import delivery_from_address, verp_address

SECRET = "test-secret"
BOUNCE_DOMAIN = "news.example.org"
VERP = verp_address("bounces", BOUNCE_DOMAIN, 4711, SECRET)


def dsn(
    action: str, status: str, recipient: str = "gone@reader.example", verp: str = VERP
) -> bytes:
    return f"""\
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {verp}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain

This is the mail system at host mx.example.net. Your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Thu,  3 Dec 2026 10:00:00 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 {status} mailbox unavailable

--B1
Content-Type: text/rfc822-headers

Return-Path: <{verp}>
From: Alerts <alerts@{BOUNCE_DOMAIN}>
To: {recipient}
Subject: Your daily digest

--B1--
""".encode()


EXIM = f"""\
From: Mail Delivery System <Mailer-Daemon@relay.example.net>
To: {VERP}
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: nobody@reader.example
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  nobody@reader.example
    host mx.reader.example [192.0.2.1]
    SMTP error from remote mail server after RCPT TO:<nobody@reader.example>:
    550 5.1.1 No such user here
""".encode()

QMAIL = b"""\
From: MAILER-DAEMON@old.example.net
To: bounces@news.example.org
Subject: failure notice

Hi. This is the qmail-send program at old.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<former@old.example.net>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.
"""


def arf(with_recipient: bool) -> bytes:
    rcpt = "Original-Rcpt-To: angry@reader.example\n" if with_recipient else ""
    return f"""\
From: feedback@isp.example
To: {VERP}
Subject: Complaint about a message
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F1"

--F1
Content-Type: text/plain

A reader of ours marked this message as spam.

--F1
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
{rcpt}
--F1
Content-Type: message/rfc822

From: Alerts <alerts@{BOUNCE_DOMAIN}>
To: Angry Reader <angry@reader.example>
Subject: Your daily digest

The stories of the day.
--F1--
""".encode()


OUT_OF_OFFICE = f"""\
From: Busy Reader <busy@reader.example>
To: {VERP}
Subject: Automatic reply: Your daily digest
Auto-Submitted: auto-replied

I am away until Monday.
""".encode()

UNSUBSCRIBE = f"""\
From: Leaving Reader <Leaving@Reader.example>
To: {verp_address("unsubscribe", BOUNCE_DOMAIN, 99, SECRET)}
Subject: unsubscribe

""".encode()

PLAIN = b"""\
From: someone@reader.example
To: alerts@news.example.org
Subject: Thanks for the story

Nice work.
"""


# Shapes no flufl.bounce detector knows: a carrier's notice in Japanese and
# English, and a filter's notice that quotes the refused RCPT TO.
CARRIER = """\
From: Postmaster@mobile.example.jp
To: bounces@news.example.org
Subject: Mail System Error - Returned Mail
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"

次のあて先へのメッセージはエラーのため送信できませんでした。

Each of the following recipients was rejected by a remote mail server.

    Recipient: <gone@mobile.example.jp>
    >>> RCPT TO:<gone@mobile.example.jp>
    <<< 550 <gone@mobile.example.jp>: User unknown
""".encode()

FILTER = b"""\
From: post_master@filter.example.net
To: bounces@news.example.org
Subject: Re: Your daily digest
MIME-Version: 1.0
Content-Type: text/plain

Error: Invalid user address
450 - Requested action not taken: mailbox busy, try again later

Message details:
  MAIL FROM: bounces@news.example.org
  RCPT TO: later@filter.example.net
  From: alerts@news.example.org
"""

# Amazon SES: every failure is "Status: 5.0.0"; the Diagnostic-Code says more.
SES_FULL = dsn("failed", "5.0.0").replace(
    b"550 5.0.0 mailbox unavailable", b"5.1.0 - Unknown address error 550-'5.2.2 Mailbox Full'"
)
SES_EXPIRED = dsn("failed", "5.0.0").replace(
    b"550 5.0.0 mailbox unavailable", b"5.4.7 - Delivery expired (message too old) 'timeout'"
)

# DragonFly Mail Agent: no DSN, the failed recipient also in X-Original-To.
DRAGONFLY = b"""\
X-Original-To: <moved@reader.example>
From: MAILER-DAEMON <>
To: bounces@news.example.org
Subject: Mail delivery failed

There was an error delivering your mail to <moved@reader.example>.

mx.reader.example [192.0.2.1] did not like our RCPT TO:
550 5.1.6 Recipient has moved

Message headers follow.

Message-Id: <abc.123@news.example.org>
From: <alerts@news.example.org>
To: <moved@reader.example>
"""


@pytest.mark.parametrize(
    ("raw", "kind", "recipients", "status", "delivery"),
    [
        (dsn("failed", "5.1.1"), "hard", ["gone@reader.example"], "5.1.1", 4711),
        (dsn("delayed", "4.4.1"), "soft", ["gone@reader.example"], "4.4.1", 4711),
        (dsn("failed", "4.2.2"), "soft", ["gone@reader.example"], "4.2.2", 4711),
        (dsn("failed", "5.2.2"), "soft", ["gone@reader.example"], "5.2.2", 4711),
        (EXIM, "hard", ["nobody@reader.example"], "5.1.1", 4711),
        (QMAIL, "hard", ["former@old.example.net"], "5.1.1", None),
        (arf(with_recipient=True), "complaint", ["angry@reader.example"], None, 4711),
        (arf(with_recipient=False), "complaint", ["angry@reader.example"], None, 4711),
        (OUT_OF_OFFICE, "auto-reply", ["busy@reader.example"], None, 4711),
        (UNSUBSCRIBE, "unsubscribe", ["leaving@reader.example"], None, 99),
        (PLAIN, "not-a-bounce", [], None, None),
        (CARRIER, "hard", ["gone@mobile.example.jp"], None, None),
        (FILTER, "soft", ["later@filter.example.net"], None, None),
        (SES_FULL, "soft", ["gone@reader.example"], "5.1.0", 4711),
        (SES_EXPIRED, "soft", ["gone@reader.example"], "5.4.7", 4711),
        (DRAGONFLY, "hard", ["moved@reader.example"], "5.1.6", None),
    ],
)
def test_each_kind_of_returned_mail_is_told_apart(
    raw: bytes, kind: str, recipients: list[str], status: str | None, delivery: int | None
) -> None:
    report = classify(raw, SECRET, bounce_domain=BOUNCE_DOMAIN)
    assert (report.kind, report.recipients, report.status, report.delivery) == (
        kind,
        recipients,
        status,
        delivery,
    )


def test_a_complaint_names_every_recipient_it_reports() -> None:
    two = arf(with_recipient=True).replace(
        b"Original-Rcpt-To: angry@reader.example\n",
        b"Original-Rcpt-To: angry@reader.example\nOriginal-Rcpt-To: cross@reader.example\n",
    )
    report = classify(two, SECRET)
    assert (report.kind, report.recipients) == (
        "complaint",
        ["angry@reader.example", "cross@reader.example"],
    )


def test_a_notice_of_a_delivery_that_timed_out_is_soft() -> None:
    timed_out = EXIM.replace(b"550 5.1.1 No such user here", b"retry timeout exceeded")
    report = classify(timed_out, SECRET)
    assert (report.kind, report.recipients) == ("soft", ["nobody@reader.example"])


def test_an_outlook_com_complaint_names_its_reader() -> None:
    jmrp = f"""\
From: staff@hotmail.com
To: {VERP}
Subject: complaint about message from 192.0.2.1
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="J1"

--J1
Content-Type: message/rfc822

X-HmXmrOriginalRecipient: annoyed@hotmail.example
From: Alerts <alerts@{BOUNCE_DOMAIN}>
To: annoyed@hotmail.example
Subject: Your daily digest

The stories of the day.
--J1--
""".encode()
    report = classify(jmrp, SECRET)
    assert (report.kind, report.recipients, report.delivery) == (
        "complaint",
        ["annoyed@hotmail.example"],
        4711,
    )


def test_a_dmarc_failure_report_is_no_complaint() -> None:
    forensic = arf(with_recipient=True).replace(
        b"Feedback-Type: abuse", b"Feedback-Type: auth-failure\nAuth-Failure: dmarc"
    )
    assert classify(forensic, SECRET).kind == "not-a-bounce"


def test_a_notice_from_a_person_or_an_out_of_office_is_not_read_as_a_failure() -> None:
    away = CARRIER.replace(b"From: Postmaster@mobile.example.jp", b"From: friend@reader.example")
    away = away.replace(b"Mail System Error - Returned Mail", b"Lunch on Friday?")
    assert classify(away, SECRET).kind == "not-a-bounce"
    assert classify(OUT_OF_OFFICE, SECRET).kind == "auto-reply"


def test_a_verp_address_names_its_delivery_and_fits_a_local_part() -> None:
    address = verp_address("bounces", BOUNCE_DOMAIN, 10**12, SECRET)
    assert len(address.partition("@")[0]) <= 64
    assert address == address.lower()
    assert delivery_from_address(address, SECRET) == 10**12
    assert delivery_from_address(address.upper(), SECRET) == 10**12


def test_a_forged_or_foreign_token_names_no_delivery() -> None:
    token, _, domain = VERP.partition("+")[2].partition("@")
    delivery, _, mac = token.partition("-")
    forged = f"bounces+{delivery}1-{mac}@{domain}"  # another delivery, the same MAC
    assert delivery_from_address(forged, SECRET) is None
    assert delivery_from_address(VERP, "another-secret") is None
    assert delivery_from_address("bounces@news.example.org", SECRET) is None
    report = classify(dsn("failed", "5.1.1", verp=forged), SECRET)
    assert (report.kind, report.delivery) == ("hard", None)


def test_a_bounce_of_our_own_bounce_address_suppresses_no_reader() -> None:
    looped = dsn("failed", "5.1.1", recipient=f"bounces@{BOUNCE_DOMAIN}")
    report = classify(looped, SECRET, bounce_domain=BOUNCE_DOMAIN)
    assert report.kind == "hard"
    assert report.recipients == []


def test_a_report_without_recipients_and_garbage_are_not_bounces() -> None:
    no_recipient = (
        dsn("failed", "5.1.1")
        .replace(b"Final-Recipient", b"X-Nothing")
        .replace(b"Original-Recipient", b"X-Nothing-Else")
    )
    report = classify(no_recipient, SECRET)
    assert (report.kind, report.recipients, report.delivery) == ("hard", [], 4711)
    assert classify(b"\x00\xff not a message at all", SECRET).kind == "not-a-bounce"
    assert classify(b"", SECRET).kind == "not-a-bounce"


def test_a_huge_message_is_read_only_as_far_as_the_report(tmp_path: Path) -> None:
    huge = dsn("failed", "5.1.1") + b"x" * (20 * 1024 * 1024)
    report = classify(huge, SECRET)
    assert (report.kind, report.recipients) == ("hard", ["gone@reader.example"])


def test_the_cli_prints_one_object_per_file_and_exits_1_only_for_unreadable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_SECRET_KEY", SECRET)
    monkeypatch.setenv("ALERTS_BOUNCE_DOMAIN", BOUNCE_DOMAIN)
    get_settings.cache_clear()
    hard = tmp_path / "hard.eml"
    hard.write_bytes(dsn("failed", "5.1.1"))
    plain = tmp_path / "plain.eml"
    plain.write_bytes(PLAIN)
    assert cli_main(["bounces", "parse", str(hard), str(plain), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {
            "file": str(hard),
            "kind": "hard",
            "recipients": ["gone@reader.example"],
            "status": "5.1.1",
            "delivery": 4711,
        },
        {
            "file": str(plain),
            "kind": "not-a-bounce",
            "recipients": [],
            "status": None,
            "delivery": None,
        },
    ]
    assert cli_main(["bounces", "parse", str(tmp_path / "missing.eml"), str(hard)]) == 1
    captured = capsys.readouterr()
    assert "cannot read" in captured.err
    assert "hard 5.1.1: gone@reader.example (delivery 4711)" in captured.out
