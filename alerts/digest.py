"""Digests, built in small steps.

Planning (the clock): find subscribers whose latest slot is newer than the
end of their last window, promise one digest per window in the ledger, and
move their window on. Composing (a send task, per batch): gather each
window's matches in a few queries, drop what an alert already carried, rank,
collapse one story told by several sources, cap, group, shape. A window with
nothing in it is skipped: no empty digests.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from alerts.compose import EntryCache
from alerts.config import Settings
from alerts.delivery.ledger import Promise, digest_key, promise
from alerts.delivery.queueing import message_id_for
from alerts.i18n import ENGLISH_UTC, N_, ReaderLocale, format_day, translations
from alerts.links import link_versions, subscriber_links
from alerts.matching.service import reached_matches
from alerts.models import (
    Article,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Frequency,
    Interest,
    Match,
    Subscriber,
    SubscriberStatus,
)
from alerts.regions import default_gazetteer
from alerts.schedule import Slot, latest_slot, period_length

# Newer stories rank higher: a day's age costs as much as one body hit.
RECENCY_WEIGHT_PER_DAY = 1.0
# Region precision: a region named in the title or tags outranks one inferred.
REGION_ZONE_BONUS = {"tag": 1.5, "title": 1.5, "lead": 1.0, "body": 0.5}
OTHER_GROUP = N_("More for you")
# The digest's heading, by period; ``{date}`` is the window's end in the reader's zone.
PERIOD_LABELS = {"daily": N_("Daily digest, {date}"), "weekly": N_("Weekly digest, {date}")}
# Alert states that mean the reader has (or will have) the article already.
ALERTED_STATES = (DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.SENT)


# --- planning -----------------------------------------------------------------


def plan_due_digests(
    session: Session, settings: Settings, now: datetime, *, force: bool = False
) -> list[int]:
    """Promise the digests that are due at ``now``; returns the new ledger ids.

    Subscribers are grouped by schedule (zone, send time, frequency, weekday),
    so the slot arithmetic runs once per schedule, not once per reader, and
    only schedules with a reader whose window ends before the latest slot are
    read reader by reader: on most ticks that is none, and planning costs one
    grouped query. The ledger's unique key makes a second clock, or a repeated
    tick, a no-op. ``force`` (``alerts digests send --now``) closes a window at
    ``now`` for every daily and weekly reader, whatever their send time.
    """
    active = (Subscriber.status == SubscriberStatus.CONFIRMED, Subscriber.paused.is_(False))
    schedule = (
        Subscriber.timezone,
        Subscriber.send_at,
        Subscriber.frequency,
        Subscriber.weekly_day,
    )
    query = select(
        *schedule,
        func.min(Subscriber.last_digest_at),
        func.count(Subscriber.id) - func.count(Subscriber.last_digest_at),
    ).where(*active)
    if force:
        query = query.where(Subscriber.frequency != Frequency.IMMEDIATE)
    promises: list[Promise] = []
    for timezone, send_at, frequency, weekly_day, oldest, never in session.execute(
        query.group_by(*schedule)
    ):
        slot = (
            Slot(window=f"manual:{now:%Y-%m-%dT%H:%M:%S}", at=now)
            if force
            else latest_slot(now, frequency, timezone, send_at, weekly_day)
        )
        if not never and oldest is not None and oldest >= slot.at:
            continue  # every reader of this schedule has had this slot's digest
        due = session.execute(
            select(Subscriber.id, Subscriber.email, Subscriber.last_digest_at).where(
                *active,
                Subscriber.timezone == timezone,
                Subscriber.send_at == send_at,
                Subscriber.frequency == frequency,
                Subscriber.weekly_day == weekly_day,
                (Subscriber.last_digest_at.is_(None)) | (Subscriber.last_digest_at < slot.at),
            )
        ).all()
        for subscriber_id, email, since in due:
            key = digest_key(subscriber_id, slot.window)
            start = since or slot.at - period_length(frequency)
            promises.append(
                Promise(
                    dedup_key=key,
                    kind=DeliveryKind.DIGEST,
                    recipient=email,
                    message_id=message_id_for(settings, key),
                    due_at=now,
                    subscriber_id=subscriber_id,
                    payload={
                        "window": slot.window,
                        "since": start.isoformat(),
                        "until": slot.at.isoformat(),
                        "period": "weekly" if frequency is Frequency.WEEKLY else "daily",
                    },
                )
            )
    new_ids = promise(session, promises, now)
    _advance_windows(session, new_ids)
    return new_ids


def _advance_windows(session: Session, delivery_ids: Sequence[int]) -> None:
    """Move each reader's window start to the end of the digest just promised.

    Only for promises that are new: a window already promised (say by a manual
    ``digests send --now`` earlier that day) keeps its reader's start, so the
    next window covers the gap and no match is lost.
    """
    by_until: dict[str, list[int]] = defaultdict(list)
    for subscriber_id, payload in session.execute(
        select(Delivery.subscriber_id, Delivery.payload).where(Delivery.id.in_(delivery_ids))
    ):
        by_until[payload["until"]].append(subscriber_id)
    for until, subscriber_ids in by_until.items():
        session.execute(
            update(Subscriber)
            .where(Subscriber.id.in_(subscriber_ids))
            .values(last_digest_at=datetime.fromisoformat(until))
        )


# --- composing ----------------------------------------------------------------


@dataclass
class Candidate:
    """One article in one reader's window, with every explanation that put it there."""

    article: Article
    explanations: list[dict[str, Any]] = field(default_factory=list)
    interest_ids: set[int] = field(default_factory=set)
    score: float = 0.0
    also_reported_by: list[str] = field(default_factory=list)


