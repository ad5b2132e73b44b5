"""DKIM signing (dkimpy), so receivers can tell our mail from forgeries.

relaxed/relaxed canonicalisation survives the header refolding and trailing
whitespace changes relays like to make. The signed header list covers what a
reader trusts (From, Subject, Date) and what one-click unsubscribe relies on
(List-Unsubscribe and List-Unsubscribe-Post must be signed, RFC 8058 section 4).
Those are also oversigned (named once more in h= than they occur, RFC 6376
section 8.15): a second Subject or List-Unsubscribe added above ours by
someone on the way then breaks the signature instead of riding on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dkim

from alerts.errors import InvalidInputError

if TYPE_CHECKING:
    from alerts.config import Settings

OVERSIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)
SIGNED_HEADERS = (
    *OVERSIGNED_HEADERS,
    *OVERSIGNED_HEADERS,  # each occurs once in our mail: the second names its absence
    b"Auto-Submitted",
    b"Precedence",
    b"Feedback-ID",
    b"MIME-Version",
    b"Content-Type",
)
CANONICALIZATION = (b"relaxed", b"relaxed")
# Signed once at start-up so a bad key fails the process, not every send.
_PROBE_MESSAGE = b"From: probe@example.invalid\r\nSubject: probe\r\n\r\nprobe\r\n"


class DkimConfigurationError(InvalidInputError):
    """DKIM settings are incomplete or the key cannot be used."""


class DkimSigner:
    """Prepends a DKIM-Signature header to finished messages."""

    def __init__(self, selector: str, domain: str, private_key_pem: bytes | str) -> None:
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("idna")
        self.private_key = (
            private_key_pem.encode("ascii") if isinstance(private_key_pem, str) else private_key_pem
        )
        try:
            self.sign(_PROBE_MESSAGE)
        except dkim.DKIMException as error:
            raise DkimConfigurationError(f"DKIM key unusable: {error}") from error

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header in front."""
        signature: bytes = dkim.sign(
            message,
            self.selector,
            self.domain,
            self.private_key,
            canonicalize=CANONICALIZATION,
            include_headers=list(SIGNED_HEADERS),
            linesep=b"\r\n",
        )
        return signature + message

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """A signer when selector, domain and key file are all set; None when none is."""
        selector = settings.dkim_selector
        domain = settings.dkim_domain
        key_file = settings.dkim_private_key_file
        if not (selector or domain or key_file):
            return None
        if not (selector and domain and key_file):
            # Half-configured DKIM would silently send unsigned mail: refuse to start.
            raise DkimConfigurationError(
                "DKIM is partly configured: set ALERTS_DKIM_SELECTOR, ALERTS_DKIM_DOMAIN "
                "and ALERTS_DKIM_PRIVATE_KEY_FILE together"
            )
        try:
            key = key_file.read_bytes()
        except OSError as error:
            raise DkimConfigurationError(f"cannot read the DKIM key: {error}") from error
        return cls(selector, domain, key)
