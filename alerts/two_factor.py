"""Staff two-factor sign-in: TOTP codes (RFC 6238) and single-use recovery codes.

The TOTP secret is kept encrypted (Fernet, with a key derived from
``ALERTS_SECRET_KEY`` by HKDF), not hashed: the server has to compute codes
from it. A copy of the database alone therefore yields no secret, and once
enrolment is confirmed no page shows it again. The price: a changed
``ALERTS_SECRET_KEY`` makes every secret unreadable, and each enrolled user
needs ``alerts users reset-2fa`` and a new enrolment.

A code is good for its 30-second step and one step either side (phone
clocks drift, typing takes time). The step of the last accepted code is
stored and only a later step is accepted, so a code seen over a shoulder or
in a proxy log cannot be used again; the check and the write are one
conditional UPDATE, so two requests racing with one code cannot both win.

Recovery codes are random (about 49 bits each), shown once, and kept as
HMACs under another key derived from ``ALERTS_SECRET_KEY``: fast to check,
and useless to somebody holding only the database. Each works once.

Wrong codes are throttled like wrong passwords (``alerts.users``): per client
and account the wait doubles after a few failures. Unlike passwords there is
also a cap per account, from all clients together: whoever is at this step
already has the password, and spreading guesses over many addresses must not
multiply their chances.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

import pyotp
import segno
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from alerts import audit, users
from alerts.audit import Actor
from alerts.config import Settings
from alerts.errors import InvalidInputError
from alerts.models import RateEvent, RecoveryCode, Role, User

TOTP_DIGITS = 6
# Steps either side of now that still count; each step is 30 seconds.
TOTP_VALID_WINDOW = 1
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_LENGTH = 10
# No 0/o, 1/l/i: people copy these from paper.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
MAX_CODE_INPUT = 64
FAILURE_PREFIX = "2fa-failure"
# Wrong codes for one account within users.LOGIN_WINDOW, from all clients together.
FAILURES_PER_ACCOUNT = 20
DEFAULT_ISSUER = "alerts"

WRONG_CODE = (
    "That code is not right. Type the 6 digits your app shows now, or one of your recovery codes."
)
REPLAYED_CODE = "That code has been used already. Wait for the next one in your app."
USED_RECOVERY_CODE = "That recovery code has been used already. Each one works once."
TOO_MANY_CODES = "Too many wrong codes. Wait a few minutes and try again."
WRONG_ENROLMENT_CODE = (
    "That code does not match. Check that your phone's clock is right and type the code "
    "your app shows now."
)
KEY_CHANGED = (
    "Your two-factor secret cannot be read (the server's secret key has changed). "
    "Ask an admin to run `alerts users reset-2fa` for your account."
)

CodeKind = Literal["totp", "recovery"]


class TwoFactorError(InvalidInputError):
    """A two-factor step that cannot go ahead; the message says why."""


class CodeRefusedError(TwoFactorError):
    """A wrong, replayed or used-up code: counts as a failure."""


class TooManyCodesError(TwoFactorError):
    """The throttle: this client (or everybody) must wait before the next try."""


# --- policy ------------------------------------------------------------------------


def enrolled(user: User) -> bool:
    return user.totp_confirmed_at is not None


def required_for(user: User, settings: Settings) -> bool:
    """Whether ``ALERTS_REQUIRE_2FA`` makes this user sign in with a code."""
    if settings.require_2fa == "staff":
        return True
    return settings.require_2fa == "admins" and user.role is Role.ADMIN


def must_enrol(user: User, settings: Settings) -> bool:
    """Required and not yet set up: the user may do nothing but enrol."""
    return required_for(user, settings) and not enrolled(user)


# --- keys ----------------------------------------------------------------------------


def _derived_key(settings: Settings, purpose: bytes) -> bytes:
    """A 32-byte key for one purpose, so no two uses share ALERTS_SECRET_KEY itself."""
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"alerts " + purpose)
    return kdf.derive(settings.resolved_secret_key.encode())


def _fernet(settings: Settings) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derived_key(settings, b"totp secret")))


def _encrypt_secret(secret: str, settings: Settings) -> str:
    return _fernet(settings).encrypt(secret.encode()).decode()


def _secret_of(user: User, settings: Settings) -> str:
    if user.totp_secret_encrypted is None:
        raise TwoFactorError("Two-factor sign-in is not set up for this account.")
    try:
        return _fernet(settings).decrypt(user.totp_secret_encrypted.encode()).decode()
    except InvalidToken as error:
        raise TwoFactorError(KEY_CHANGED) from error


def _recovery_hash(code: str, settings: Settings) -> str:
    key = _derived_key(settings, b"recovery codes")
    return hmac.new(key, code.encode(), hashlib.sha256).hexdigest()


def _normalise(code: str) -> str:
    """What people type, without the spaces and dashes they add for readability."""
    return "".join(code.split()).replace("-", "").lower()[: MAX_CODE_INPUT + 1]


# --- enrolment -------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows: the secret (for typing in) and its otpauth URI."""

    secret: str
    uri: str

    @property
    def grouped_secret(self) -> str:
        """The secret in groups of four, easier to type into an app by hand."""
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))

    def qr_svg(self) -> str:
        """The URI as an inline SVG QR code: drawn here, no image file, no request elsewhere."""
        code = segno.make(self.uri, error="m")
        return code.svg_inline(
            scale=5, dark="#000", light="#fff", title="QR code for your authenticator app"
        )


