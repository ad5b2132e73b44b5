"""Bounce and complaint events from sending providers, checked and mapped.

A newsroom that relays through Postmark, Mailgun or SendGrid learns of bounces
from the provider's webhook rather than by mail. Each provider signs its calls
its own way; an event is believed only when that check passes (settings hold
the secrets), and is then turned into the same ``BounceReport`` a bounce mail
gives, so one policy (``alerts.bounces.record``) decides what happens.

- Postmark: HTTP basic auth on the webhook URL (``ALERTS_POSTMARK_WEBHOOK_TOKEN``
  as the password), no body signature.
- Mailgun: ``signature: {timestamp, token, signature}`` in the JSON body,
  HMAC-SHA256 of timestamp + token with the webhook signing key
  (``ALERTS_MAILGUN_SIGNING_KEY``).
- Amazon SES, through SNS: the SNS message signature (RSA, SHA1 for
  SignatureVersion 1, SHA256 for 2) checked against the certificate at
  SigningCertURL, which must be an https URL on an ``sns.<region>.amazonaws.com``
  host; the topic must be one of ``ALERTS_SES_TOPIC_ARNS``. A subscription
  confirmation is confirmed by fetching its SubscribeURL (same host rule).
- SendGrid: ECDSA (P-256, SHA-256) over timestamp + raw body in the
  ``X-Twilio-Email-Event-Webhook-Signature`` header, checked with the public key
  from its console (``ALERTS_SENDGRID_VERIFICATION_KEY``).

Signed calls older than five minutes are refused, and ``Events.replay_key``
lets the caller refuse the same signed call a second time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from alerts.bounces import BounceReport
from alerts.config import Settings
from alerts.errors import InvalidInputError
from alerts.ingest.fetch import fetch_url
from alerts.ingest.formats import SourceError
from alerts.ingest.limits import IngestLimits

# A signed call older (or newer) than this is a replay, or a clock far off.
MAX_CLOCK_SKEW_SECONDS = 300
MAX_EVENT_BYTES = 5 * 1024 * 1024
PROVIDERS = ("ses", "postmark", "mailgun", "sendgrid")


class ProviderEventError(InvalidInputError):
    """The call is not from the provider, or not something it sends; the reason says which."""


@dataclass
class Events:
    """What one checked call says, and the key that makes a replay of it detectable."""

    reports: list[BounceReport]
    replay_key: str | None = None


@dataclass(frozen=True)
class SignedCall:
    """What the web layer hands over of one webhook call."""

    body: bytes
    headers: dict[str, str]  # lower-case names
    basic_password: str | None = None


def _fresh(timestamp: str, now: datetime) -> None:
    try:
        moment = int(timestamp)
    except ValueError as error:
        raise ProviderEventError("the timestamp is not a number") from error
    if abs(now.timestamp() - moment) > MAX_CLOCK_SKEW_SECONDS:
        raise ProviderEventError("the signature is stale")


def _json(body: bytes) -> Any:
    if len(body) > MAX_EVENT_BYTES:
        raise ProviderEventError("the event is too large")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ProviderEventError("the body is not JSON") from error


def _address(value: Any) -> list[str]:
    return [value.strip().lower()] if isinstance(value, str) and "@" in value else []


# --- Postmark -----------------------------------------------------------------------

# Postmark's bounce Type values that mean the address is gone for good.
POSTMARK_HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
POSTMARK_IGNORED = frozenset({"AutoResponder", "OpenRelayTest", "Subscribe", "Unknown"})


def postmark(call: SignedCall, settings: Settings, _now: datetime) -> Events:
    expected = settings.postmark_webhook_token
    if not expected:
        raise ProviderEventError("Postmark events are not set up (ALERTS_POSTMARK_WEBHOOK_TOKEN)")
    if call.basic_password is None or not hmac.compare_digest(call.basic_password, expected):
        raise ProviderEventError("wrong or missing credentials")
    event = _json(call.body)
    if not isinstance(event, dict):
        raise ProviderEventError("a Postmark event is one JSON object")
    record_type = event.get("RecordType")
    recipients = _address(event.get("Email") or event.get("Recipient"))
    if record_type == "SpamComplaint":
        return Events([BounceReport("complaint", recipients)])
    if record_type == "SubscriptionChange" and event.get("SuppressSending"):
        return Events([BounceReport("unsubscribe", recipients)])
    if record_type == "Bounce":
        kind = str(event.get("Type", ""))
        if kind in POSTMARK_IGNORED:
            return Events(
                [BounceReport("auto-reply" if kind == "AutoResponder" else "not-a-bounce")]
            )
        return Events([BounceReport("hard" if kind in POSTMARK_HARD else "soft", recipients)])
    return Events([])


# --- Mailgun ------------------------------------------------------------------------


def mailgun(call: SignedCall, settings: Settings, now: datetime) -> Events:
    key = settings.mailgun_signing_key
    if not key:
        raise ProviderEventError("Mailgun events are not set up (ALERTS_MAILGUN_SIGNING_KEY)")
    payload = _json(call.body)
    signature = payload.get("signature") if isinstance(payload, dict) else None
    if not isinstance(signature, dict):
        raise ProviderEventError("no signature in the event")
    timestamp, token = str(signature.get("timestamp", "")), str(signature.get("token", ""))
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(signature.get("signature", ""))):
        raise ProviderEventError("the signature does not match")
    _fresh(timestamp, now)
    replay_key = f"mailgun-token:{hashlib.sha256(token.encode()).hexdigest()[:32]}"
    data = payload.get("event-data")
    if not isinstance(data, dict):
        return Events([], replay_key)
    recipients = _address(data.get("recipient"))
    event = data.get("event")
    reports: list[BounceReport] = []
    if event == "complained":
        reports = [BounceReport("complaint", recipients)]
    elif event == "unsubscribed":
        reports = [BounceReport("unsubscribe", recipients)]
    elif event == "failed":
        status = data.get("delivery-status")
        code = status.get("enhanced-code") or None if isinstance(status, dict) else None
        permanent = data.get("severity") == "permanent"
        reports = [BounceReport("hard" if permanent else "soft", recipients, code)]
    return Events(reports, replay_key)


# --- SendGrid -----------------------------------------------------------------------

SENDGRID_SIGNATURE = "x-twilio-email-event-webhook-signature"
SENDGRID_TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


def _sendgrid_key(settings: Settings) -> ec.EllipticCurvePublicKey:
    text = (settings.sendgrid_verification_key or "").strip()
    if not text:
        raise ProviderEventError(
            "SendGrid events are not set up (ALERTS_SENDGRID_VERIFICATION_KEY)"
        )
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:  # the console shows the base64 DER without PEM armour
            key = serialization.load_der_public_key(base64.b64decode(text))
    except (ValueError, binascii.Error) as error:
        raise ProviderEventError("ALERTS_SENDGRID_VERIFICATION_KEY is not a public key") from error
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ProviderEventError("ALERTS_SENDGRID_VERIFICATION_KEY is not an ECDSA key")
    return key


def sendgrid(call: SignedCall, settings: Settings, now: datetime) -> Events:
    key = _sendgrid_key(settings)
    signature = call.headers.get(SENDGRID_SIGNATURE, "")
    timestamp = call.headers.get(SENDGRID_TIMESTAMP, "")
    try:
        key.verify(
            base64.b64decode(signature), timestamp.encode() + call.body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, binascii.Error, ValueError) as error:
        raise ProviderEventError("the signature does not match") from error
    _fresh(timestamp, now)
    events = _json(call.body)
    if not isinstance(events, list):
        raise ProviderEventError("a SendGrid call is a JSON list of events")
    reports = []
    for event in events:
        if not isinstance(event, dict):
            continue
        recipients = _address(event.get("email"))
        kind = event.get("event")
        status = event.get("status") if isinstance(event.get("status"), str) else None
        if kind == "bounce":
            # SendGrid's "blocked" bounces are the receiver refusing us, not a dead address.
            hard = event.get("type", "bounce") == "bounce" and not str(status or "").startswith("4")
            reports.append(BounceReport("hard" if hard else "soft", recipients, status))
        elif kind in ("deferred", "dropped") and event.get("reason") != "Unsubscribed Address":
            reports.append(BounceReport("soft", recipients, status))
        elif kind == "spamreport":
            reports.append(BounceReport("complaint", recipients))
        elif kind in ("unsubscribe", "group_unsubscribe"):
            reports.append(BounceReport("unsubscribe", recipients))
    signed = hashlib.sha256(timestamp.encode() + call.body).hexdigest()[:32]
    return Events(reports, f"sendgrid-call:{signed}")


# --- Amazon SES through SNS ---------------------------------------------------------

SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# The fields an SNS signature covers, in the order it covers them, by message type.
SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SNS_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERTIFICATE_BYTES = 64 * 1024


def _sns_url(url: object, what: str) -> str:
    parts = urlsplit(str(url))
    if parts.scheme != "https" or not SNS_HOST.match(parts.hostname or ""):
        raise ProviderEventError(f"the {what} is not an Amazon SNS https URL")
    return str(url)


class SnsCertificates:
    """SNS signing certificates by URL, fetched once per process (they change rarely)."""

    def __init__(self, fetch: Callable[[str], bytes] | None = None) -> None:
        self._fetch = fetch or _fetch_public
        self._by_url: dict[str, x509.Certificate] = {}

    def remember(self, url: str, pem: bytes) -> None:
        self._by_url[url] = x509.load_pem_x509_certificate(pem)

    def get(self, url: str) -> x509.Certificate:
        if url not in self._by_url:
            try:
                self.remember(url, self._fetch(url))
            except ValueError as error:
                raise ProviderEventError("the signing certificate cannot be read") from error
        return self._by_url[url]


def _fetch_public(url: str) -> bytes:
    """A public https document, through the guarded fetch every outbound request uses."""
    try:
        fetched = fetch_url(url, limits=IngestLimits(max_source_bytes=MAX_CERTIFICATE_BYTES))
    except SourceError as error:
        raise ProviderEventError(f"cannot fetch from Amazon SNS: {error}") from error
    return fetched.data or b""


SNS_CERTIFICATES = SnsCertificates()


def _sns_verified(message: dict[str, Any], certificates: SnsCertificates) -> None:
    kind = message.get("Type")
    fields = SNS_SIGNED_FIELDS.get(str(kind))
    version = str(message.get("SignatureVersion", ""))
    if fields is None or version not in SNS_HASHES:
        raise ProviderEventError("not an SNS message this endpoint takes")
    signed = "".join(
        f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None
    ).encode()
    certificate = certificates.get(_sns_url(message.get("SigningCertURL"), "signing certificate"))
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ProviderEventError("the signing certificate holds no RSA key")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        key.verify(signature, signed, padding.PKCS1v15(), SNS_HASHES[version]())
    except (InvalidSignature, binascii.Error, ValueError) as error:
        raise ProviderEventError("the signature does not match") from error


def ses(
    call: SignedCall,
    settings: Settings,
    _now: datetime,
    certificates: SnsCertificates = SNS_CERTIFICATES,
) -> Events:
    topics = {arn.strip() for arn in (settings.ses_topic_arns or "").split(",") if arn.strip()}
    if not topics:
        raise ProviderEventError("Amazon SES events are not set up (ALERTS_SES_TOPIC_ARNS)")
    message = _json(call.body)
    if not isinstance(message, dict):
        raise ProviderEventError("an SNS message is one JSON object")
    if message.get("TopicArn") not in topics:
        raise ProviderEventError("the topic is not one of ALERTS_SES_TOPIC_ARNS")
    _sns_verified(message, certificates)
    replay_key = f"sns-message:{str(message.get('MessageId', ''))[:100]}"
    if message["Type"] == "SubscriptionConfirmation":
        _fetch_public(_sns_url(message.get("SubscribeURL"), "subscription URL"))
        return Events([], replay_key)
    if message["Type"] != "Notification":
        return Events([], replay_key)
    try:
        notification = json.loads(str(message.get("Message", "")))
    except json.JSONDecodeError as error:
        raise ProviderEventError("the SES notification is not JSON") from error
    return Events(_ses_reports(notification), replay_key)


def _ses_reports(notification: Any) -> list[BounceReport]:
    if not isinstance(notification, dict):
        return []
    kind = notification.get("notificationType") or notification.get("eventType")
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        permanent = bounce.get("bounceType") == "Permanent"
        # SES's "Permanent/OnAccountSuppressionList" is its own list, not the reader's box.
        permanent = permanent and bounce.get("bounceSubType") != "OnAccountSuppressionList"
        reports = []
        for recipient in bounce.get("bouncedRecipients") or []:
            if isinstance(recipient, dict):
                status = (
                    recipient.get("status") if isinstance(recipient.get("status"), str) else None
                )
                reports.append(
                    BounceReport(
                        "hard" if permanent else "soft",
                        _address(recipient.get("emailAddress")),
                        status,
                    )
                )
        return reports
    if kind == "Complaint":
        complaint = notification.get("complaint") or {}
        if complaint.get("complaintFeedbackType") == "not-spam":
            return []
        return [
            BounceReport("complaint", _address(r.get("emailAddress")))
            for r in complaint.get("complainedRecipients") or []
            if isinstance(r, dict)
        ]
    return []


Reader = Callable[[SignedCall, Settings, datetime], Events]
READERS: dict[str, Reader] = {
    "ses": ses,
    "postmark": postmark,
    "mailgun": mailgun,
    "sendgrid": sendgrid,
}


def read_events(provider: str, call: SignedCall, settings: Settings, now: datetime) -> Events:
    """The reports in one checked webhook call; raises ProviderEventError when refused."""
    reader = READERS.get(provider)
    if reader is None:
        raise ProviderEventError(f"unknown provider {provider!r}")
    return reader(call, settings, now)
