"""``alerts doctor``'s sender checks and the DNS records it prints, offline."""

from __future__ import annotations

import re
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from alerts.config import Settings
from alerts.delivery.dkim import DkimSigner
from alerts.sender_checks import aligned, dns_records, sender_problems

PRODUCTION = {
    "smtp_url": "smtp://relay.example.org:25",
    "base_url": "https://alerts.news.example.org",
    "mail_from": "Alerts <alerts@news.example.org>",
    "bounce_domain": "bounces.news.example.org",
    "postal_address": "1 Press Row, Springfield",
}


def problems(**values: object) -> list[tuple[str, bool]]:
    settings = Settings(**{**PRODUCTION, **values})  # type: ignore[arg-type]
    return [(problem.text, problem.error) for problem in sender_problems(settings)]


def rsa_key(folder: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_a_complete_production_sender_has_only_the_missing_dkim_to_hear_about() -> None:
    found = problems()
    assert len(found) == 1
    assert "no DKIM key is set" in found[0][0]
    assert found[0][1] is False


@pytest.mark.parametrize(
    ("values", "complaint", "error"),
    [
        ({"base_url": "http://alerts.news.example.org"}, "plain http", True),
        ({"mail_from": "Alerts <alerts@localhost>"}, "no receiver can look up", True),
        ({"mail_from": "alerts@newsroom"}, "no receiver can look up", True),
        ({"dkim_domain": "mailer.example.com"}, "not aligned with the From domain", True),
        ({"bounce_domain": None}, "ALERTS_BOUNCE_DOMAIN is unset", False),
        ({"bounce_domain": "bounces.example.com"}, "SPF then passes", False),
        ({"postal_address": None}, "ALERTS_POSTAL_ADDRESS is unset", False),
    ],
)
def test_each_sender_problem_is_named(
    values: dict[str, object], complaint: str, error: bool
) -> None:
    found = [item for item in problems(**values) if "no DKIM key" not in item[0]]
    assert len(found) == 1, found
    assert complaint in found[0][0]
    assert found[0][1] is error


def test_the_development_default_is_not_held_to_production_rules() -> None:
    # No relay: the outbox takes the mail, http and localhost are fine.
    assert sender_problems(Settings()) == []


def test_alignment_is_relaxed_to_parent_and_subdomains() -> None:
    assert aligned("example.org", "news.example.org")
    assert aligned("News.Example.org", "news.example.org.")
    assert not aligned("example.org", "badexample.org")
    assert not aligned("mailer.com", "news.example.org")


def test_the_printed_dkim_record_verifies_our_signature(tmp_path: Path) -> None:
    settings = Settings(
        **PRODUCTION,  # type: ignore[arg-type]
        dkim_selector="s1",
        dkim_domain="news.example.org",
        dkim_private_key_file=rsa_key(tmp_path),
    )
    records = dns_records(settings)
    [dkim_record] = [r for r in records if "._domainkey." in r]
    assert dkim_record.startswith("s1._domainkey.news.example.org. IN TXT ")
    strings = re.findall(r'"([^"]*)"', dkim_record)
    assert len(strings) > 1  # a 2048-bit key does not fit one string
    assert all(len(s) <= 255 for s in strings)
    txt = "".join(strings).encode()
    assert settings.dkim_private_key_file is not None
    signer = DkimSigner("s1", "news.example.org", settings.dkim_private_key_file.read_bytes())
    signed = signer.sign(b"From: alerts@news.example.org\r\nSubject: hi\r\n\r\nbody\r\n")
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: txt)
    assert 'news.example.org. IN TXT "v=spf1 ' in "\n".join(records)
    assert 'bounces.news.example.org. IN TXT "v=spf1 ' in "\n".join(records)
    assert any(r.startswith('_dmarc.news.example.org. IN TXT "v=DMARC1; p=none;') for r in records)


def test_an_ed25519_key_is_published_as_such(tmp_path: Path) -> None:
    path = tmp_path / "ed.pem"
    path.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings = Settings(
        **PRODUCTION,  # type: ignore[arg-type]
        dkim_selector="ed",
        dkim_domain="news.example.org",
        dkim_private_key_file=path,
    )
    [record] = [r for r in dns_records(settings) if "._domainkey." in r]
    assert "k=ed25519; p=" in record
    assert len(re.search(r"p=([A-Za-z0-9+/=]+)", record)[1]) == 44  # type: ignore[index]
