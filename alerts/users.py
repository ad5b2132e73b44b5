"""People who sign in (editors, admins), their browser sessions and API tokens.

Passwords are kept only as argon2id hashes. Sign-in answers the same way for
an unknown address and a wrong password, and costs the same time, so the
login form cannot be used to learn who has an account.

Failed sign-ins are counted in ``rate_events`` (shared by every web process)
per pair of client address and account: after a few, each further try from
that client for that account waits twice as long as the last. Nothing is
counted per account alone, so somebody guessing the admin's password from one
place never locks the admin out from another; a looser cap per client across
all accounts stops one client from trying many accounts.

A browser session is a random secret in a cookie; ``web_sessions`` keeps its
SHA-256, so sessions can be listed and revoked: at logout, and for all of a
user's browsers when their password or role changes or they are deactivated.

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

from alerts import audit
from alerts.audit import Actor
from alerts.config import Settings
from alerts.delivery.message import InvalidAddressError, validate_address
from alerts.errors import InvalidInputError
from alerts.models import ApiToken, RateEvent, Role, User, WebSession

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1000  # argon2 hashes anything, but a megabyte form field is abuse
GENERATED_PASSWORD_BYTES = 15  # 20 URL-safe characters
API_TOKEN_BYTES = 32
API_TOKEN_PREFIX = "alerts_"  # noqa: S105 - a marker, not a secret; lets secret scanners and people recognise a leaked token
TOKEN_NAME_LENGTH = 200
# Login throttle (see the module docstring). Failures older than the window
# no longer count; the backoff doubles from START up to MAX per extra failure.
LOGIN_WINDOW = timedelta(hours=1)
LOGIN_FREE_FAILURES = 5
LOGIN_BACKOFF_START = timedelta(minutes=1)
LOGIN_BACKOFF_MAX = timedelta(minutes=15)
LOGIN_FAILURES_PER_CLIENT = 50
# A session's last use is written at most this often, not on every request.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
LOGIN_EVENT_PREFIX = "login-failure"

_hasher = PasswordHasher()


class UserError(InvalidInputError):
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


def create_user(
    session: Session, actor: Actor, email: str, password: str, role: Role, now: datetime
) -> User:
    """Store a new user with a hashed password, audited; flush only."""
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
    audit.record(session, actor, "user.add", "user", user.id, {"role": role.value}, now)
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


def change_password(
    session: Session, actor: Actor, user: User, password: str, now: datetime
) -> None:
    """Set a new password (one's own, or an admin's reset); every session is revoked."""
    check_password_rules(password)
    user.password_hash = _hasher.hash(password)
    user.password_changed_at = now
    revoke_sessions(session, user, now)
    session.flush()
    action = "user.password" if actor is user else "user.reset_password"
    audit.record(session, actor, action, "user", user.id, now=now)


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def set_role(session: Session, actor: Actor, user: User, role: Role, now: datetime) -> None:
    """A new role means signing in again, so no open page keeps powers it lost."""
    if user.role is role:
        return
    change = {"from": user.role.value, "to": role.value}
    user.role = role
    revoke_sessions(session, user, now)
    session.flush()
    audit.record(session, actor, "user.role", "user", user.id, change, now)


def set_active(session: Session, actor: Actor, user: User, active: bool, now: datetime) -> None:
    """Deactivating also ends the user's sessions; their API tokens stop at verification."""
    user.active = active
    if not active:
        user.password_changed_at = now
        revoke_sessions(session, user, now)
    session.flush()
    action = "user.activate" if active else "user.deactivate"
    audit.record(session, actor, action, "user", user.id, now=now)


def remove_user(
    session: Session, actor: Actor, user: User, now: datetime, *, via: str | None = None
) -> None:
    """Delete a staff account (its sessions and tokens go with it) and audit it.

    The audit log keeps what they did under their address; newsletters they
    wrote stay, without an author. Nobody removes themselves, and the last
    active admin stays, so the console always has someone who can manage it.
    """
    if isinstance(actor, User) and actor.id == user.id:
        raise UserError("ask another admin to remove your own account")
    if user.role is Role.ADMIN and user.active:
        admins = session.scalar(
            select(func.count(User.id)).where(User.role == Role.ADMIN, User.active.is_(True))
        )
        if (admins or 0) <= 1:
            raise UserError(f"{user.email} is the last active admin; add another admin first")
    user_id, role = user.id, user.role.value
    session.delete(user)
    session.flush()
    audit.record(session, actor, "user.delete", "user", user_id, {"role": role}, now, via=via)


# --- login throttle -------------------------------------------------------------


def _digest(text: str) -> str:
    # Hashed: the key column is short, and the table need not hold addresses.
    return hashlib.sha256(text.encode()).hexdigest()


def _pair_key(email: str, client: str) -> str:
    return f"{LOGIN_EVENT_PREFIX}:pair:{_digest(client + chr(10) + email.strip().lower())}"