class Gathered(NamedTuple):
    """Each delivery's candidates, and each reader's language and zone."""

    candidates: dict[int, list[Candidate]]
    locales: dict[int, ReaderLocale]


def gather(session: Session, deliveries: Sequence[Delivery]) -> Gathered:
    """Each delivery's matched articles in its window, minus those already alerted.

    The readers' language and zone come with their matches (a reader without
    matches gets no digest), so saying them costs no query of its own.
    """
    windows = {
        d.id: (
            datetime.fromisoformat(d.payload["since"]),
            datetime.fromisoformat(d.payload["until"]),
        )
        for d in deliveries
    }
    subscriber_ids = {d.subscriber_id for d in deliveries}
    earliest = min(since for since, _ in windows.values())
    latest = max(until for _, until in windows.values())
    matches = session.execute(
        # As text: readers share explanations, so each distinct one is decoded once.
        reached_matches(subscriber_ids, since=earliest, until=latest, explanation_as_text=True)
        .add_columns(Subscriber.language, Subscriber.timezone)
        .join(Subscriber, Subscriber.id == Interest.subscriber_id)
        .order_by(Match.id, Interest.id)
    ).all()
    alerted = set(
        session.execute(
            select(Delivery.subscriber_id, Delivery.article_id).where(
                Delivery.subscriber_id.in_(subscriber_ids),
                Delivery.kind == DeliveryKind.ALERT,
                Delivery.state.in_(ALERTED_STATES),
            )
        ).all()
    )
    article_ids = {m.article_id for m in matches}
    articles = (
        {a.id: a for a in session.scalars(select(Article).where(Article.id.in_(article_ids)))}
        if article_ids
        else {}
    )
    by_subscriber: dict[int, list[Any]] = defaultdict(list)
    locales: dict[int, ReaderLocale] = {}
    for m in matches:
        if m.subscriber_id not in locales:
            locales[m.subscriber_id] = ReaderLocale.of(m.language, m.timezone)
        if (m.subscriber_id, m.article_id) not in alerted:
            by_subscriber[m.subscriber_id].append(m)
    decoded: dict[str, dict[str, Any]] = {}
    by_delivery: dict[int, list[Candidate]] = {}
    for delivery in deliveries:
        since, until = windows[delivery.id]
        candidates: dict[int, Candidate] = {}
        for m in by_subscriber[delivery.subscriber_id or 0]:
            if not since <= m.matched_at < until:
                continue
            candidate = candidates.setdefault(m.article_id, Candidate(articles[m.article_id]))
            explanation = decoded.get(m.explanation)
            if explanation is None:
                explanation = decoded[m.explanation] = json.loads(m.explanation)
            candidate.explanations.append(explanation)
            candidate.interest_ids.add(m.interest_id)
            candidate.score = max(candidate.score, m.score)
        by_delivery[delivery.id] = list(candidates.values())
    return Gathered(by_delivery, locales)


