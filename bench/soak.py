"""Soak test: the production stack of this machine under a steady newsroom load.

PostgreSQL, Redis, a logging SMTP server on loopback, a web process, the
workers and the clock, all started by this script as separate processes. By
default the workers are two `alerts worker` processes on the settings a user
gets (`--workers per-queue` starts one tuned worker per queue instead). It
copies in the subscribers (100,000 by default; COPY, so a million take about a
minute): 5% immediate alerts, the rest daily digests in several time zones,
of which `--digests-due` fall due during the run and the rest later that day;
`--popular-share` of them follow one popular country. Then it stores a new
article every few seconds (real Wikinews text from ../shared/data/articles)
for 30 minutes. At the end it reports throughput, p95 alert latency, the
memory of every process (launched, warm, end), database growth and matches
per article, and checks the ledger against the SMTP server's log: every
`sent` row accepted exactly once, nothing accepted that the ledger does not
know.

Usage: .venv/bin/python bench/soak.py [--minutes 30] [--subscribers 100000]
       [--digests-due 100000] [--popular-share 0.2] [--workers default|per-queue]
       [--article-every 3] [--corpus ../shared/data/articles/geovirus.xml]
Needs PostgreSQL and Redis on 127.0.0.1. Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import time as clock_time
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import httpx
import psycopg
import redis
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_BROKER = "redis://127.0.0.1:6379/10"
IMMEDIATE_SHARE = 0.05
ZONES = ("UTC", "Europe/Berlin", "Asia/Tbilisi", "Europe/Moscow", "America/New_York")
# Interests pair a word from the corpus's middle range (neither everywhere nor
# unique) with a second one, as readers' keywords do: each article then matches
# a few per cent of readers, not half of them.
QUERY_WORDS_SKIP = 150
QUERY_WORDS = 3000
# PSS growth allowed per process between the sample after the first minute of
# load (imports done, pools forked, caches warm) and the last one.
MEMORY_GROWTH_BOUND_MB = 150
DRAIN_SECONDS = 300
# One machine stands in for several hosts: bulk sending runs at a lower CPU
# priority, as it would on hosts of its own, so it cannot starve matching.
BULK_NICENESS = 10
WORKERS = {
    "ingest": ["--queues", "ingest", "--concurrency", "1"],
    "match": ["--queues", "match", "--concurrency", "2"],
    "send": ["--queues", "send", "--concurrency", "2", "--max-memory-per-child", "250"],
    "alerts": ["--queues", "alerts", "--pool", "threads", "--concurrency", "4"],
    "webhooks": ["--queues", "webhooks", "--pool", "threads", "--concurrency", "2"],
}
# The countries most stories in the corpus are about: the interests many readers share.
POPULAR_REGIONS = ("us", "cn", "gb", "in", "fr", "de", "it", "jp", "br", "ru")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pss_mb(pid: int) -> float:
    """Proportional memory of a process and its children, in MB.

    PSS splits each page among the processes sharing it, so a prefork pool's
    copy-on-write pages count once, not once per child as RSS would.
    """
    total = 0.0
    for candidate in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{candidate}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        except FileNotFoundError:
            continue
    return total


def memory(processes: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    return {name: pss_mb(process.pid) for name, process in processes.items()}


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = task / "children"
        if children.exists():
            for child in children.read_text().split():
                found.append(int(child))
                found.extend(_children(int(child)))
    return found


def load_corpus(path: Path) -> list[tuple[str, str, list[str]]]:
    root = ET.parse(path).getroot()  # our benchmark data file, not untrusted input
    corpus = []
    for node in root.iter("article"):
        url = node.findtext("source") or ""
        title = unquote(url.rsplit("/", 1)[-1]).replace("_", " ")
        tags = list(dict.fromkeys(n.text or "" for n in node.iter("name")))[:5]
        corpus.append((title, node.findtext("text") or "", tags))
    return corpus


def common_words(corpus: list[tuple[str, str, list[str]]]) -> list[str]:
    counts: Counter[str] = Counter()
    for title, body, _ in corpus:
        counts.update(
            {w.lower() for w in (title + " " + body).split() if w.isalpha() and len(w) > 5}
        )
    ranked = [word for word, _ in counts.most_common(QUERY_WORDS_SKIP + QUERY_WORDS)]
    return ranked[QUERY_WORDS_SKIP:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--article-every", type=float, default=3.0, help="seconds")
    parser.add_argument(
        "--digests-due",
        type=int,
        default=100_000,
        help="readers whose daily digest falls due during the run (the rest later that day)",
    )
    parser.add_argument(
        "--popular-share",
        type=float,
        default=0.2,
        help="share of readers following one popular country instead of two keywords",
    )
    parser.add_argument(
        "--workers",
        choices=("default", "per-queue"),
        default="default",
        help="default: two `alerts worker` processes on their own defaults, as the README "
        "starts them; per-queue: one tuned worker per queue",
    )
    parser.add_argument("--redis", default=REDIS_BROKER, help="broker database (it is flushed)")
    parser.add_argument(
        "--corpus", type=Path, default=REPO.parent / "shared" / "data" / "articles" / "geovirus.xml"
    )
    args = parser.parse_args()

    # `timeout` and `kill` stop the run through the clean-up below, too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    with scratch_database("alerts_soak") as name:
        redis.Redis.from_url(args.redis).flushdb()
        data_dir = Path(f"/tmp/{name}")
        data_dir.mkdir()
        smtp_port, web_port = free_port(), free_port()
        smtp_log = data_dir / "smtp.log"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ALERTS_", "PROMETHEUS"))},
            "ALERTS_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            "ALERTS_BROKER_URL": args.redis,
            "ALERTS_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "ALERTS_SECRET_KEY": "soak-test-secret",
            "ALERTS_DATA_DIR": str(data_dir),
            "ALERTS_MAIL_FROM": "Soak <soak@soak.example.org>",
            "ALERTS_ALERT_MAX_PER_HOUR": "20",
            "ALERTS_CLOCK_TICK_SECONDS": "10",
            "ALERTS_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO),
        }
        os.environ.update(env)
        processes: dict[str, subprocess.Popen[bytes]] = {}
        try:
            run(args, env, data_dir, smtp_port, smtp_log, web_port, processes)
        finally:
            for process in processes.values():
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
            for process in processes.values():
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database for one run, dropped afterwards whatever happens."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        # A second SIGTERM (`timeout` passes its own on) must not cut this short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        from alerts.db import _databases

        for database in _databases.values():
            database.dispose()
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start(
    name: str, command: list[str], env: dict[str, str], logs: Path
) -> subprocess.Popen[bytes]:
    with (logs / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def run(
    args: argparse.Namespace,
    env: dict[str, str],
    data_dir: Path,
    smtp_port: int,
    smtp_log: Path,
    web_port: int,
    processes: dict[str, subprocess.Popen[bytes]],
) -> None:
    from alerts import jobs
    from alerts.config import get_settings
    from alerts.db import get_database
    from workers.celery_app import create_app
    from workers.dispatch import sender_for

    settings = get_settings()
    database = get_database(settings)
    app = create_app(settings)
    jobs.set_job_sender(sender_for(app))
    corpus = load_corpus(args.corpus)
    words = common_words(corpus)

    started = time.perf_counter()
    seed(database, args.subscribers, words, args.minutes, args.digests_due, args.popular_share)
    with database.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    print(
        f"seeded {args.subscribers:,} subscribers in {time.perf_counter() - started:.0f} s",
        flush=True,
    )

    python = sys.executable
    processes["smtp"] = start(
        "smtp",
        [python, str(REPO / "bench" / "smtp_log_server.py"), str(smtp_port), str(smtp_log)],
        env,
        data_dir,
    )
    processes["web"] = start(
        "web", [python, "-m", "alerts", "web", "--port", str(web_port)], env, data_dir
    )
    workers = WORKERS if args.workers == "per-queue" else {"1": [], "2": []}
    for name, options in workers.items():
        nice = ["nice", "-n", str(BULK_NICENESS)] if name == "send" else []
        processes[f"worker-{name}"] = start(
            f"worker-{name}", [*nice, python, "-m", "alerts", "worker", *options], env, data_dir
        )
    time.sleep(8)
    processes["clock"] = start("clock", [python, "-m", "alerts", "clock"], env, data_dir)
    time.sleep(2)
    memory_launch = memory(processes)
    memory_start: dict[str, float] = {}
    size_start = database_size(database)

    print(f"running {args.minutes:g} min: an article every {args.article_every:g} s", flush=True)
    rng = random.Random(11)
    run_started = time.monotonic()
    deadline = run_started + args.minutes * 60
    articles = 0
    next_report = run_started + 60
    while time.monotonic() < deadline:
        title, body, tags = rng.choice(corpus)
        store_article(database, f"{title} ({articles})", body, tags)
        articles += 1
        if time.monotonic() >= next_report:
            next_report += 60
            sample = memory(processes)
            memory_start = memory_start or sample
            print(
                f"  {int((time.monotonic() - run_started) / 60)} min: {articles} articles, "
                f"{progress(database)}; PSS MB "
                + " ".join(f"{name} {mb:.0f}" for name, mb in sample.items()),
                flush=True,
            )
        time.sleep(args.article_every)
    memory_end = memory(processes)
    size_end = database_size(database)

    drain_deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < drain_deadline and pending(database):
        time.sleep(2)
    elapsed = time.monotonic() - run_started
    metrics = httpx.get(f"http://127.0.0.1:{web_port}/metrics", timeout=10).text
    # Stop the clock and the workers so the ledger and the SMTP log are
    # compared at rest. SIGTERM to the main process only: Celery's warm
    # shutdown lets running tasks finish (the whole group would kill them).
    for name, process in processes.items():
        if name == "clock" or name.startswith("worker-"):
            process.send_signal(signal.SIGTERM)
    for name, process in processes.items():
        if name == "clock" or name.startswith("worker-"):
            process.wait(timeout=120)
    memory_start = memory_start or memory_launch
    report(
        database, smtp_log, articles, elapsed, (memory_launch, memory_start, memory_end), metrics
    )
    report_storage(database, articles, size_start, size_end, args.minutes)


def seed(
    database: object,
    count: int,
    words: list[str],
    minutes: float,
    digests_due: int,
    popular_share: float,
) -> None:
    """Readers in several time zones, copied in with COPY (a million in about a minute).

    ``digests_due`` readers get a send time inside the run; the others' fall
    in the rest of the day, as a real list's do. ``popular_share`` of them
    follow one popular country (what most readers of a newsroom do) instead of
    a pair of keywords, so storage per article shows what sharing saves.
    """
    from alerts.db import Database, utcnow
    from alerts.models import Frequency, SubscriberStatus
    from alerts.schedule import zone

    assert isinstance(database, Database)
    rng = random.Random(5)
    now = utcnow()
    since = now - timedelta(days=1)
    due_share = min(1.0, digests_due / max(count, 1))
    subscribers = []
    interests = []
    for n in range(count):
        timezone = ZONES[n % len(ZONES)]
        immediate = rng.random() < IMMEDIATE_SHARE
        if rng.random() < due_share:
            # A send time a few minutes into the run, in the reader's own zone.
            due = now + timedelta(minutes=rng.uniform(1, max(minutes - 1, 1)))
        else:
            due = now + timedelta(minutes=rng.uniform(minutes + 5, 24 * 60 - 5))
        local = due.astimezone(zone(timezone))
        subscribers.append(
            (
                f"reader{n:07d}@soak.example.org",
                SubscriberStatus.CONFIRMED.value,
                (Frequency.IMMEDIATE if immediate else Frequency.DAILY).value,
                timezone,
                clock_time(local.hour, local.minute),
                0,
                "en",
                False,
                since,
                since,
                # The window starts at the beginning of the run: digests carry its matches.
                now,
                rng.randrange(1_000_000),
            )
        )
        if rng.random() < popular_share:
            interests.append((None, json.dumps([rng.choice(POPULAR_REGIONS)])))
        else:
            interests.append((f"{rng.choice(words)} OR {rng.choice(words)}", "[]"))
    connection = database.engine.raw_connection()
    try:
        cursor = connection.cursor()
        with cursor.copy(
            "COPY subscribers (email, status, frequency, timezone, send_at, weekly_day,"
            " language, paused, created_at, confirmed_at, last_digest_at, token_version)"
            " FROM STDIN"
        ) as copy:
            for row in subscribers:
                copy.write_row(row)
        cursor.execute("SELECT id FROM subscribers ORDER BY id")
        ids = [row[0] for row in cursor.fetchall()]
        with cursor.copy(
            "COPY interests (subscriber_id, query, regions, created_at, updated_at) FROM STDIN"
        ) as copy:
            for subscriber_id, (query, regions) in zip(ids, interests, strict=True):
                copy.write_row((subscriber_id, query, regions, since, since))
        connection.commit()
    finally:
        connection.close()


def database_size(database: object) -> int:
    from alerts.db import Database

    assert isinstance(database, Database)
    with database.engine.connect() as connection:
        return int(
            connection.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
        )


def report_storage(
    database: object, articles: int, size_start: int, size_end: int, minutes: float
) -> None:
    """What the run wrote: the whole database's growth, and matches per article."""
    from alerts.db import Database

    assert isinstance(database, Database)
    with database.engine.connect() as connection:
        sizes = {
            table: int(
                connection.exec_driver_sql(f"SELECT pg_total_relation_size('{table}')").scalar_one()
            )
            for table in ("matches", "distinct_interests", "interest_links", "deliveries")
        }
    grown = size_end - size_start
    print("  storage (PostgreSQL, tables with their indexes and TOAST):")
    print(
        f"    database grew {grown / 2**20:,.1f} MiB during the load "
        f"({grown / 2**20 / (minutes / 60):,.1f} MiB an hour)"
    )
    print(
        f"    matches {sizes['matches'] / 2**10:,.0f} KiB: "
        f"{sizes['matches'] / max(articles, 1) / 2**10:,.1f} KiB per article"
    )
    for table in ("distinct_interests", "interest_links", "deliveries"):
        print(f"    {table} {sizes[table] / 2**20:,.1f} MiB")


