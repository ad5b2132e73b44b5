"""DKIM: sign, verify offline against the matching public key, detect tampering."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from alerts.config import Settings
from alerts.delivery.dkim import DkimConfigurationError, DkimSigner
from alerts.delivery.message import build_message, make_message_id

SELECTOR = "mail2024"
DOMAIN = "news.example.org"


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, bytes]:
    """(private key PEM, DNS TXT record) for a fresh 2048-bit RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)


def message() -> bytes:
    return build_message(
        sender=f"Alerts <alerts@{DOMAIN}>",
        to="reader@example.org",
        subject="Дайджест: референдум",
        text="Текст\n",
        html="<p>Текст</p>",
        message_id=make_message_id(DOMAIN, "k"),
        date=datetime(2024, 5, 3, 7, 0, tzinfo=UTC),
        list_id=f"alerts.{DOMAIN}",
        unsubscribe_url=f"https://{DOMAIN}/unsubscribe/t",
        unsubscribe_mailto=f"unsubscribe@{DOMAIN}",
    )


def verify(signed: bytes, txt_record: bytes) -> bool:
    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return txt_record

    return bool(dkim.verify(signed, dnsfunc=dns))


def test_signed_message_verifies(key_pair: tuple[bytes, bytes]) -> None:
    private_pem, txt = key_pair
    signed = DkimSigner(SELECTOR, DOMAIN, private_pem).sign(message())
    assert signed.startswith(b"DKIM-Signature:")
    header = signed.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    for name in (b"list-unsubscribe", b"list-unsubscribe-post", b"list-id", b"subject"):
        assert name in header.lower()
    assert b"c=relaxed/relaxed" in header
    assert verify(signed, txt)


def test_tampered_subject_fails_verification(key_pair: tuple[bytes, bytes]) -> None:
    private_pem, txt = key_pair
    signed = DkimSigner(SELECTOR, DOMAIN, private_pem).sign(message())
    tampered = signed.replace(b"Subject: ", b"Subject: =?utf-8?b?RlJFRSA=?= ", 1)
    assert tampered != signed
    assert not verify(tampered, txt)


@pytest.mark.parametrize(
    "added",
    [
        b"Subject: Urgent: verify your account\r\n",
        b"List-Unsubscribe: <https://elsewhere.example/trap>\r\n",
        b"From: Bank <security@bank.example>\r\n",
    ],
)
def test_a_header_added_above_the_signed_one_fails_verification(
    key_pair: tuple[bytes, bytes], added: bytes
) -> None:
    private_pem, txt = key_pair
    signed = DkimSigner(SELECTOR, DOMAIN, private_pem).sign(message())
    signature_end = signed.index(b"\r\nFrom: ") + 2  # just after the DKIM-Signature header
    assert verify(signed, txt)
    assert not verify(signed[:signature_end] + added + signed[signature_end:], txt)


def test_bad_key_fails_at_construction() -> None:
    with pytest.raises(DkimConfigurationError):
        DkimSigner(SELECTOR, DOMAIN, b"not a key")


def test_from_settings(tmp_path: Path, key_pair: tuple[bytes, bytes]) -> None:
    assert DkimSigner.from_settings(Settings()) is None
    with pytest.raises(DkimConfigurationError, match="partly"):
        DkimSigner.from_settings(Settings(dkim_selector=SELECTOR))
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(key_pair[0])
    signer = DkimSigner.from_settings(
        Settings(dkim_selector=SELECTOR, dkim_domain=DOMAIN, dkim_private_key_file=key_file)
    )
    assert signer is not None
    assert verify(signer.sign(message()), key_pair[1])
