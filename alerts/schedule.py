"""When a subscriber's digest is due, in their own time zone.

A digest window ends at a *slot*: the subscriber's local send time, every day
(daily) or on their weekday (weekly). Slots are computed in the IANA zone, so
they stay at 07:00 local across DST changes; a send time that does not exist
on a spring-forward night moves forward by the gap, and one that happens
twice on a fall-back night falls at its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.errors import InvalidInputError
from alerts.models import Frequency


class UnknownTimezoneError(InvalidInputError):
    pass


@dataclass(frozen=True)
class Slot:
    """The most recent digest slot at or before a moment."""

    window: str  # "daily:2026-11-26" or "weekly:2026-W48": names the window in the ledger
    at: datetime  # aware UTC


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise UnknownTimezoneError(f"unknown time zone {name!r}") from error


def local_instant(day: datetime, at: time, tz: ZoneInfo) -> datetime:
    """``day``'s date at local time ``at`` in ``tz``, as aware UTC.

    PEP 495's fold=0 decides the odd cases: a wall time inside a DST gap moves
    forward by the gap (02:30 becomes 03:30 on a spring-forward night), and an
    ambiguous one takes its first occurrence.
    """
    return datetime.combine(day.date(), at, tzinfo=tz).astimezone(UTC)


def latest_slot(
    now: datetime, frequency: Frequency, timezone: str, send_at: time, weekly_day: int = 0
) -> Slot:
    """The last slot at or before ``now`` for this schedule.

    Immediate subscribers have a daily slot too: it carries the alerts the
    hourly throttle held back, when there are any.
    """
    tz = zone(timezone)
    local_now = now.astimezone(tz)
    if frequency is Frequency.WEEKLY:
        day = local_now - timedelta(days=(local_now.weekday() - weekly_day) % 7)
        slot = local_instant(day, send_at, tz)
        if slot > now:
            day -= timedelta(days=7)
            slot = local_instant(day, send_at, tz)
        year, week, _ = day.date().isocalendar()
        return Slot(window=f"weekly:{year}-W{week:02d}", at=slot)
    day = local_now
    slot = local_instant(day, send_at, tz)
    if slot > now:
        day -= timedelta(days=1)
        slot = local_instant(day, send_at, tz)
    return Slot(window=f"daily:{day.date().isoformat()}", at=slot)


def period_length(frequency: Frequency) -> timedelta:
    return timedelta(days=7) if frequency is Frequency.WEEKLY else timedelta(days=1)


def in_quiet_hours(now: datetime, timezone: str, start: time | None, end: time | None) -> bool:
    """Whether the subscriber's local clock is inside [start, end), which may wrap midnight."""
    if start is None or end is None or start == end:
        return False
    local = now.astimezone(zone(timezone)).time()
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_hours_end(now: datetime, timezone: str, end: time) -> datetime:
    """The next moment the local clock reads ``end``: when held alerts may go."""
    tz = zone(timezone)
    local_now = now.astimezone(tz)
    candidate = local_instant(local_now, end, tz)
    if candidate <= now:
        candidate = local_instant(local_now + timedelta(days=1), end, tz)
    return candidate