def _client_key(client: str) -> str:
    return f"{LOGIN_EVENT_PREFIX}:client:{_digest(client)}"


def recent_failures(session: Session, key: str, now: datetime) -> tuple[int, datetime | None]:
    """How many failures under ``key`` inside the window, and when the last was."""
    count, last = session.execute(
        select(func.count(RateEvent.id), func.max(RateEvent.at)).where(
            RateEvent.key == key, RateEvent.at > now - LOGIN_WINDOW
        )
    ).one()
    return int(count or 0), last


def login_backoff(failures: int) -> timedelta:
    """How long to wait after the last failure, given the failures so far."""
    if failures < LOGIN_FREE_FAILURES:
        return timedelta(0)
    extra = min(failures - LOGIN_FREE_FAILURES, 20)  # 2**20 minutes is past any cap
    return min(LOGIN_BACKOFF_START * 2**extra, LOGIN_BACKOFF_MAX)


def login_throttled(session: Session, email: str, client: str, now: datetime) -> bool:
    """Whether this client must wait before trying this account again, or has
    failed too often across accounts. Another client is never affected."""
    failures, last = recent_failures(session, _pair_key(email, client), now)
    if last is not None and now < last + login_backoff(failures):
        return True
    client_failures, _ = recent_failures(session, _client_key(client), now)
    return client_failures >= LOGIN_FAILURES_PER_CLIENT


def record_login_failure(session: Session, email: str, client: str, now: datetime) -> None:
    session.add_all(
        [
            RateEvent(key=_pair_key(email, client), at=now),
            RateEvent(key=_client_key(client), at=now),
        ]
    )
    # Old events never count again; dropping them keeps the table small.
    session.execute(
        delete(RateEvent).where(
            RateEvent.key.startswith(LOGIN_EVENT_PREFIX), RateEvent.at <= now - LOGIN_WINDOW
        )
    )
    session.flush()


def clear_login_failures(session: Session, email: str, client: str) -> None:
    """A correct password forgives this client's earlier typos for this account."""
    session.execute(delete(RateEvent).where(RateEvent.key == _pair_key(email, client)))


# --- browser sessions -------------------------------------------------------------


def session_lifetime(settings: Settings) -> timedelta:
    return timedelta(hours=settings.session_max_age_hours)


def session_token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_web_session(
    session: Session, user: User, secret: str, now: datetime, expires_at: datetime
) -> WebSession:
    """Store a new sign-in (only the secret's hash); flush only."""
    # Sessions past their end are dead weight; dropping them here keeps the table small.
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    row = WebSession(
        token_hash=session_token_hash(secret),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row


def web_session_user(session: Session, secret: str, now: datetime) -> User | None:
    """The active user of a live, unrevoked session, else None; notes its use."""
    if len(secret) > MAX_PASSWORD_LENGTH:
        return None
    row = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == session_token_hash(secret))
    ).first()
    if row is None:
        return None
    web_session, user = row
    if web_session.revoked_at is not None or web_session.expires_at <= now or not user.active:
        return None
    if now - web_session.last_seen_at >= LAST_SEEN_RESOLUTION:
        web_session.last_seen_at = now
    return user


def revoke_web_session(session: Session, secret: str, now: datetime) -> None:
    """End one sign-in (logout); unknown secrets are ignored."""
    row = session.scalar(
        select(WebSession).where(WebSession.token_hash == session_token_hash(secret))
    )
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
    session.flush()


def revoke_sessions(session: Session, user: User, now: datetime) -> int:
    """End every open sign-in of ``user``; returns how many were open."""
    rows = list(
        session.scalars(
            select(WebSession).where(
                WebSession.user_id == user.id,
                WebSession.revoked_at.is_(None),
                WebSession.expires_at > now,
            )
        )
    )
    for row in rows:
        row.revoked_at = now
    session.flush()
    return len(rows)


# --- API tokens -------------------------------------------------------------------


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once; only its hash is stored


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_token(
    session: Session, actor: Actor, user: User, name: str, now: datetime
) -> NewToken:
    """A named token for ``user``, audited; the secret is shown once and stored hashed."""
    name = name.strip()
    if not name or len(name) > TOKEN_NAME_LENGTH:
        raise UserError(f"a token needs a name of 1 to {TOKEN_NAME_LENGTH} characters")
    secret = API_TOKEN_PREFIX + secrets.token_urlsafe(API_TOKEN_BYTES)
    token = ApiToken(user_id=user.id, name=name, token_hash=_token_hash(secret), created_at=now)
    session.add(token)
    session.flush()
    audit.record(session, actor, "token.create", "api_token", token.id, now=now)
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


def revoke_api_token(session: Session, actor: Actor, token: ApiToken, now: datetime) -> None:
    """The token stops working at once; revoking twice keeps the first moment."""
    if token.revoked_at is None:
        token.revoked_at = now
    session.flush()
    audit.record(session, actor, "token.revoke", "api_token", token.id, now=now)