def store_article(database: object, title: str, body: str, tags: list[str]) -> None:
    from alerts.db import Database, utcnow
    from alerts.ingest.formats import ParsedArticle, ParseResult
    from alerts.ingest.service import queue_matching
    from alerts.ingest.store import store_articles

    assert isinstance(database, Database)
    parsed = ParseResult(
        format="jsonl",
        articles=[
            ParsedArticle(
                guid=uuid.uuid4().hex,
                url=f"https://soak.example.org/{uuid.uuid4().hex}",
                title=title,
                body=body,
                published=utcnow(),
                language="en",
                tags=tags,
                source="Soak Desk",
                author=None,
            )
        ],
        errors=[],
        feed_title="Soak",
    )
    with database.session_scope() as session:
        stored = store_articles(session, parsed, location="soak")
        queue_matching(session, stored.new_article_ids)


def progress(database: object) -> str:
    from alerts.db import Database
    from alerts.models import Delivery

    assert isinstance(database, Database)
    with database.session_scope() as session:
        counts = dict(
            session.execute(  # type: ignore[arg-type]
                select(Delivery.state, func.count(Delivery.id)).group_by(Delivery.state)
            ).all()
        )
    return ", ".join(f"{state.value} {count}" for state, count in sorted(counts.items()))


def pending(database: object) -> bool:
    from alerts.db import Database, utcnow
    from alerts.models import Delivery, DeliveryState

    assert isinstance(database, Database)
    with database.session_scope() as session:
        return bool(
            session.scalar(
                select(func.count(Delivery.id)).where(
                    Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.SENDING]),
                    Delivery.due_at <= utcnow(),
                )
            )
        )


