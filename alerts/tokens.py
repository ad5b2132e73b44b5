"""Signed tokens for the links inside mail (confirm, preferences, unsubscribe).

Subscribers have no password: a link is their credential, so it must be
unforgeable, bound to one purpose (an unsubscribe token must not open the
preference centre) and, for confirmation, expire. A token is
``base64url(payload) "." base64url(HMAC-SHA256)``; the payload is a small JSON
array ``[subject, expires_epoch_or_null]`` and the purpose is mixed into the MAC
without being carried in the token, so it cannot be swapped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime

from alerts.errors import InvalidInputError

# Links end up in mail clients that wrap or mangle long URLs; anything longer
# than this was not made by sign_token and is refused before any work.
MAX_TOKEN_LENGTH = 512
MAC_ALGORITHM = hashlib.sha256
TOKEN_SEPARATOR = "."  # noqa: S105 - punctuation, not a secret


# A reader link names ``"<subscriber id>.<token version>"``; links made before
# versions existed name the id alone and count as version 0.
READER_SUBJECT_SEPARATOR = "."


class InvalidToken(InvalidInputError):  # noqa: N818 - the public name the web layer uses
    """Malformed, tampered with, or signed for another purpose."""


class ExpiredToken(InvalidToken):
    """Authentic, but past its expiry time."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _mac(secret: str, purpose: str, payload: str) -> bytes:
    # Length-prefixing the purpose keeps ("ab", "c...") and ("a", "bc...") apart.
    message = f"{len(purpose)}:{purpose}:{payload}".encode()
    return hmac.new(secret.encode(), message, MAC_ALGORITHM).digest()


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")


def sign_token(
    secret: str, purpose: str, subject: str | int, *, expires_at: datetime | None = None
) -> str:
    """A URL-safe token naming ``subject`` for ``purpose``, valid until ``expires_at``."""
    if not secret:
        raise ValueError("an empty secret would make every token forgeable")
    expires: int | None = None
    if expires_at is not None:
        _require_aware(expires_at, "expires_at")
        expires = int(expires_at.timestamp())
    payload = _b64encode(
        json.dumps([str(subject), expires], separators=(",", ":"), ensure_ascii=False).encode()
    )
    token = f"{payload}{TOKEN_SEPARATOR}{_b64encode(_mac(secret, purpose, payload))}"
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError(f"subject too long for a token ({len(token)} > {MAX_TOKEN_LENGTH})")
    return token


def verify_token(secret: str, purpose: str, token: str, *, now: datetime) -> str:
    """The subject a valid token names; raises InvalidToken or ExpiredToken."""
    _require_aware(now, "now")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed token")
    payload, separator, signature = token.partition(TOKEN_SEPARATOR)
    if not separator or not payload or not signature:
        raise InvalidToken("malformed token")
    try:
        given_mac = _b64decode(signature)
    except (binascii.Error, ValueError) as error:
        raise InvalidToken("malformed token") from error
    # The MAC is checked before the payload is parsed: nothing unauthenticated is decoded.
    if not hmac.compare_digest(given_mac, _mac(secret, purpose, payload)):
        raise InvalidToken("bad signature or wrong purpose")
    try:
        subject, expires = json.loads(_b64decode(payload))
    except (binascii.Error, ValueError, TypeError) as error:
        raise InvalidToken("malformed token") from error
    if not isinstance(subject, str) or not (expires is None or isinstance(expires, int)):
        raise InvalidToken("malformed token")
    if expires is not None and now.astimezone(UTC).timestamp() >= expires:
        raise ExpiredToken("token expired")
    return subject


def reader_subject(subscriber_id: int, version: int) -> str:
    """The subject of a reader's link: which reader, and which generation of links."""
    return f"{subscriber_id}{READER_SUBJECT_SEPARATOR}{version}"


def parse_reader_subject(subject: str) -> tuple[int, int]:
    """(subscriber id, token version) of a verified reader link; InvalidToken if neither."""
    reader, separator, version = subject.partition(READER_SUBJECT_SEPARATOR)
    try:
        return int(reader), int(version) if separator else 0
    except ValueError as error:
        raise InvalidToken("malformed subject") from error
