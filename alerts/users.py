"""People who sign in (editors, admins) and the API tokens they hold.

Passwords are kept only as argon2id hashes. Sign-in answers the same way for
an unknown address and a wrong password, and costs the same time, so the
login form cannot be used to learn who has an account. Failed attempts are
counted in ``rate_events`` (shared by every web process) and refused once a
small budget is spent.

An API token's secret is shown once, when it is made; the database keeps its
SHA-256, which is enough for a random 256-bit secret and lets a lookup by
hash find it without a slow hash per request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from alerts.delivery.message import InvalidAddressError, validate_address
from alerts.models import ApiToken, RateEvent, Role, User

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1000  # argon2 hashes anything, but a megabyte form field is abuse
GENERATED_PASSWORD_BYTES = 15  # 20 URL-safe characters
API_TOKEN_BYTES = 32
API_TOKEN_PREFIX = "alerts_"  # noqa: S105 - a marker, not a secret; lets secret scanners and people recognise a leaked token
TOKEN_NAME_LENGTH = 200
# Login throttle: at most this many failures per address, and per client
# address, inside the window; both limits are checked before the password.
LOGIN_WINDOW = timedelta(minutes=15)
LOGIN_FAILURES_PER_ACCOUNT = 5
LOGIN_FAILURES_PER_CLIENT = 20
LOGIN_EVENT_PREFIX = "login-failure"

_hasher = PasswordHasher()


class UserError(ValueError):
    """Input that cannot become or change a user; the message says why."""


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    """A hash to verify against when the address is unknown, so both answers take as long."""
    return _hasher.hash(secrets.token_urlsafe(GENERATED_PASSWORD_BYTES))


def normalise_email(email: str) -> str:
    try:
        return validate_address(email.strip()).lower()
    except InvalidAddressError as error:
        raise UserError(str(error)) from error


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"the password may have at most {MAX_PASSWORD_LENGTH} characters")


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError as error:
        choices = ", ".join(role.value for role in Role)
        raise UserError(f"role {value!r} is not one of {choices}") from error


def create_user(session: Session, email: str, password: str, role: Role, now: datetime) -> User:
    """Store a new user with a hashed password; flush only."""
    address = normalise_email(email)
    check_password_rules(password)
    if session.scalar(select(User.id).where(User.email == address)) is not None:
        raise UserError(f"{address} already has an account")
    user = User(
        email=address,
        password_hash=_hasher.hash(password),
        role=role,
        active=True,
        password_changed_at=now,
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.email)))


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with this address and password, else None (whatever the reason).

    A hash made with older argon2 parameters is replaced on the way in.
    """
    user = find_user(session, email) if len(password) <= MAX_PASSWORD_LENGTH else None
    stored = user.password_hash if user is not None else _decoy_hash()
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(stored):
        user.password_hash = _hasher.hash(password)
    return user


def change_password(session: Session, user: User, password: str, now: datetime) -> None:
    """Set a new password; every session started before ``now`` stops working."""
    check_password_rules(password)
    user.password_hash = _hasher.hash(password)
    user.password_changed_at = now
    session.flush()


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def set_role(session: Session, user: User, role: Role) -> None:
    user.role = role
    session.flush()


def set_active(session: Session, user: User, active: bool, now: datetime) -> None:
    """Deactivating also ends the user's sessions; their API tokens stop at verification."""
    user.active = active
    if not active:
        user.password_changed_at = now
    session.flush()


# --- login throttle -------------------------------------------------------------


def _account_key(email: str) -> str:
    # Hashed: the key column is short, and the table need not hold addresses.
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return f"{LOGIN_EVENT_PREFIX}:account:{digest}"


def _client_key(client: str) -> str:
    return f"{LOGIN_EVENT_PREFIX}:client:{client[:100]}"


def _failures(session: Session, key: str, now: datetime) -> int:
    count = session.scalar(
        select(func.count(RateEvent.id)).where(
            RateEvent.key == key, RateEvent.at > now - LOGIN_WINDOW
        )
    )
    return int(count or 0)


def login_throttled(session: Session, email: str, client: str, now: datetime) -> bool:
    """Whether this address or this client has used up its failed attempts."""
    return (
        _failures(session, _account_key(email), now) >= LOGIN_FAILURES_PER_ACCOUNT
        or _failures(session, _client_key(client), now) >= LOGIN_FAILURES_PER_CLIENT
    )


def record_login_failure(session: Session, email: str, client: str, now: datetime) -> None:
    session.add_all(
        [RateEvent(key=_account_key(email), at=now), RateEvent(key=_client_key(client), at=now)]
    )
    # Old events never count again; dropping them keeps the table small.
    session.execute(
        delete(RateEvent).where(
            RateEvent.key.startswith(LOGIN_EVENT_PREFIX), RateEvent.at <= now - LOGIN_WINDOW
        )
    )
    session.flush()


def clear_login_failures(session: Session, email: str) -> None:
    """A correct password forgives the account's earlier typos."""
    session.execute(delete(RateEvent).where(RateEvent.key == _account_key(email)))


# --- API tokens -------------------------------------------------------------------


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once; only its hash is stored


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_token(session: Session, user: User, name: str, now: datetime) -> NewToken:
    name = name.strip()
    if not name or len(name) > TOKEN_NAME_LENGTH:
        raise UserError(f"a token needs a name of 1 to {TOKEN_NAME_LENGTH} characters")
    secret = API_TOKEN_PREFIX + secrets.token_urlsafe(API_TOKEN_BYTES)
    token = ApiToken(user_id=user.id, name=name, token_hash=_token_hash(secret), created_at=now)
    session.add(token)
    session.flush()
    return NewToken(token=token, secret=secret)


def verify_api_token(session: Session, secret: str, now: datetime) -> User | None:
    """The active user behind a live token (and note its use), else None."""
    if not secret.startswith(API_TOKEN_PREFIX):
        return None
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == _token_hash(secret))
    ).first()
    if row is None:
        return None
    token, user = row
    if token.revoked_at is not None or not user.active:
        return None
    token.last_used_at = now
    return user


def tokens_of(session: Session, user: User) -> list[ApiToken]:
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
        )
    )


def revoke_api_token(session: Session, token: ApiToken, now: datetime) -> None:
    if token.revoked_at is None:
        token.revoked_at = now
    session.flush()