def report(
    database: object,
    smtp_log: Path,
    articles: int,
    elapsed: float,
    memory_samples: tuple[dict[str, float], dict[str, float], dict[str, float]],
    metrics: str,
) -> None:
    from alerts.db import Database
    from alerts.models import Article, Delivery, DeliveryKind, DeliveryState

    assert isinstance(database, Database)
    with database.session_scope() as session:
        sent = session.execute(
            select(Delivery.kind, Delivery.recipient, Delivery.message_id).where(
                Delivery.state == DeliveryState.SENT
            )
        ).all()
        states = dict(
            session.execute(  # type: ignore[arg-type]
                select(Delivery.state, func.count(Delivery.id)).group_by(Delivery.state)
            ).all()
        )
        latencies = [
            (sent_at - ingested).total_seconds()
            for sent_at, ingested in session.execute(
                select(Delivery.sent_at, Article.ingested_at)
                .join(Article, Article.id == Delivery.article_id)
                .where(Delivery.kind == DeliveryKind.ALERT, Delivery.state == DeliveryState.SENT)
            )
        ]
    accepted = Counter(
        (entry["to"], entry["message_id"])
        for entry in map(json.loads, smtp_log.read_text().splitlines())
    )
    ledger = Counter((recipient, message_id) for _, recipient, message_id in sent)
    lost = sum(1 for key in ledger if key not in accepted)
    duplicated = sum(count - 1 for count in accepted.values() if count > 1)
    unknown = sum(1 for key in accepted if key not in ledger)
    kinds = Counter(kind.value for kind, _, _ in sent)
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1] if latencies else float("nan")
    print("\nresults")
    print(
        f"  {articles} articles in {elapsed / 60:.1f} min; ledger states: "
        + ", ".join(f"{s.value} {c}" for s, c in sorted(states.items()))
    )
    print(
        f"  mail accepted by SMTP: {sum(accepted.values()):,} "
        f"({dict(kinds)}), {sum(accepted.values()) / elapsed:.1f} mails/s on average"
    )
    if latencies:
        print(
            f"  alert latency ingest -> SMTP accepted: p50 {statistics.median(latencies):.2f} s, "
            f"p95 {p95:.2f} s over {len(latencies):,} alerts"
        )
    print(f"  lost (sent in the ledger, never accepted): {lost}")
    print(f"  duplicated (accepted more than once): {duplicated}")
    print(f"  accepted but unknown to the ledger: {unknown}")
    print("  memory (PSS MB incl. child processes: launched, after 1 min of load -> end):")
    launched, warm, end = memory_samples
    for name in warm:
        growth = end[name] - warm[name]
        verdict = "ok" if growth <= MEMORY_GROWTH_BOUND_MB else "GREW"
        print(
            f"    {name:<16} {launched[name]:7.1f}, {warm[name]:7.1f} -> {end[name]:7.1f}  "
            f"({growth:+.1f}, bound +{MEMORY_GROWTH_BOUND_MB}) {verdict}"
        )
    interesting = ("alerts_deliveries_total", "alerts_smtp_responses_total", "alerts_queue_depth")
    print("  from /metrics:")
    for line in metrics.splitlines():
        if line.startswith(interesting):
            print(f"    {line}")


if __name__ == "__main__":
    main()