def rank(candidates: list[Candidate], now: datetime) -> list[Candidate]:
    """Title hits over body hits, then recency, then region precision."""
    for candidate in candidates:
        published = candidate.article.published_at or candidate.article.ingested_at
        age_days = max((now - published).total_seconds(), 0.0) / 86_400
        region_bonus = max(
            (
                REGION_ZONE_BONUS.get(zone, 0.0)
                for explanation in candidate.explanations
                for region in explanation.get("regions", [])
                for zone in region.get("zones", [])
            ),
            default=0.0,
        )
        candidate.score = candidate.score + region_bonus - RECENCY_WEIGHT_PER_DAY * age_days
    return sorted(candidates, key=lambda c: (-c.score, -c.article.id))


def collapse(candidates: list[Candidate]) -> list[Candidate]:
    """One entry per story: near-duplicates fold into the best-ranked copy."""
    kept: dict[int, Candidate] = {}
    for candidate in candidates:
        story = candidate.article.duplicate_of_id or candidate.article.id
        head = kept.get(story)
        if head is None:
            kept[story] = candidate
            continue
        source = candidate.article.source_name
        if source and source != head.article.source_name and source not in head.also_reported_by:
            head.also_reported_by.append(source)
        head.explanations.extend(candidate.explanations)
    return list(kept.values())


def group(
    candidates: list[Candidate], by: str, interest_labels: dict[int, str]
) -> list[tuple[str, list[Candidate]]]:
    """Sections by region (the best-placed matched region) or by interest."""
    sections: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        sections.setdefault(_section_title(candidate, by, interest_labels), []).append(candidate)
    return sorted(sections.items(), key=lambda item: (item[0] == OTHER_GROUP, -len(item[1])))


def _section_title(candidate: Candidate, by: str, interest_labels: dict[int, str]) -> str:
    if by == "interest":
        labels = sorted(interest_labels.get(i, "") for i in candidate.interest_ids)
        return labels[0] if labels and labels[0] else OTHER_GROUP
    for explanation in candidate.explanations:
        for region in explanation.get("regions", []):
            return default_gazetteer().resolve(region["region_id"]).name
    return OTHER_GROUP


def compose_digests(
    session: Session, deliveries: Sequence[Delivery], settings: Settings, now: datetime
) -> dict[int, tuple[str, dict[str, Any]]]:
    """Template contexts for the digests that have something to say."""
    gathered, locales = gather(session, deliveries)
    interest_ids = {i for cs in gathered.values() for c in cs for i in c.interest_ids}
    labels = _interest_labels(session, interest_ids)
    versions = link_versions(session, (d.subscriber_id for d in deliveries))
    entries = EntryCache(default_gazetteer())
    contexts: dict[int, tuple[str, dict[str, Any]]] = {}
    for delivery in deliveries:
        stories = collapse(rank(gathered[delivery.id], now))
        if not stories:
            continue
        shown = stories[: settings.digest_max_articles]
        period = delivery.payload.get("period", "daily")
        until = datetime.fromisoformat(delivery.payload["until"])
        reader = locales.get(delivery.subscriber_id or 0, ENGLISH_UTC)
        gettext = translations(reader.language).gettext
        label = gettext(PERIOD_LABELS.get(period, PERIOD_LABELS["daily"]))
        contexts[delivery.id] = (
            "digest",
            {
                "language": reader.language,
                "subscriber": {"email": delivery.recipient},
                "period": period,
                "period_label": label.format(
                    date=format_day(until, reader.language, reader.timezone)
                ),
                "groups": [
                    {
                        "title": gettext(title) if title == OTHER_GROUP else title,
                        "entries": [
                            entries.get(
                                c.article,
                                c.explanations,
                                c.also_reported_by,
                                language=reader.language,
                                timezone=reader.timezone,
                            )
                            for c in section
                        ],
                    }
                    for title, section in group(shown, settings.digest_group_by, labels)
                ],
                "total": len(shown),
                "more": len(stories) - len(shown),
                "links": subscriber_links(
                    settings,
                    delivery.subscriber_id or 0,
                    reader.language,
                    version=versions.get(delivery.subscriber_id or 0, 0),
                    issued_at=delivery.created_at,
                ),
            },
        )
    return contexts


def _interest_labels(session: Session, interest_ids: set[int]) -> dict[int, str]:
    if not interest_ids:
        return {}
    labels: dict[int, str] = {}
    for interest_id, query, regions in session.execute(
        select(Interest.id, Interest.query, Interest.regions).where(Interest.id.in_(interest_ids))
    ):
        names = [default_gazetteer().resolve(r).name for r in regions or []]
        labels[interest_id] = " · ".join(filter(None, [query, *names]))
    return labels
