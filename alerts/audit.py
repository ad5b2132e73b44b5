"""The audit log: who did what to which record, and when.

Entries name records by id. A subscriber's address must not be copied into
the log: erasure deletes the subscriber row, and a log that kept the address
would undo it. ``record`` refuses details that look like an address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.db import utcnow
from alerts.errors import InvalidInputError
from alerts.models import AuditEntry, User

# Anything shaped like local@domain.tld, wherever it sits in a detail value.
_ADDRESS = re.compile(r"[^\s@\"'<>]+@[^\s@\"'<>]+\.[^\s@\"'<>]+")
AUDIT_PAGE_SIZE = 50
# Who did something: a console or API user, or a name for the rest ("cli",
# "api:<key>", "import", "subscriber", "system"). Every domain command takes one.
Actor = User | str


class AuditDetailError(InvalidInputError):
    """A detail that would copy an e-mail address into the log."""


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in [str(key), *_strings(item)]]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return [str(value)]


def record(
    session: Session,
    actor: Actor,
    action: str,
    target_type: str | None,
    target_id: int | str | None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
    *,
    via: str | None = None,
) -> AuditEntry:
    """Add one entry; flush only. ``actor`` is a user, or a name such as "command line".

    ``via`` names the edge when the actor alone does not tell it (a user's
    API token rather than the console).
    """
    detail = {**({"via": via} if via else {}), **(detail or {})}
    if any(_ADDRESS.search(text) for text in _strings(detail)):
        raise AuditDetailError(f"audit detail for {action} names an e-mail address; use ids")
    entry = AuditEntry(
        actor_id=actor.id if isinstance(actor, User) else None,
        actor=actor.email if isinstance(actor, User) else actor,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        detail=detail,
        at=now or utcnow(),
    )
    session.add(entry)
    session.flush()
    return entry


@dataclass
class AuditPage:
    entries: list[AuditEntry]
    page: int
    pages: int


def recent(session: Session, page: int = 1, per_page: int = AUDIT_PAGE_SIZE) -> AuditPage:
    """Newest first, one page at a time."""
    total = int(session.scalar(select(func.count(AuditEntry.id))) or 0)
    pages = max(1, -(-total // per_page))
    page = min(max(page, 1), pages)
    entries = session.scalars(
        select(AuditEntry)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return AuditPage(entries=list(entries), page=page, pages=pages)