def issuer(settings: Settings) -> str:
    """The name an authenticator app lists the account under: this site's host."""
    host = urlsplit(settings.base_url).hostname
    return f"{DEFAULT_ISSUER} {host}" if host else DEFAULT_ISSUER


def begin_enrolment(session: Session, user: User, settings: Settings) -> Enrolment:
    """The secret to set up in an app; the same one until enrolment is confirmed,
    so reloading the page does not break what the user already scanned."""
    if enrolled(user):
        raise TwoFactorError(
            "Two-factor sign-in is on already. Turn it off first to set up another app."
        )
    secret = None
    if user.totp_secret_encrypted is not None:
        try:
            secret = _secret_of(user, settings)
        except TwoFactorError:
            secret = None  # written under an older key: start afresh
    if secret is None:
        secret = pyotp.random_base32()
        user.totp_secret_encrypted = _encrypt_secret(secret, settings)
        user.totp_last_step = None
        session.flush()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=issuer(settings))
    return Enrolment(secret=secret, uri=uri)


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The latest time step within the window whose code is ``code``, else None."""
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS)
    current = totp.timecode(now)
    for step in range(current + TOTP_VALID_WINDOW, current - TOTP_VALID_WINDOW - 1, -1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _new_recovery_codes(
    session: Session, user: User, settings: Settings, now: datetime
) -> list[str]:
    """Ten fresh codes (shown once); any older ones stop working."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [
        "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    session.add_all(
        RecoveryCode(user_id=user.id, code_hash=_recovery_hash(code, settings), created_at=now)
        for code in codes
    )
    session.flush()
    half = RECOVERY_CODE_LENGTH // 2
    return [f"{code[:half]}-{code[half:]}" for code in codes]


def confirm_enrolment(
    session: Session, actor: Actor, user: User, code: str, settings: Settings, now: datetime
) -> list[str]:
    """Turn two-factor sign-in on with a code from the app; returns the recovery
    codes, which are shown once. Audited as ``user.2fa_enrol``."""
    if enrolled(user):
        raise TwoFactorError("Two-factor sign-in is on already.")
    if user.totp_secret_encrypted is None:
        raise TwoFactorError("Start the set-up first: the page shows the code to scan.")
    step = _matching_step(_secret_of(user, settings), _normalise(code), now)
    if step is None:
        raise CodeRefusedError(WRONG_ENROLMENT_CODE)
    # The code that confirmed enrolment cannot also sign anybody in.
    user.totp_last_step = step
    user.totp_confirmed_at = now
    codes = _new_recovery_codes(session, user, settings, now)
    audit.record(session, actor, "user.2fa_enrol", "user", user.id, now=now)
    return codes


def replace_recovery_codes(
    session: Session, user: User, password: str, settings: Settings, now: datetime
) -> list[str]:
    """Ten new recovery codes for the user (the old ones stop working), with the
    password as proof. Audited as ``user.2fa_recovery_codes``."""
    if not users.verify_password(user, password):
        raise TwoFactorError("The password is not right.")
    if not enrolled(user):
        raise TwoFactorError("Two-factor sign-in is not on.")
    codes = _new_recovery_codes(session, user, settings, now)
    audit.record(session, user, "user.2fa_recovery_codes", "user", user.id, now=now)
    return codes


def recovery_codes_left(session: Session, user: User) -> int:
    return int(
        session.scalar(
            select(func.count(RecoveryCode.id)).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        )
        or 0
    )


# --- sign-in ---------------------------------------------------------------------------


def _pair_key(user: User, client: str) -> str:
    digest = hashlib.sha256(f"{client}\n{user.id}".encode()).hexdigest()
    return f"{FAILURE_PREFIX}:pair:{digest}"


def _account_key(user: User) -> str:
    return f"{FAILURE_PREFIX}:user:{user.id}"


