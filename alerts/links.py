"""Reader links: the signed URLs a mail carries, built the same way by senders and pages.

They live apart from the sending code so the web (which checks the tokens and
prints confirm links) and the composers (which put them in mail) depend on one
small module instead of the one that talks SMTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.config import Settings
from alerts.delivery.message import split_mailbox
from alerts.i18n import DEFAULT_LANGUAGE
from alerts.models import Subscriber
from alerts.tokens import reader_subject, sign_token

UNSUBSCRIBE_PURPOSE = "unsubscribe"
PREFERENCES_PURPOSE = "preferences"
CONFIRM_PURPOSE = "confirm"
# The query parameter reader pages take their language from (alerts.web.templating).
LANGUAGE_PARAMETER = "lang"


def language_query(language: str) -> str:
    """``?lang=xx`` for pages that cannot look the reader up; nothing for English."""
    return "" if language == DEFAULT_LANGUAGE else f"?{LANGUAGE_PARAMETER}={language}"


def subscriber_links(
    settings: Settings,
    subscriber_id: int,
    language: str = DEFAULT_LANGUAGE,
    *,
    version: int,
    issued_at: datetime,
) -> dict[str, str]:
    """Signed links that every mail carries; they identify the reader without a password.

    Each carries the reader's ``token_version`` (bumping it kills every link
    sent so far) and an expiry counted from the day of ``issued_at``. The unsubscribe page shows
    no stored data, so it learns the reader's language from the link; the
    preference centre reads it from the reader.
    """
    secret = settings.resolved_secret_key
    base = settings.base_url.rstrip("/")
    subject = reader_subject(subscriber_id, version)
    # Counted from the start of the UTC day: every mail of one day (a preview
    # and the send, a first try and a retry) carries the very same links.
    issued_at = issued_at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    unsubscribe = sign_token(
        secret,
        UNSUBSCRIBE_PURPOSE,
        subject,
        expires_at=issued_at + timedelta(days=settings.unsubscribe_link_valid_days),
    )
    preferences = sign_token(
        secret,
        PREFERENCES_PURPOSE,
        subject,
        expires_at=issued_at + timedelta(days=settings.preference_link_valid_days),
    )
    return {
        "unsubscribe": f"{base}/unsubscribe/{unsubscribe}{language_query(language)}",
        "preferences": f"{base}/preferences/{preferences}",
    }


def link_versions(session: Session, subscriber_ids: Iterable[int | None]) -> dict[int, int]:
    """The ``token_version`` of each reader of a batch, in one query (absent: erased)."""
    ids = {i for i in subscriber_ids if i is not None}
    if not ids:
        return {}
    rows = session.execute(
        select(Subscriber.id, Subscriber.token_version).where(Subscriber.id.in_(ids))
    )
    return {row.id: row.token_version for row in rows}


def confirm_link(
    settings: Settings, subject: int | str, now: datetime, language: str = DEFAULT_LANGUAGE
) -> str:
    """The double opt-in link; ``subject`` names the reader (and the request, see signup)."""
    expires = now + timedelta(hours=settings.confirmation_valid_hours)
    token = sign_token(settings.resolved_secret_key, CONFIRM_PURPOSE, subject, expires_at=expires)
    return f"{settings.base_url.rstrip('/')}/confirm/{token}{language_query(language)}"


def mail_domain(settings: Settings) -> str:
    """The domain our mail and its addresses are under: the sender's, else the site's."""
    _, address = split_mailbox(settings.mail_from)
    return address.rpartition("@")[2] or urlsplit(settings.base_url).hostname or "localhost"
