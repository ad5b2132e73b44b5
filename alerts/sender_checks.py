"""What big inboxes check about a sender, checked before they do (``alerts doctor``).

Gmail and Yahoo accept bulk mail only when the From domain is a real one,
aligned with the DKIM signature (DMARC), with HTTPS one-click unsubscribe
links (RFC 8058) and a return path that comes back to us. None of this needs
a lookup: the settings say it all, and the DNS records to publish follow from
them and the DKIM key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from alerts.config import Settings
from alerts.delivery.message import split_mailbox

# Names no inbox resolves to us: mail "from" them is refused or filed as spam.
UNROUTABLE_DOMAINS = frozenset({"localhost", "localhost.localdomain", "localdomain", "local"})
UNROUTABLE_SUFFIXES = (".localhost", ".local", ".invalid", ".test", ".example", ".internal")
# One character-string of a TXT record holds at most 255 bytes; longer values are split.
TXT_STRING_CHARS = 255


@dataclass(frozen=True)
class SenderProblem:
    """One finding; ``error`` ones make the doctor fail, the others are shown."""

    text: str
    error: bool


def from_domain(settings: Settings) -> str:
    """The domain of ALERTS_MAIL_FROM, lower-case ('' when it has none)."""
    try:
        _, address = split_mailbox(settings.mail_from)
    except ValueError:
        return ""
    return address.rpartition("@")[2].lower()


def is_unroutable(domain: str) -> bool:
    """A domain no receiver can look up: localhost, a bare name, a reserved suffix."""
    name = domain.lower().rstrip(".")
    return name in UNROUTABLE_DOMAINS or "." not in name or name.endswith(UNROUTABLE_SUFFIXES)


def aligned(one: str, other: str) -> bool:
    """DMARC's relaxed alignment, approximated without the public suffix list.

    Aligned when one domain is the other or a subdomain of it
    (``news.example.org`` and ``example.org``); unrelated names are not.
    """
    first, second = one.lower().rstrip("."), other.lower().rstrip(".")
    return first == second or first.endswith("." + second) or second.endswith("." + first)


def sender_problems(settings: Settings) -> list[SenderProblem]:
    """Everything about the sending identity an inbox would hold against us.

    The strict findings apply once a relay is set (mail reaches real readers);
    on a developer's machine the outbox takes the mail and localhost is fine.
    """
    problems: list[SenderProblem] = []
    relay = bool(settings.smtp_url)
    domain = from_domain(settings)
    if relay and urlsplit(settings.base_url).scheme == "http":
        problems.append(
            SenderProblem(
                f"ALERTS_BASE_URL {settings.base_url!r} is plain http while mail goes to real "
                "readers: one-click unsubscribe needs https (RFC 8058) and signed links cross "
                "the network unencrypted; serve https and set ALERTS_BASE_URL=https://...",
                error=True,
            )
        )
    if relay and domain and is_unroutable(domain):
        problems.append(
            SenderProblem(
                f"ALERTS_MAIL_FROM {settings.mail_from!r} has the domain {domain!r}, which no "
                "receiver can look up: set a From address at your newsroom's domain",
                error=True,
            )
        )
    # Alignment with a From domain that cannot be real says nothing more.
    real_domain = bool(domain) and not is_unroutable(domain)
    if settings.dkim_domain and real_domain and not aligned(settings.dkim_domain, domain):
        problems.append(
            SenderProblem(
                f"ALERTS_DKIM_DOMAIN {settings.dkim_domain!r} is not aligned with the From "
                f"domain {domain!r}: DMARC (Gmail, Yahoo) ignores a signature of another "
                "domain; sign with the From domain or a parent of it",
                error=True,
            )
        )
    if relay and not settings.dkim_domain:
        problems.append(
            SenderProblem(
                "no DKIM key is set: Gmail and Yahoo want bulk mail signed by the From "
                "domain; make a key (dknewkey) and set ALERTS_DKIM_*",
                error=False,
            )
        )
    if relay and not settings.bounce_domain:
        problems.append(
            SenderProblem(
                "ALERTS_BOUNCE_DOMAIN is unset: bounces go back to the From address and "
                "nothing records them; give returned mail a domain routed to `alerts bounces "
                "serve` (docs/operations.md)",
                error=False,
            )
        )
    elif settings.bounce_domain and real_domain and not aligned(settings.bounce_domain, domain):
        problems.append(
            SenderProblem(
                f"ALERTS_BOUNCE_DOMAIN {settings.bounce_domain!r} is not under the From domain "
                f"{domain!r}: SPF then passes for a domain DMARC does not count",
                error=False,
            )
        )
    if relay and not (settings.postal_address or "").strip():
        problems.append(
            SenderProblem(
                "ALERTS_POSTAL_ADDRESS is unset: CAN-SPAM wants the sender's postal address "
                "in every bulk mail",
                error=False,
            )
        )
    return problems


def dkim_public_key(private_key_pem: bytes) -> tuple[str, str]:
    """The ``k=`` and ``p=`` of the DKIM TXT record, from the private key.

    RSA publishes the public key as base64 DER; Ed25519 (RFC 8463) its 32 raw bytes.
    """
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return "ed25519", base64.b64encode(raw).decode("ascii")
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "rsa", base64.b64encode(der).decode("ascii")


def txt_strings(value: str) -> str:
    """A TXT value as zone-file strings of at most 255 characters each (RFC 1035)."""
    size = TXT_STRING_CHARS
    chunks = [value[start : start + size] for start in range(0, len(value), size)]
    return " ".join(f'"{chunk}"' for chunk in chunks)


def dns_records(settings: Settings) -> list[str]:
    """The records to publish, in zone-file syntax; starting points, not a lookup.

    SPF names no hosts (only the operator knows the relay's addresses), so it
    is written with a placeholder to fill in; DMARC starts at ``p=none`` with
    reports, the usual first step before quarantine.
    """
    domain = from_domain(settings)
    if not domain:
        return []
    records: list[str] = []
    key_file = settings.dkim_private_key_file
    if settings.dkim_selector and settings.dkim_domain and key_file is not None:
        try:
            algorithm, public = dkim_public_key(key_file.read_bytes())
        except (OSError, ValueError, TypeError) as error:
            records.append(f"; DKIM: cannot read the key {key_file}: {error}")
        else:
            value = f"v=DKIM1; k={algorithm}; p={public}"
            records.append(
                f"{settings.dkim_selector}._domainkey.{settings.dkim_domain}. IN TXT "
                + txt_strings(value)
            )
    spf = "v=spf1 ip4:<your relay's address> -all"
    records.append(f'{domain}. IN TXT "{spf}"')
    if settings.bounce_domain and settings.bounce_domain.lower() != domain:
        records.append(f'{settings.bounce_domain}. IN TXT "{spf}"')
        records.append(f"{settings.bounce_domain}. IN MX 10 <the host running your MTA>.")
    records.append(
        f'_dmarc.{domain}. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}; '
        'adkim=r; aspf=r"'
    )
    return records
