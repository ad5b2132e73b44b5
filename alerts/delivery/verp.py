"""Variable envelope return paths: each delivery's own bounce address (VERP).

The envelope sender of a delivery is ``<local>+<delivery id>-<MAC>@<bounce domain>``;
a bounce comes back to that address, so it names the delivery, and the MAC
(keyed with the secret key) means nobody can make one up for another delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import re

VERP_SEPARATOR = "+"
# The local part of the per-delivery List-Unsubscribe mailto address.
UNSUBSCRIBE_LOCAL = "unsubscribe"
# 64 bits of HMAC: enough that nobody guesses a token for another delivery,
# short enough that the local part stays under RFC 5321's 64 characters.
VERP_MAC_HEX = 16
_VERP = re.compile(r"^(?P<local>[^+@]+)\+(?P<id>[0-9a-z]{1,13})-(?P<mac>[0-9a-f]{16})$")


def _verp_mac(secret: str, delivery_id: int) -> str:
    digest = hmac.new(f"verp:{secret}".encode(), str(delivery_id).encode(), hashlib.sha256)
    return digest.hexdigest()[:VERP_MAC_HEX]


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if number == 0:
            return text


def verp_address(local: str, domain: str, delivery_id: int, secret: str) -> str:
    """The envelope sender of one delivery: its bounce comes back naming it.

    Lower-case only, since some MTAs fold the local part.
    """
    token = f"{_base36(delivery_id)}-{_verp_mac(secret, delivery_id)}"
    return f"{local}{VERP_SEPARATOR}{token}@{domain}"


def delivery_from_address(address: str, secret: str) -> int | None:
    """The delivery a VERP address names, or None when it is not one of ours or forged."""
    local = address.rpartition("@")[0].lower()
    matched = _VERP.match(local)
    if not matched:
        return None
    delivery_id = int(matched["id"], 36)
    if not hmac.compare_digest(matched["mac"], _verp_mac(secret, delivery_id)):
        return None
    return delivery_id
