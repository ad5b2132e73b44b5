"""Providers' bounce webhooks: believed only with a valid signature, mapped to the
same policy as bounce mail, and never recorded twice."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerts.config import get_settings
from alerts.db import Database
from alerts.models import BounceEvent, Subscriber, SubscriberStatus, Suppression
from alerts.provider_events import SNS_CERTIFICATES
from alerts.web.app import create_app

MAILGUN_KEY = "key-for-tests"
POSTMARK_TOKEN = "postmark-password"


@pytest.fixture
def client(database: Database, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("ALERTS_MAILGUN_SIGNING_KEY", MAILGUN_KEY)
    monkeypatch.setenv("ALERTS_POSTMARK_WEBHOOK_TOKEN", POSTMARK_TOKEN)
    get_settings.cache_clear()
    with database.session_scope() as session:
        for name in ("gone", "angry", "full"):
            session.add(Subscriber(email=f"{name}@reader.example", status="confirmed"))
    return TestClient(create_app())


def _status(database: Database, email: str) -> SubscriberStatus:
    with database.session_scope() as session:
        status = session.scalar(select(Subscriber.status).where(Subscriber.email == email))
        assert status is not None
        return status


def _suppressed(database: Database) -> list[str]:
    with database.session_scope() as session:
        return sorted(session.scalars(select(Suppression.email)))


def _postmark(client: TestClient, event: dict[str, object], password: str | None) -> int:
    headers = {}
    if password is not None:
        credentials = base64.b64encode(f"postmark:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {credentials}"
    return client.post("/hooks/bounces/postmark", json=event, headers=headers).status_code


def test_postmark_events_need_the_password_and_map_to_the_policy(
    client: TestClient, database: Database
) -> None:
    bounce = {"RecordType": "Bounce", "Type": "HardBounce", "Email": "gone@reader.example"}
    assert _postmark(client, bounce, None) == 401
    assert _postmark(client, bounce, "guess") == 401
    assert _suppressed(database) == []
    assert _postmark(client, bounce, POSTMARK_TOKEN) == 200
    complaint = {"RecordType": "SpamComplaint", "Email": "angry@reader.example"}
    assert _postmark(client, complaint, POSTMARK_TOKEN) == 200
    soft = {"RecordType": "Bounce", "Type": "SoftBounce", "Email": "full@reader.example"}
    assert _postmark(client, soft, POSTMARK_TOKEN) == 200
    assert _suppressed(database) == ["angry@reader.example", "gone@reader.example"]
    assert _status(database, "gone@reader.example") is SubscriberStatus.BOUNCED
    assert _status(database, "angry@reader.example") is SubscriberStatus.UNSUBSCRIBED
    assert _status(database, "full@reader.example") is SubscriberStatus.CONFIRMED


def _mailgun_call(event: dict[str, object], *, key: str = MAILGUN_KEY, age: int = 0) -> bytes:
    timestamp = str(int(time.time()) - age)
    token = hashlib.sha256(json.dumps(event).encode() + timestamp.encode()).hexdigest()
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": event,
        }
    ).encode()


def test_mailgun_events_need_a_fresh_valid_signature_and_count_once(
    client: TestClient, database: Database
) -> None:
    failed = {
        "event": "failed",
        "severity": "permanent",
        "recipient": "gone@reader.example",
        "delivery-status": {"enhanced-code": "5.1.1"},
    }
    hook = "/hooks/bounces/mailgun"
    assert client.post(hook, content=_mailgun_call(failed, key="wrong")).status_code == 401
    assert client.post(hook, content=_mailgun_call(failed, age=3600)).status_code == 401
    assert client.post(hook, content=b"not json").status_code == 401
    assert _suppressed(database) == []
    temporary = {"event": "failed", "severity": "temporary", "recipient": "full@reader.example"}
    call = _mailgun_call(temporary)
    first = client.post(hook, content=call)
    again = client.post(hook, content=call)
    assert (first.status_code, first.json()) == (200, {"recorded": 1, "replay": False})
    assert (again.status_code, again.json()) == (200, {"recorded": 0, "replay": True})
    with database.session_scope() as session:
        assert len(session.scalars(select(BounceEvent)).all()) == 1
    assert client.post(hook, content=_mailgun_call(failed)).status_code == 200
    assert _suppressed(database) == ["gone@reader.example"]


@pytest.fixture
def sendgrid_key(monkeypatch: pytest.MonkeyPatch) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    monkeypatch.setenv("ALERTS_SENDGRID_VERIFICATION_KEY", base64.b64encode(public).decode())
    get_settings.cache_clear()
    return key


def _sendgrid_headers(key: ec.EllipticCurvePrivateKey, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def test_sendgrid_events_need_the_ecdsa_signature(
    client: TestClient, database: Database, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    body = json.dumps(
        [
            {
                "event": "bounce",
                "type": "bounce",
                "email": "gone@reader.example",
                "status": "5.1.1",
            },
            {"event": "spamreport", "email": "angry@reader.example"},
            {"event": "delivered", "email": "full@reader.example"},
        ]
    ).encode()
    hook = "/hooks/bounces/sendgrid"
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert (
        client.post(hook, content=body, headers=_sendgrid_headers(stranger, body)).status_code
        == 401
    )
    assert client.post(hook, content=body).status_code == 401
    tampered = body.replace(b"gone@", b"full@")
    headers = _sendgrid_headers(sendgrid_key, body)
    assert client.post(hook, content=tampered, headers=headers).status_code == 401
    assert _suppressed(database) == []
    answer = client.post(hook, content=body, headers=headers)
    assert (answer.status_code, answer.json()["recorded"]) == (200, 2)
    assert _suppressed(database) == ["angry@reader.example", "gone@reader.example"]


def test_an_unknown_provider_or_an_unset_secret_is_refused(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.post("/hooks/bounces/example", content=b"{}").status_code == 404
    monkeypatch.delenv("ALERTS_POSTMARK_WEBHOOK_TOKEN")
    get_settings.cache_clear()
    refused = client.post("/hooks/bounces/postmark", json={"RecordType": "Bounce"})
    assert refused.status_code == 401
    assert "not set up" in refused.json()["error"]


SNS_CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"


@pytest.fixture
def sns_key(monkeypatch: pytest.MonkeyPatch) -> rsa.RSAPrivateKey:
    """A key and certificate the test makes, known to the app as SNS's at SNS_CERT_URL."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    monkeypatch.setitem(SNS_CERTIFICATES._by_url, SNS_CERT_URL, certificate)
    monkeypatch.setenv("ALERTS_SES_TOPIC_ARNS", f"arn:aws:sns:us-east-1:1:other,{TOPIC}")
    get_settings.cache_clear()
    return key


