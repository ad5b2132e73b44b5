"""Matches stored once per distinct interest reach readers as per-reader rows did:
an edit keeps what the old meaning matched, a reader who follows a meaning
later does not get its older matches, and the digest carries exactly that."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.digest import compose_digests, plan_due_digests
from alerts.matching.service import IndexCache, match_articles, reached_matches
from alerts.models import Delivery, Interest, InterestLink, Match
from alerts.regions import default_gazetteer
from alerts.subscribers import edit_interest
from tests.conftest import RecordedJobs
from tests.factories import insert_articles, insert_interests, insert_readers, reader_row


def reached_articles(database: Database, subscriber_id: int) -> set[int]:
    with database.session_scope() as session:
        return {m.article_id for m in session.execute(reached_matches([subscriber_id]))}


def test_an_edit_keeps_old_matches_and_a_late_follower_gets_only_new_ones(
    database: Database, recorded_jobs: RecordedJobs
) -> None:
    settings = get_settings()
    now = utcnow()
    base = now - timedelta(days=2)
    cache = IndexCache(default_gazetteer(), settings)
    with database.session_scope() as session:
        [editor, late] = insert_readers(
            session,
            [reader_row("editor@example.org", base), reader_row("late@example.org", base)],
        )
        [interest_id] = insert_interests(session, [editor], ["flood"], base)
        [flood] = insert_articles(
            session, [("Flood in Tbilisi", "The river rose overnight.")], "flood", base
        )
    with database.session_scope() as session:
        match_articles(session, [flood], cache, base + timedelta(hours=1))
    with database.session_scope() as session:
        interest = session.get(Interest, interest_id)
        assert interest is not None
        edit_interest(
            session, "admin", interest, "avalanche", [], settings, base + timedelta(hours=2)
        )
        insert_interests(session, [late], ["flood"], base + timedelta(hours=3))
        [both] = insert_articles(
            session,
            [("Avalanche after the flood", "An avalanche closed the road; the flood receded.")],
            "both",
            base + timedelta(hours=4),
        )
    with database.session_scope() as session:
        match_articles(session, [both], cache, base + timedelta(hours=4))

    # One row per (article, meaning): "flood" matched both articles, "avalanche" one.
    with database.session_scope() as session:
        assert session.scalar(select(func.count(Match.id))) == 3
        links = session.execute(
            select(InterestLink.distinct_id, InterestLink.until).where(
                InterestLink.interest_id == interest_id
            )
        ).all()
    assert sorted(until is None for _, until in links) == [False, True]  # closed, open
    assert reached_articles(database, editor) == {flood, both}
    assert reached_articles(database, late) == {both}

    # The digest carries the same: both for the reader who edited, the later one
    # only for the late follower.
    with database.session_scope() as session:
        planned = plan_due_digests(session, settings, now)
        deliveries = session.scalars(select(Delivery).where(Delivery.id.in_(planned))).all()
        composed = compose_digests(session, deliveries, settings, now)
        titles = {
            delivery.subscriber_id: sorted(
                entry["title"]
                for group in composed[delivery.id][1]["groups"]
                for entry in group["entries"]
            )
            for delivery in deliveries
        }
    assert titles == {
        editor: ["Avalanche after the flood", "Flood in Tbilisi"],
        late: ["Avalanche after the flood"],
    }
