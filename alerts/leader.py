"""A lease in the database that lets exactly one clock act at a time.

Every tick the leader renews its lease; a clock that stops renewing loses it
after the TTL and another takes over. The conditional UPDATE is atomic on
SQLite and PostgreSQL alike, so two clocks never both believe they lead.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts.models import LeaderLease


def try_lead(session: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease ``name`` for ``holder``; True when ``holder`` leads."""
    renewed = session.execute(
        update(LeaderLease)
        .where(LeaderLease.name == name)
        .where(or_(LeaderLease.holder == holder, LeaderLease.expires_at < now))
        .values(holder=holder, expires_at=now + ttl)
    )
    if renewed.rowcount:  # type: ignore[attr-defined]
        return True
    try:
        with session.begin_nested():
            session.add(LeaderLease(name=name, holder=holder, expires_at=now + ttl))
    except IntegrityError:
        return False  # another holder has a live lease
    return True


def release(session: Session, name: str, holder: str, now: datetime) -> None:
    """Give the lease up at once, so a standby clock need not wait for the TTL."""
    session.execute(
        update(LeaderLease)
        .where(LeaderLease.name == name, LeaderLease.holder == holder)
        .values(expires_at=now)
    )
