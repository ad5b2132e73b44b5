"""Delivery benchmark: personalised digests and alert latency on the production stack.

PostgreSQL, Redis as the broker, two Celery worker processes, and Postfix's
smtp-sink on loopback as the relay (aiosmtpd tops out near 1,500 messages/s:
a benchmark against it measures aiosmtpd). It prints:

- digests/s: 20,000 subscribers, each with 10 matched articles, planned by
  the digest planner, composed, rendered and handed to SMTP by the workers;
- p50/p95 alert latency: from an article's ingest commit to the ledger's
  record that SMTP accepted the alert;
- a baseline measured in the same run: the simplest sender (a loop that
  queries each reader's articles, renders with Jinja2, builds a stdlib
  EmailMessage and sends it over one SMTP connection).

Usage: .venv/bin/python bench/deliver.py [--subscribers 20000] [--baseline 2000]
Needs PostgreSQL and Redis on 127.0.0.1 and /usr/sbin/smtp-sink
(Debian package postfix). Everything runs on loopback.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import smtplib
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import psycopg
import redis
from jinja2 import Environment
from sqlalchemy import func, insert, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_BROKER = "redis://127.0.0.1:6379/9"
SMTP_SINK = "/usr/sbin/smtp-sink"
ARTICLES_PER_DIGEST = 10
ARTICLE_POOL = 300
ALERT_SUBSCRIBERS = 200
ALERT_ARTICLES = 20
ALERT_INTERVAL_SECONDS = 0.5
WORKERS = 2
TIMEOUT_SECONDS = 900

BASELINE_TEMPLATE = """<html><body><h1>Your digest</h1>{% for a in articles %}
<h2><a href="{{ a.url }}">{{ a.title }}</a></h2><p>{{ a.lead }}</p>{% endfor %}</body></html>"""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--baseline", type=int, default=2_000, help="messages for the baseline")
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork"])
    parser.add_argument("--concurrency", type=int, default=8, help="per worker process")
    parser.add_argument("--redis", default=REDIS_BROKER, help="broker database (it is flushed)")
    args = parser.parse_args()
    if not Path(SMTP_SINK).exists():
        sys.exit(f"{SMTP_SINK} is missing: apt-get install postfix (smtp-sink is in it)")

    database_name = f"alerts_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database_name}"')
    redis.Redis.from_url(args.redis).flushdb()
    port = free_port()
    sink = subprocess.Popen(
        [SMTP_SINK, "-u", "nobody", f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    data_dir = Path(f"/tmp/{database_name}")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")},
        "ALERTS_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database_name}",
        "ALERTS_BROKER_URL": args.redis,
        "ALERTS_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "ALERTS_SECRET_KEY": "bench",
        "ALERTS_DATA_DIR": str(data_dir),
        "ALERTS_ALERT_MAX_PER_HOUR": "100000",
        "ALERTS_MAIL_FROM": "Bench <bench@bench.example.org>",
        "PYTHONPATH": str(REPO),
    }
    os.environ.update(env)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        run(args, env, port, workers)
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
        sink.terminate()
        sink.wait()
        from alerts.db import _databases

        for database in _databases.values():
            database.dispose()
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)')


def run(
    args: argparse.Namespace, env: dict[str, str], port: int, workers: list[subprocess.Popen[bytes]]
) -> None:
    from alerts import jobs
    from alerts.config import get_settings
    from alerts.db import get_database, utcnow
    from alerts.delivery.queueing import queue_sending
    from alerts.digest import plan_due_digests
    from alerts.models import Delivery, DeliveryKind, DeliveryState
    from alerts.progress import Progress
    from workers.celery_app import create_app
    from workers.dispatch import sender_for

    settings = get_settings()
    database = get_database(settings)
    app = create_app(settings)
    jobs.set_job_sender(sender_for(app))

    print(f"seeding {args.subscribers} subscribers x {ARTICLES_PER_DIGEST} matched articles ...")
    started = time.perf_counter()
    emails = seed(database, args.subscribers)
    with database.engine.connect() as connection:
        # Fresh tables have no planner statistics; production ones do.
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    print(f"  seeded in {time.perf_counter() - started:.1f} s")

    print("baseline: simplest sender (per-reader query, Jinja2, EmailMessage, one SMTP connection)")
    baseline_rate = baseline(database, emails[: args.baseline], port)
    print(f"  {args.baseline} messages, {baseline_rate:,.0f} messages/s")

    for n in range(WORKERS):
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "alerts",
                    "worker",
                    "--pool",
                    args.pool,
                    "--concurrency",
                    str(args.concurrency),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        del n
    time.sleep(4)  # let both workers connect before the clock starts

    print(
        f"digests: {args.subscribers} through the pipeline ({WORKERS} worker processes, "
        f"{args.pool} pool, concurrency {args.concurrency})"
    )
    started = time.perf_counter()
    with database.session_scope() as session:
        planned = plan_due_digests(session, settings, utcnow())
        queue_sending(session, planned, settings)
    planned_in = time.perf_counter() - started

    def sent() -> int:
        with database.session_scope() as session:
            return (
                session.scalar(
                    select(func.count(Delivery.id)).where(
                        Delivery.kind == DeliveryKind.DIGEST, Delivery.state == DeliveryState.SENT
                    )
                )
                or 0
            )

    bar = Progress(len(planned), "  sent")
    while (done := sent()) < len(planned):
        bar.advance(done - bar.done)
        if time.perf_counter() - started > TIMEOUT_SECONDS:
            sys.exit(f"timed out with {done} of {len(planned)} digests sent")
        time.sleep(0.2)
    bar.advance(done - bar.done)
    bar.close()
    elapsed = time.perf_counter() - started
    sending = elapsed - planned_in
    print(f"  planned {len(planned)} in {planned_in:.2f} s; all sent {sending:.1f} s later")
    print(
        f"  {len(planned) / elapsed:,.0f} digests/s planning included, "
        f"{len(planned) / sending:,.0f} digests/s sending alone (target >= 1,000); "
        f"{len(planned) / elapsed / baseline_rate:.1f}x the baseline"
    )

    latencies = alert_latencies(database)
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(
        f"alerts: {len(latencies)} alerts from {ALERT_ARTICLES} articles, one every "
        f"{ALERT_INTERVAL_SECONDS} s, {ALERT_SUBSCRIBERS} immediate readers"
    )
    print(f"  latency ingest -> SMTP accepted: p50 {p50:.2f} s, p95 {p95:.2f} s (target <= 2 s)")


def seed(database: object, count: int) -> list[str]:
    from alerts.config import get_settings
    from alerts.db import Database, utcnow
    from alerts.matching.service import IndexCache
    from alerts.models import Article, Frequency, Interest, Match, Subscriber, SubscriberStatus
    from alerts.regions import default_gazetteer

    assert isinstance(database, Database)
    rng = random.Random(7)
    now = utcnow()
    since = now - timedelta(days=2)
    words = [f"topic{n}" for n in range(ARTICLE_POOL)]
    with database.session_scope() as session:
        article_ids = session.scalars(
            insert(Article).returning(Article.id, sort_by_parameter_order=True),
            [
                {
                    "title": f"Regional report on {word}: officials meet in Tbilisi",
                    "lead": f"Officials discussed {word} and its effect on the region in detail.",
                    "body": f"Officials discussed {word} and its effect on the region in detail.",
                    "url": f"https://bench.example.org/{word}",
                    "fingerprint": f"bench-{word}",
                    "title_key": f"bench-{word}",
                    "language": "en",
                    "tags": ["Bench"],
                    "source_name": "Bench Desk",
                    "ingested_at": since,
                    "published_at": since,
                }
                for word in words
            ],
        ).all()
        emails = [f"reader{n:06d}@bench.example.org" for n in range(count)]
        subscriber_ids = session.scalars(
            insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True),
            [
                {
                    "email": email,
                    "status": SubscriberStatus.CONFIRMED,
                    "frequency": Frequency.DAILY,
                    "timezone": "UTC",
                    "send_at": datetime.min.time(),
                    "weekly_day": 0,
                    "language": "en",
                    "paused": False,
                    "created_at": since,
                    "confirmed_at": since,
                    "last_digest_at": since,
                }
                for email in emails
            ],
        ).all()
        picks = [rng.sample(range(ARTICLE_POOL), ARTICLES_PER_DIGEST) for _ in subscriber_ids]
        interest_ids = session.scalars(
            insert(Interest).returning(Interest.id, sort_by_parameter_order=True),
            [
                {
                    "subscriber_id": s,
                    "query": " OR ".join(words[p] for p in pick),
                    "regions": [],
                    "created_at": since,
                    "updated_at": since,
                }
                for s, pick in zip(subscriber_ids, picks, strict=True)
            ],
        ).all()
        # The match worker's own refresh points each interest at its distinct
        # interest; a match is stored once per (article, distinct interest).
        IndexCache(default_gazetteer(), get_settings()).refresh(session, since)
        linked = select(Interest.id, Interest.distinct_id).where(Interest.id.in_(interest_ids))
        distinct_of = dict(session.execute(linked).all())
        matched = {
            (article_ids[p], distinct_of[i], words[p])
            for i, pick in zip(interest_ids, picks, strict=True)
            for p in pick
        }
        rows = [
            {
                "article_id": article_id,
                "distinct_id": distinct_id,
                "score": 3.0,
                "explanation": {"terms": [{"term": word, "zones": ["title"]}], "regions": []},
                "matched_at": since + timedelta(hours=1),
            }
            for article_id, distinct_id, word in sorted(matched)
        ]
        for start in range(0, len(rows), 10_000):
            session.execute(insert(Match), rows[start : start + 10_000])
        alert_readers = session.scalars(
            insert(Subscriber).returning(Subscriber.id),
            [
                {
                    "email": f"alert{n:04d}@bench.example.org",
                    "status": SubscriberStatus.CONFIRMED,
                    "frequency": Frequency.IMMEDIATE,
                    "timezone": "UTC",
                    "send_at": datetime.min.time(),
                    "weekly_day": 0,
                    "language": "en",
                    "paused": False,
                    "created_at": now,
                    "confirmed_at": now,
                    "last_digest_at": now,
                }
                for n in range(ALERT_SUBSCRIBERS)
            ],
        ).all()
        session.execute(
            insert(Interest),
            [
                {
                    "subscriber_id": s,
                    "query": "avalanche",
                    "regions": [],
                    "created_at": now,
                    "updated_at": now,
                }
                for s in alert_readers
            ],
        )
    return emails


def baseline(database: object, emails: list[str], port: int) -> float:
    """The simplest sender, over the same data, for comparison."""
    from alerts.db import Database
    from alerts.matching.service import reached_matches
    from alerts.models import Article, Match, Subscriber

    assert isinstance(database, Database)
    template = Environment(autoescape=True).from_string(BASELINE_TEMPLATE)
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp, database.session_scope() as session:
        for email in emails:
            subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == email))
            reached = reached_matches([subscriber_id]).with_only_columns(Match.article_id)
            articles = session.scalars(select(Article).where(Article.id.in_(reached))).all()
            message = EmailMessage()
            message["From"] = "bench@bench.example.org"
            message["To"] = email
            message["Subject"] = "Your digest"
            message.set_content("\n".join(a.title for a in articles))
            message.add_alternative(template.render(articles=articles), subtype="html")
            smtp.send_message(message)
    return len(emails) / (time.perf_counter() - started)


def alert_latencies(database: object) -> list[float]:
    from alerts.db import Database, utcnow
    from alerts.ingest.formats import ParsedArticle, ParseResult
    from alerts.ingest.service import queue_matching
    from alerts.ingest.store import store_articles
    from alerts.models import Article, Delivery, DeliveryKind, DeliveryState

    assert isinstance(database, Database)
    for n in range(ALERT_ARTICLES):
        parsed = ParseResult(
            format="jsonl",
            articles=[
                ParsedArticle(
                    guid=f"avalanche-{n}",
                    url=f"https://bench.example.org/avalanche/{n}",
                    title=f"Avalanche warning {n} for the Kazbegi road",
                    body=f"Rescuers issued avalanche warning number {n} for the mountain road.",
                    published=utcnow(),
                    language="en",
                    tags=["Weather"],
                    source="Bench Desk",
                    author=None,
                )
            ],
            errors=[],
            feed_title="Bench",
        )
        with database.session_scope() as session:
            report = store_articles(session, parsed, location="bench")
            queue_matching(session, report.new_article_ids)
        time.sleep(ALERT_INTERVAL_SECONDS)
    expected = ALERT_ARTICLES * ALERT_SUBSCRIBERS
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        with database.session_scope() as session:
            rows = session.execute(
                select(Delivery.sent_at, Article.ingested_at)
                .join(Article, Article.id == Delivery.article_id)
                .where(Delivery.kind == DeliveryKind.ALERT, Delivery.state == DeliveryState.SENT)
            ).all()
        if len(rows) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return [(sent - ingested).total_seconds() for sent, ingested in rows]


if __name__ == "__main__":
    main()
