"""SmtpSender against a real SMTP server on loopback (aiosmtpd, in-process)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

import pytest

from alerts.delivery.message import build_message, make_message_id
from alerts.delivery.senders import PermanentFailure, SmtpSender, TemporaryFailure
from tests.conftest import free_port
from tests.integration.smtp_server import SmtpTestServer

pytestmark = pytest.mark.integration

SENDER = "alerts@news.example.org"


@pytest.fixture
def sender(smtp_server: SmtpTestServer) -> Iterator[SmtpSender]:
    sender = SmtpSender(smtp_server.url, pool_size=2, timeout=5)
    yield sender
    sender.close()


def message_for(recipient: str, key: str = "k") -> bytes:
    return build_message(
        sender=f"Новости Кавказа <{SENDER}>",
        to=recipient,
        subject="Grüße aus Tbilisi 🇬🇪",
        text="Привет! Schöne Grüße.\n",
        html="<p>Привет! Schöne Grüße.</p>",
        message_id=make_message_id("news.example.org", f"{key}:{recipient}"),
        date=datetime(2024, 5, 3, 7, 0, tzinfo=UTC),
        list_id="alerts.news.example.org",
        unsubscribe_url="https://news.example.org/unsubscribe/t",
        unsubscribe_mailto=None,
    )


def test_messages_arrive_intact_over_one_reused_connection(
    smtp_server: SmtpTestServer, sender: SmtpSender
) -> None:
    recipients = [f"reader{number}@example.org" for number in range(5)]
    for recipient in recipients:
        sender.send(SENDER, recipient, message_for(recipient))

    assert smtp_server.recipients() == recipients
    assert smtp_server.ehlo_count == 1
    assert sender.connections_opened == 1
    mail_from, _, data = smtp_server.messages[0]
    assert mail_from == SENDER
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert not parsed.defects
    assert parsed["Subject"] == "Grüße aus Tbilisi 🇬🇪"
    text_part = parsed.get_body(preferencelist=("plain",))
    assert text_part is not None
    # On the wire every line ends in CRLF; the parser keeps them.
    assert text_part.get_content().replace("\r\n", "\n") == "Привет! Schöne Grüße.\n"


def test_temporary_failure_then_success_on_retry(
    smtp_server: SmtpTestServer, sender: SmtpSender
) -> None:
    smtp_server.data_replies["reader@example.org"] = ["451 4.3.0 try again later"]

    with pytest.raises(TemporaryFailure) as failure:
        sender.send(SENDER, "reader@example.org", message_for("reader@example.org"))
    assert failure.value.code == 451
    assert failure.value.stage == "data"
    assert smtp_server.messages == []

    sender.send(SENDER, "reader@example.org", message_for("reader@example.org"))
    assert smtp_server.recipients() == ["reader@example.org"]
    assert sender.connections_opened == 1  # RSET kept the connection usable


def test_421_drops_the_connection_and_is_temporary(
    smtp_server: SmtpTestServer, sender: SmtpSender
) -> None:
    smtp_server.rcpt_replies["reader@example.org"] = ["421 4.3.2 shutting down"]

    with pytest.raises(TemporaryFailure) as failure:
        sender.send(SENDER, "reader@example.org", message_for("reader@example.org"))
    assert failure.value.code == 421

    sender.send(SENDER, "reader@example.org", message_for("reader@example.org"))
    assert smtp_server.recipients() == ["reader@example.org"]
    assert sender.connections_opened == 2


def test_550_for_one_recipient_is_permanent_and_others_go_through(
    smtp_server: SmtpTestServer, sender: SmtpSender
) -> None:
    smtp_server.rcpt_replies["gone@example.org"] = "550 5.1.1 no such mailbox"
    delivered = []
    failures: list[PermanentFailure] = []
    for recipient in ["first@example.org", "gone@example.org", "last@example.org"]:
        try:
            sender.send(SENDER, recipient, message_for(recipient))
        except PermanentFailure as failure:
            failures.append(failure)
        else:
            delivered.append(recipient)

    [failure] = failures
    assert (failure.code, failure.stage, failure.recipient) == (550, "rcpt", "gone@example.org")
    assert "no such mailbox" in failure.reason
    assert delivered == ["first@example.org", "last@example.org"]
    assert smtp_server.recipients() == delivered
    assert sender.connections_opened == 1


def test_connection_dropped_by_a_restart_is_replaced_once(smtp_server: SmtpTestServer) -> None:
    sender = SmtpSender(smtp_server.url, pool_size=1, timeout=5)
    try:
        sender.send(SENDER, "a@example.org", message_for("a@example.org"))
        smtp_server.stop()
        smtp_server.start()  # the pooled connection is now dead

        sender.send(SENDER, "b@example.org", message_for("b@example.org"))
    finally:
        sender.close()
    assert smtp_server.recipients() == ["a@example.org", "b@example.org"]
    assert sender.connections_opened == 2


def test_no_server_is_a_temporary_failure() -> None:
    sender = SmtpSender(f"smtp://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(TemporaryFailure) as failure:
        sender.send(SENDER, "a@example.org", message_for("a@example.org"))
    assert failure.value.code == 0
    sender.close()


def test_rate_limited_concurrent_sends_all_arrive(smtp_server: SmtpTestServer) -> None:
    sender = SmtpSender(smtp_server.url, pool_size=3, rate_per_second=200, timeout=5)
    recipients = [f"reader{number}@example.org" for number in range(30)]
    errors: list[BaseException] = []

    def send_share(share: list[str]) -> None:
        try:
            for recipient in share:
                sender.send(SENDER, recipient, message_for(recipient))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=send_share, args=(recipients[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sender.close()

    assert errors == []
    assert sorted(smtp_server.recipients()) == sorted(recipients)
    assert sender.connections_opened <= 3
