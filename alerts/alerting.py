"""Immediate alerts: promised right after matching, throttled, held in quiet hours.

A subscriber gets at most ``alert_max_per_hour`` alerts in any hour; further
matches are not alerted and roll into their next digest (the digest builder
takes every match that no alert carried). Alerts that fall into the
subscriber's quiet hours are promised with a due time at the end of them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.compose import EntryCache, reader_locales
from alerts.config import Settings
from alerts.delivery.ledger import Promise, alert_key, promise
from alerts.delivery.queueing import message_id_for, queue_sending
from alerts.i18n import ENGLISH_UTC
from alerts.links import link_versions, subscriber_links
from alerts.matching.service import IndexCache, NewMatch, match_articles, reached_matches
from alerts.models import (
    Article,
    Delivery,
    DeliveryKind,
    Frequency,
    Interest,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from alerts.regions import default_gazetteer
from alerts.schedule import in_quiet_hours, quiet_hours_end

THROTTLE_WINDOW = timedelta(hours=1)


# Readers planned per slice: a distinct interest a million readers follow is
# planned in statements of this many readers, never one giant one.
ALERT_PLAN_SLICE = 5_000


def plan_alerts(
    session: Session, matches: Sequence[NewMatch], settings: Settings, now: datetime
) -> list[int]:
    """Promise one alert per (subscriber, article) for immediate subscribers.

    Readers are reached through the interests that point at the matched
    distinct interests, in slices of ``ALERT_PLAN_SLICE`` readers by id, so each
    slice's statements stay small however popular an interest is.
    Returns the ids of new ledger rows that are due now (held ones are picked
    up by the sweeper when their quiet hours end).
    """
    articles_of: dict[int, set[int]] = defaultdict(set)
    for match in matches:
        articles_of[match.distinct_id].add(match.article_id)
    if not articles_of:
        return []
    due_ids: list[int] = []
    after = 0
    while True:
        subscribers = _alert_readers(session, articles_of, now, after=after)
        if not subscribers:
            return due_ids
        due_ids.extend(_plan_slice(session, subscribers, articles_of, settings, now))
        if len(subscribers) < ALERT_PLAN_SLICE:
            return due_ids
        after = max(subscribers)


def _alert_readers(
    session: Session, articles_of: dict[int, set[int]], now: datetime, *, after: int
) -> dict[int, Subscriber]:
    """The next slice of immediate readers (ids above ``after``) following any of
    the matched distinct interests."""
    following = (
        select(Interest.id)
        .where(
            Interest.subscriber_id == Subscriber.id,
            Interest.distinct_id.in_(articles_of),
            Interest.distinct_since <= now,
        )
        .exists()
    )
    readers = session.scalars(
        select(Subscriber)
        .where(
            Subscriber.id > after,
            Subscriber.status == SubscriberStatus.CONFIRMED,
            Subscriber.frequency == Frequency.IMMEDIATE,
            Subscriber.paused.is_(False),
            following,
        )
        .where(~select(Suppression.id).where(Suppression.email == Subscriber.email).exists())
        .order_by(Subscriber.id)
        .limit(ALERT_PLAN_SLICE)
    )
    return {subscriber.id: subscriber for subscriber in readers}


def _plan_slice(
    session: Session,
    subscribers: dict[int, Subscriber],
    articles_of: dict[int, set[int]],
    settings: Settings,
    now: datetime,
) -> list[int]:
    """Promise the alerts of one slice of readers; returns the new ids due now."""
    followed = session.execute(
        select(Interest.subscriber_id, Interest.distinct_id).where(
            Interest.subscriber_id.in_(subscribers),
            Interest.distinct_id.in_(articles_of),
            Interest.distinct_since <= now,
        )
    )
    wanted = sorted(
        {
            (subscriber_id, article_id)
            for subscriber_id, distinct_id in followed
            for article_id in articles_of[distinct_id or 0]
        }
    )
    recent = session.execute(
        select(Delivery.subscriber_id, func.count(Delivery.id))
        .where(
            Delivery.subscriber_id.in_(subscribers),
            Delivery.kind == DeliveryKind.ALERT,
            Delivery.created_at > now - THROTTLE_WINDOW,
        )
        .group_by(Delivery.subscriber_id)
    )
    sent_recently: Counter[int] = Counter({row[0]: row[1] for row in recent if row[0]})
    promises: list[Promise] = []
    for subscriber_id, article_id in wanted:
        subscriber = subscribers[subscriber_id]
        if sent_recently[subscriber_id] >= settings.alert_max_per_hour:
            continue  # throttled: the next digest carries it
        sent_recently[subscriber_id] += 1
        key = alert_key(subscriber_id, article_id)
        due = now
        if in_quiet_hours(now, subscriber.timezone, subscriber.quiet_start, subscriber.quiet_end):
            assert subscriber.quiet_end is not None
            due = quiet_hours_end(now, subscriber.timezone, subscriber.quiet_end)
        promises.append(
            Promise(
                dedup_key=key,
                kind=DeliveryKind.ALERT,
                recipient=subscriber.email,
                message_id=message_id_for(settings, key),
                due_at=due,
                subscriber_id=subscriber_id,
                article_id=article_id,
            )
        )
    new_ids = promise(session, promises, now)
    due_now = {p.dedup_key for p in promises if p.due_at <= now}
    if len(due_now) == len(promises):
        return new_ids
    return list(
        session.scalars(
            select(Delivery.id).where(Delivery.id.in_(new_ids), Delivery.dedup_key.in_(due_now))
        )
    )


def compose_alerts(
    session: Session, deliveries: Sequence[Delivery], settings: Settings, now: datetime
) -> dict[int, tuple[str, dict[str, Any]]]:
    """Template contexts of alert deliveries: the article and why it matched."""
    article_ids = {d.article_id for d in deliveries}
    subscriber_ids = {d.subscriber_id for d in deliveries}
    articles = {
        a.id: a for a in session.scalars(select(Article).where(Article.id.in_(article_ids)))
    }
    explanations: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    reached = reached_matches(subscriber_ids, article_ids=article_ids).order_by(Interest.id)
    for match in session.execute(reached):
        explanations[(match.subscriber_id, match.article_id)].append(match.explanation)
    locales = reader_locales(session, subscriber_ids)
    versions = link_versions(session, subscriber_ids)
    entries = EntryCache(default_gazetteer())
    contexts: dict[int, tuple[str, dict[str, Any]]] = {}
    for delivery in deliveries:
        article = articles.get(delivery.article_id or -1)
        if article is None or delivery.subscriber_id is None:
            continue  # the article was deleted since: nothing to say
        reader = locales.get(delivery.subscriber_id, ENGLISH_UTC)
        contexts[delivery.id] = (
            "alert",
            {
                "language": reader.language,
                "subscriber": {"email": delivery.recipient},
                "article": entries.get(
                    article,
                    explanations[(delivery.subscriber_id, article.id)],
                    language=reader.language,
                    timezone=reader.timezone,
                ),
                "links": subscriber_links(
                    settings,
                    delivery.subscriber_id,
                    reader.language,
                    version=versions.get(delivery.subscriber_id, 0),
                    issued_at=delivery.created_at,
                ),
            },
        )
    return contexts


def process_new_articles(
    session: Session,
    article_ids: Sequence[int],
    cache: IndexCache,
    settings: Settings,
    now: datetime,
) -> list[int]:
    """Match new articles, promise the immediate alerts, queue their sending."""
    new_matches = match_articles(session, article_ids, cache, now)
    alert_ids = plan_alerts(session, new_matches, settings, now)
    queue_sending(session, alert_ids, settings, urgent=True)
    return alert_ids