def throttled(session: Session, user: User, client: str, now: datetime) -> bool:
    """Whether the next code from this client for this account must wait (see the
    module docstring: per client and account like passwords, plus an account cap)."""
    failures, last = users.recent_failures(session, _pair_key(user, client), now)
    if last is not None and now < last + users.login_backoff(failures):
        return True
    account_failures, _ = users.recent_failures(session, _account_key(user), now)
    return account_failures >= FAILURES_PER_ACCOUNT


def _record_failure(session: Session, user: User, client: str, now: datetime) -> None:
    session.add_all(
        [RateEvent(key=_pair_key(user, client), at=now), RateEvent(key=_account_key(user), at=now)]
    )
    session.execute(
        delete(RateEvent).where(
            RateEvent.key.startswith(FAILURE_PREFIX), RateEvent.at <= now - users.LOGIN_WINDOW
        )
    )
    session.flush()


def _accept_totp(
    session: Session, user: User, code: str, settings: Settings, now: datetime
) -> None:
    step = _matching_step(_secret_of(user, settings), code, now)
    if step is None:
        raise CodeRefusedError(WRONG_CODE)
    # Conditional on the stored step, so of two requests with one code only one wins.
    won = session.execute(
        update(User)
        .where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
    ).rowcount  # type: ignore[attr-defined]
    if won != 1:
        raise CodeRefusedError(REPLAYED_CODE)


def _use_recovery_code(
    session: Session, user: User, code: str, settings: Settings, now: datetime
) -> None:
    if not code or len(code) > MAX_CODE_INPUT:
        raise CodeRefusedError(WRONG_CODE)
    code_hash = _recovery_hash(code, settings)
    # One UPDATE that only an unused code matches: the same code in two requests wins once.
    used = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == code_hash,
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
    ).rowcount  # type: ignore[attr-defined]
    if used != 1:
        spent = session.scalar(
            select(RecoveryCode.id).where(
                RecoveryCode.user_id == user.id, RecoveryCode.code_hash == code_hash
            )
        )
        raise CodeRefusedError(USED_RECOVERY_CODE if spent is not None else WRONG_CODE)
    left = recovery_codes_left(session, user)
    audit.record(session, user, "user.2fa_recovery", "user", user.id, {"left": left}, now)


def verify_sign_in(
    session: Session, user: User, code: str, settings: Settings, client: str, now: datetime
) -> CodeKind:
    """The second step of a sign-in: a TOTP code or a recovery code, throttled.

    Returns which kind was accepted; a refused code raises ``CodeRefusedError`` (and
    is counted), a throttled client ``TooManyCodesError`` (and nothing is checked).
    """
    if not enrolled(user):
        raise TwoFactorError("Two-factor sign-in is not set up for this account.")
    if throttled(session, user, client, now):
        raise TooManyCodesError(TOO_MANY_CODES)
    cleaned = _normalise(code)
    kind: CodeKind = "totp" if cleaned.isdigit() else "recovery"
    try:
        if kind == "totp":
            _accept_totp(session, user, cleaned, settings, now)
        else:
            _use_recovery_code(session, user, cleaned, settings, now)
    except CodeRefusedError:
        _record_failure(session, user, client, now)
        raise
    # A right code forgives this client's typos, as a right password does.
    session.execute(delete(RateEvent).where(RateEvent.key == _pair_key(user, client)))
    return kind


# --- turning it off ---------------------------------------------------------------------


def _clear(session: Session, user: User) -> bool:
    """Forget the secret and the recovery codes; whether there was anything to forget."""
    had = user.totp_secret_encrypted is not None or enrolled(user)
    user.totp_secret_encrypted = None
    user.totp_confirmed_at = None
    user.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    session.flush()
    return had


def disable(session: Session, user: User, password: str, now: datetime) -> None:
    """The user turns their own two-factor sign-in off, proving it is them with
    the password. Audited as ``user.2fa_disable``."""
    if not users.verify_password(user, password):
        raise TwoFactorError("The password is not right.")
    if not enrolled(user):
        raise TwoFactorError("Two-factor sign-in is not on.")
    _clear(session, user)
    audit.record(session, user, "user.2fa_disable", "user", user.id, now=now)


def reset(session: Session, actor: Actor, user: User, now: datetime) -> bool:
    """For a locked-out user (lost phone and codes): two-factor sign-in is removed
    and every session of theirs ends. Audited as ``user.2fa_reset``; returns False
    (and records nothing) when there was nothing to reset."""
    if not _clear(session, user):
        return False
    users.revoke_sessions(session, user, now)
    audit.record(session, actor, "user.2fa_reset", "user", user.id, now=now)
    return True