def _sns(key: rsa.RSAPrivateKey, notification: dict[str, object], **changes: str) -> bytes:
    message: dict[str, str] = {
        "Type": "Notification",
        "MessageId": hashlib.sha256(json.dumps(notification).encode()).hexdigest(),
        "TopicArn": TOPIC,
        "Message": json.dumps(notification),
        "Timestamp": "2026-12-03T12:00:00.000Z",
        "SignatureVersion": "2",
        "SigningCertURL": SNS_CERT_URL,
    }
    signed = "".join(
        f"{field}\n{message[field]}\n"
        for field in ("Message", "MessageId", "Timestamp", "TopicArn", "Type")
    )
    signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    message["Signature"] = base64.b64encode(signature).decode()
    message.update(changes)
    return json.dumps(message).encode()


def test_ses_notifications_need_the_sns_signature_and_an_allowed_topic(
    client: TestClient, database: Database, sns_key: rsa.RSAPrivateKey
) -> None:
    bounce = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bouncedRecipients": [{"emailAddress": "gone@reader.example", "status": "5.1.1"}],
        },
    }
    complaint = {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "angry@reader.example"}]},
    }
    hook = "/hooks/bounces/ses"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert client.post(hook, content=_sns(stranger, bounce)).status_code == 401
    assert client.post(hook, content=_sns(sns_key, bounce, TopicArn="arn:x")).status_code == 401
    elsewhere = _sns(sns_key, bounce, SigningCertURL="https://attacker.example/cert.pem")
    assert client.post(hook, content=elsewhere).status_code == 401
    forged_message = _sns(sns_key, bounce, Message=json.dumps(complaint))
    assert client.post(hook, content=forged_message).status_code == 401
    assert _suppressed(database) == []
    assert client.post(hook, content=_sns(sns_key, bounce)).json()["recorded"] == 1
    assert client.post(hook, content=_sns(sns_key, complaint)).json()["recorded"] == 1
    assert client.post(hook, content=_sns(sns_key, complaint)).json()["replay"] is True
    assert _suppressed(database) == ["angry@reader.example", "gone@reader.example"]


def test_an_ses_subscription_to_a_foreign_url_is_not_confirmed(
    client: TestClient, sns_key: rsa.RSAPrivateKey
) -> None:
    message: dict[str, str] = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "m1",
        "Token": "t",
        "TopicArn": TOPIC,
        "Message": "confirm",
        "SubscribeURL": "http://127.0.0.1:9/confirm",
        "Timestamp": "2026-12-03T12:00:00.000Z",
        "SignatureVersion": "2",
        "SigningCertURL": SNS_CERT_URL,
    }
    signed = "".join(
        f"{field}\n{message[field]}\n"
        for field in (
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        )
    )
    message["Signature"] = base64.b64encode(
        sns_key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    ).decode()
    answer = client.post("/hooks/bounces/ses", content=json.dumps(message).encode())
    assert answer.status_code == 401
    assert "not an Amazon SNS https URL" in answer.json()["error"]
