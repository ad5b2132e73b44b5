"""Hand-built messages: valid headers, clean parse, no header injection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.delivery.message import (
    InvalidAddressError,
    build_message,
    make_message_id,
    split_mailbox,
    validate_address,
)

DATE = datetime(2024, 5, 3, 7, 0, tzinfo=timezone(timedelta(hours=4)))
TEXT = "Привет из Тбилиси!\nGrüße aus München, Äpfel und Öl.\nEmoji: 🗳️🇬🇪\n"
HTML = "<p>Привет из Тбилиси!</p><p>Grüße aus München 🗳️</p>"


def build(**overrides: Any) -> bytes:
    arguments: dict[str, Any] = {
        "sender": "Caucasus Alerts <alerts@news.example.org>",
        "to": "reader@example.org",
        "subject": "Referendum: новые даты — Grüße",
        "text": TEXT,
        "html": HTML,
        "message_id": make_message_id("news.example.org", "digest:42:2024-05-03"),
        "date": DATE,
        "list_id": "Caucasus Alerts <alerts.news.example.org>",
        "unsubscribe_url": "https://news.example.org/unsubscribe/abc",
        "unsubscribe_mailto": "unsubscribe@news.example.org",
    }
    arguments.update(overrides)
    return build_message(**arguments)


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def test_headers_and_parts_parse_cleanly() -> None:
    raw = build()
    message = parse(raw)
    assert not message.defects
    assert str(message["From"]) == "Caucasus Alerts <alerts@news.example.org>"
    assert str(message["To"]) == "reader@example.org"
    assert str(message["Subject"]) == "Referendum: новые даты — Grüße"
    assert message["Date"].datetime == DATE
    assert message["Message-ID"] == make_message_id("news.example.org", "digest:42:2024-05-03")
    assert message["MIME-Version"] == "1.0"
    assert message["List-Id"] == "Caucasus Alerts <alerts.news.example.org>"
    assert message["List-Unsubscribe"] == (
        "<https://news.example.org/unsubscribe/abc>, <mailto:unsubscribe@news.example.org>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert not part.defects
    assert parts[0].get_content().replace("\r\n", "\n") == TEXT
    assert parts[1].get_content().replace("\r\n", "\n") == HTML


def test_wire_format_is_7bit_crlf_with_short_lines() -> None:
    raw = build(html="<p>" + "Длинная строка без переносов. " * 200 + "</p>")
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in header_block.split(b"\r\n")) <= 78


def test_non_ascii_display_name_and_long_subject_are_encoded_and_folded() -> None:
    subject = "Новости: " + "референдум в Южной Осетии отложен " * 6
    message = parse(build(sender="Новости Кавказа <alerts@news.example.org>", subject=subject))
    assert not message.defects
    assert message["From"].addresses[0].display_name == "Новости Кавказа"
    assert str(message["Subject"]) == " ".join(subject.split())


def test_ascii_display_name_with_specials_is_quoted() -> None:
    message = parse(build(sender='"Alerts, Desk" <alerts@news.example.org>'))
    assert message["From"].addresses[0].display_name == "Alerts, Desk"
    assert message["From"].addresses[0].addr_spec == "alerts@news.example.org"


@pytest.mark.parametrize("field", ["subject", "list_id", "message_id_suffix", "extra"])
def test_header_injection_is_neutralised(field: str) -> None:
    payload = "x\r\nBcc: evil@example.org\r\n\r\nbody"
    overrides: dict[str, Any] = {
        "subject": {"subject": f"Hello {payload}"},
        "list_id": {"list_id": f"alerts{payload}"},
        "message_id_suffix": {"message_id": "<abc@news.example.org>\r\n"},
        "extra": {"extra_headers": {"X-Campaign": payload}},
    }[field]
    message = parse(build(**overrides))
    assert message["Bcc"] is None
    assert not message.defects
    assert message.get_content_type() == "multipart/alternative"


@pytest.mark.parametrize(
    "address",
    [
        "reader@example.org\r\nBcc: evil@example.org",
        "reader.example.org",
        "read er@example.org",
        "reader@",
        "@example.org",
        "reader@exa mple.org",
        "reader@-bad-.org",
        "",
        "a" * 65 + "@example.org",
    ],
)
def test_invalid_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidAddressError):
        build(to=address)


def test_a_url_with_line_breaks_is_refused() -> None:
    with pytest.raises(ValueError, match="List-Unsubscribe"):
        build(unsubscribe_url="https://x.example/u\r\nBcc: evil@example.org")


def test_injection_through_the_sender_is_refused() -> None:
    with pytest.raises(InvalidAddressError, match="line break"):
        build(sender="Alerts\r\nBcc: evil@example.org <alerts@news.example.org>")


def test_address_forms() -> None:
    assert validate_address("Reader+tag@Example.org") == "Reader+tag@Example.org"
    assert validate_address("leser@bücher.example") == "leser@xn--bcher-kva.example"
    assert split_mailbox("Alerts <alerts@localhost>") == ("Alerts", "alerts@localhost")
    assert split_mailbox("alerts@localhost") == ("", "alerts@localhost")


def test_extra_headers_cannot_replace_structural_ones() -> None:
    with pytest.raises(ValueError, match="not allowed"):
        build(extra_headers={"Subject": "other"})
    with pytest.raises(ValueError, match="not allowed"):
        build(extra_headers={"Bad Name": "x"})
    message = parse(build(extra_headers={"X-Alerts-Delivery": "17"}))
    assert message["X-Alerts-Delivery"] == "17"


def test_message_id_is_stable_per_key_and_the_message_is_deterministic() -> None:
    assert make_message_id("d.example", "k1") == make_message_id("d.example", "k1")
    assert make_message_id("d.example", "k1") != make_message_id("d.example", "k2")
    assert make_message_id("d.example", "k1").endswith("@d.example>")
    assert build() == build()


def test_naive_dates_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        build(date=datetime(2024, 5, 3, 7, 0))


@settings(max_examples=60, deadline=None)
@given(subject=st.text(max_size=300), text=st.text(max_size=500), html=st.text(max_size=500))
def test_any_text_round_trips(subject: str, text: str, html: str) -> None:
    message = parse(build(subject=subject, text=text, html=html))
    assert not message.defects
    assert str(message["Subject"]) == " ".join(
        subject.translate(dict.fromkeys([*range(32), 127, 8232, 8233], " ")).split()
    )
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == normalised


def test_utc_date_header() -> None:
    message = parse(build(date=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)))
    assert message["Date"] == "Tue, 02 Jan 2024 03:04:05 +0000"


def test_automatic_and_bulk_mail_say_so_and_ask_for_no_auto_replies() -> None:
    digest = parse(build(automatic=True, bulk=True, feedback_id="digest:digest:alerts"))
    assert digest["Auto-Submitted"] == "auto-generated"
    assert digest["Precedence"] == "bulk"
    assert digest["Feedback-ID"] == "digest:digest:alerts"
    assert digest["X-Auto-Response-Suppress"] == "OOF, AutoReply"
    newsletter = parse(build(bulk=True))
    assert newsletter["Auto-Submitted"] is None
    assert newsletter["Feedback-ID"] is None
    assert newsletter["X-Auto-Response-Suppress"] == "OOF, AutoReply"


@pytest.mark.parametrize("feedback_id", ["one", "a:b\r\nBcc: x@example.org", "a:b:c:d:e", "a b:c"])
def test_a_malformed_feedback_id_is_refused(feedback_id: str) -> None:
    with pytest.raises(ValueError, match="Feedback-ID"):
        build(feedback_id=feedback_id)


def test_the_new_headers_cannot_be_set_as_extra_headers() -> None:
    with pytest.raises(ValueError, match="not allowed"):
        build(extra_headers={"Auto-Submitted": "no"})
