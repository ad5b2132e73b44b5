"""``alerts subscribers``, ``alerts digests``, ``alerts schedule``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import func, select

from alerts.cli import CLI_ACTOR, EXIT_DECLINED, EXIT_REFUSED, confirmed, plural, region_label
from alerts.config import get_settings
from alerts.db import get_database, utcnow
from alerts.delivery.ledger import count_sending, recover_stuck, waiting_for_task
from alerts.delivery.outbound import SendReport, send_deliveries
from alerts.digest import plan_due_digests
from alerts.i18n import LANGUAGES
from alerts.mailer import process_mailer
from alerts.models import DeliveryKind, Frequency, Source, Subscriber
from alerts.progress import Progress, tracked
from alerts.schedule import latest_slot, period_length
from alerts.signup import resend_confirmation
from alerts.subscribers import (
    CSV_COLUMNS,
    ImportReport,
    ImportStoppedError,
    InterestError,
    NewSubscriber,
    SubscriberError,
    create_subscriber,
    erase,
    find_subscriber,
    import_csv_in_batches,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    subscribers = subparsers.add_parser("subscribers", help="manage subscribers")
    actions = subscribers.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser(
        "add", help="add one subscriber; mails the opt-in confirmation unless --confirmed"
    )
    add.add_argument("email", help="the reader's address")
    add.add_argument("--query", help="keyword query of the subscriber's interest")
    add.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="NAME",
        help="a region the interest follows, by any of its names (repeat for several)",
    )
    add.add_argument(
        "--frequency",
        default=Frequency.DAILY.value,
        help=f"{' | '.join(f.value for f in Frequency)} (default: daily)",
    )
    add.add_argument("--timezone", default="UTC", metavar="TZ", help="IANA name, e.g. Asia/Tbilisi")
    add.add_argument("--send-at", default="07:00", metavar="HH:MM", help="local digest time")
    add.add_argument(
        "--language",
        default="en",
        help=f"language of their mail and pages: {' | '.join(LANGUAGES)} (default: en)",
    )
    add.add_argument("--confirmed", action="store_true", help="skip double opt-in (consent given)")
    add.set_defaults(handler=run_add)

    importing = actions.add_parser("import", help="add subscribers from a CSV file")
    importing.add_argument(
        "file", type=Path, help=f"UTF-8 CSV with a header row: {', '.join(CSV_COLUMNS)}"
    )
    importing.set_defaults(handler=run_import)

    erasing = actions.add_parser("erase", help="delete a subscriber and all they left, audited")
    erasing.add_argument("id", type=int, help="the subscriber's id (see `subscribers list`)")
    erasing.set_defaults(handler=run_erase)

    removing = actions.add_parser(
        "remove", help="erase a subscriber, named by id or address, after asking"
    )
    removing.add_argument("subscriber", metavar="ID|EMAIL", help="the subscriber's id or address")
    removing.add_argument("--yes", action="store_true", help="do not ask; erase at once")
    removing.set_defaults(handler=run_remove)

    resend = actions.add_parser(
        "resend-confirmation", help="mail a pending subscriber the opt-in confirmation again"
    )
    resend.add_argument("subscriber", metavar="EMAIL|ID", help="the subscriber's address or id")
    resend.set_defaults(handler=run_resend_confirmation)

    show = actions.add_parser("show", help="one subscriber with their settings and interests")
    show.add_argument("subscriber", metavar="ID|EMAIL", help="the subscriber's id or address")
    show.add_argument("--json", action="store_true", help="print it as one JSON object")
    show.set_defaults(handler=run_show)

    listing = actions.add_parser("list", help="every subscriber with their status")
    listing.add_argument("--json", action="store_true", help="print them as one JSON array")
    listing.set_defaults(handler=run_list)

    digests = subparsers.add_parser("digests", help="digest runs")
    digest_actions = digests.add_subparsers(dest="action", required=True, metavar="ACTION")
    send = digest_actions.add_parser("send", help="plan and send due digests now, in this process")
    send.add_argument(
        "--now", action="store_true", help="every daily and weekly subscriber, whatever the hour"
    )
    send.set_defaults(handler=run_digests_send)

    schedule = subparsers.add_parser("schedule", help="what the clock does and when")
    schedule_actions = schedule.add_subparsers(dest="action", required=True, metavar="ACTION")
    schedule_actions.add_parser("list", help="print the schedule").set_defaults(
        handler=run_schedule_list
    )


def run_add(args: argparse.Namespace) -> int:
    settings = get_settings()
    data = NewSubscriber(
        email=args.email,
        query=args.query,
        regions=args.region,
        frequency=args.frequency,
        timezone=args.timezone,
        send_at=args.send_at,
        language=args.language,
        confirmed=args.confirmed,
        consent_source="command line",
    )
    try:
        with get_database(settings).session_scope() as session:
            subscriber = create_subscriber(session, CLI_ACTOR, data, settings, utcnow())
            print(f"subscriber {subscriber.id}: {subscriber.email} ({subscriber.status.value})")
    except SubscriberError as error:
        print(f"alerts subscribers add: {_one_line(error, args.query)}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def _one_line(error: SubscriberError, query: str | None) -> str:
    """The reason in one line: a query's caret drawing suits a form, not a terminal."""
    if not isinstance(error, InterestError) or error.position is None:
        return str(error)
    if not (query or "").strip():
        return error.message
    return f"query: {error.message} (at character {error.position + 1})"


def run_import(args: argparse.Namespace) -> int:
    """Commits every ``ALERTS_IMPORT_BATCH_ROWS`` rows and says so on stderr, so a
    long import neither locks out other writers nor leaves the admin guessing."""
    settings = get_settings()
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        print(f"alerts subscribers import: cannot read {args.file}: {error}", file=sys.stderr)
        return 2
    bar = Progress(max(text.count("\n") - 1, 0), "import")

    def committed(report: ImportReport) -> None:
        if bar.enabled:
            bar.advance(0, f"batch {report.batches} committed")
        else:
            print(
                f"batch {report.batches} committed through line {report.last_line}: "
                f"{report.added} added, {len(report.errors)} rejected so far",
                file=sys.stderr,
            )

    stopped: ImportStoppedError | None = None
    try:
        report = import_csv_in_batches(
            get_database(settings),
            text,
            settings,
            utcnow(),
            on_row=bar.advance,
            on_batch=committed,
            actor=CLI_ACTOR,
        )
    except ImportStoppedError as error:
        stopped, report = error, error.report
    bar.close()
    for line, reason in report.errors:
        print(f"{args.file}:{line}: {reason}", file=sys.stderr)
    if stopped is not None:
        print(f"alerts subscribers import: {stopped}", file=sys.stderr)
    print(f"{report.added} added, {len(report.errors)} rejected")
    return 1 if report.errors or stopped else 0


def run_erase(args: argparse.Namespace) -> int:
    with get_database().session_scope() as session:
        erased = erase(session, CLI_ACTOR, args.id, utcnow())
    if not erased:
        print(f"alerts subscribers erase: no subscriber {args.id}", file=sys.stderr)
        return 2
    print(f"subscriber {args.id}: erased")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """``erase`` by id or address, after a question: the same audited erasure."""
    try:
        with get_database().session_scope() as session:
            subscriber = find_subscriber(session, args.subscriber)
            if subscriber is None:
                raise SubscriberError(f"no subscriber {args.subscriber.strip()}")
            subscriber_id, email = subscriber.id, subscriber.email
            interests = len(subscriber.interests)
    except SubscriberError as error:
        print(f"alerts subscribers remove: {error}", file=sys.stderr)
        return EXIT_REFUSED
    question = (
        f"Erase subscriber {subscriber_id} ({email}), their {plural(interests, 'interest')} "
        "and every mail and match they had?"
    )
    if not confirmed(question, args.yes):
        return EXIT_DECLINED
    with get_database().session_scope() as session:
        erased = erase(session, CLI_ACTOR, subscriber_id, utcnow())
    if not erased:
        print(f"alerts subscribers remove: no subscriber {subscriber_id}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"subscriber {subscriber_id}: erased")
    return 0


def run_resend_confirmation(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        with get_database(settings).session_scope() as session:
            subscriber = resend_confirmation(
                session, CLI_ACTOR, args.subscriber, settings, utcnow()
            )
            print(f"subscriber {subscriber.id}: confirmation mail queued to {subscriber.email}")
    except SubscriberError as error:
        print(f"alerts subscribers resend-confirmation: {error}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Regions by name for people, with ids in the JSON for scripts."""
    try:
        with get_database().session_scope() as session:
            subscriber = find_subscriber(session, args.subscriber)
            if subscriber is None:
                raise SubscriberError(f"no subscriber {args.subscriber.strip()}")
            row: dict[str, Any] = {
                "id": subscriber.id,
                "email": subscriber.email,
                "status": subscriber.status.value,
                "frequency": subscriber.frequency.value,
                "timezone": subscriber.timezone,
                "send_at": subscriber.send_at.strftime("%H:%M"),
                "language": subscriber.language,
                "paused": subscriber.paused,
                "interests": [
                    {
                        "id": interest.id,
                        "query": interest.query,
                        "regions": list(interest.regions or []),
                        "region_names": [region_label(r) for r in interest.regions or []],
                    }
                    for interest in sorted(subscriber.interests, key=lambda i: i.id)
                ],
            }
    except SubscriberError as error:
        print(f"alerts subscribers show: {error}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        print(json.dumps(row, ensure_ascii=False))
        return 0
    paused = ", paused" if row["paused"] else ""
    print(f"subscriber {row['id']}: {row['email']} ({row['status']}{paused})")
    print(f"  {row['frequency']} at {row['send_at']} {row['timezone']}, language {row['language']}")
    interests = row["interests"]
    print(f"  {plural(len(interests), 'interest')}:")
    for interest in interests:
        parts = [f"query {interest['query']}"] if interest["query"] else []
        if interest["region_names"]:
            parts.append(f"regions {', '.join(interest['region_names'])}")
        print(f"    {interest['id']:>6}  {'; '.join(parts)}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with get_database().session_scope() as session:
        rows = [
            {
                "id": s.id,
                "email": s.email,
                "status": s.status.value,
                "frequency": s.frequency.value,
                "timezone": s.timezone,
                "send_at": s.send_at.strftime("%H:%M"),
            }
            for s in session.scalars(select(Subscriber).order_by(Subscriber.id))
        ]
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(f"{row['id']:>6}  {row['email']}  {row['status']}  {row['frequency']}")
    return 0


# What a shell reports for a command stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130
DIGEST_KINDS = (DeliveryKind.DIGEST,)


def run_digests_send(args: argparse.Namespace) -> int:
    """Plan due digests and send them here, with what an earlier run left unsent.

    Running it again resumes an interrupted run: digests still queued are sent,
    and those left ``sending`` by a process that died are taken back once no
    send can still be running (``stuck_after_seconds``). Ctrl-C stops after the
    message in flight, so nothing is left half done.
    """
    settings = get_settings()
    database = get_database(settings)
    with database.session_scope() as session:
        now = utcnow()
        stuck_after = timedelta(seconds=settings.stuck_after_seconds)
        recover_stuck(session, now, stuck_after=stuck_after, kinds=DIGEST_KINDS)
        planned = plan_due_digests(session, settings, now, force=args.now)
        new = set(planned)
        left_over = [
            i
            for i in waiting_for_task(session, now, requeue_after=timedelta(0), kinds=DIGEST_KINDS)
            if i not in new
        ]
    todo = sorted([*planned, *left_over])
    report = SendReport()
    mailer = process_mailer(settings)
    chunks = range(0, len(todo), settings.send_batch_size)
    with _stop_on_interrupt() as stopping:
        for start in tracked(chunks, len(chunks), "digests"):
            if stopping.is_set():
                break
            batch = send_deliveries(
                database,
                todo[start : start + settings.send_batch_size],
                mailer,
                utcnow,
                stop=stopping.is_set,
            )
            report.add(batch)
    resumed = f" (and {len(left_over)} left over from an earlier run)" if left_over else ""
    print(
        f"{len(planned)} digests planned{resumed}: {report.sent} sent, {report.skipped} empty, "
        f"{report.deferred} deferred, {report.bounced} bounced, {report.failed} failed, "
        f"{report.suppressed} suppressed"
    )
    with database.session_scope() as session:
        in_flight = count_sending(session, DIGEST_KINDS)
    if in_flight:
        print(
            f"{in_flight} digests are marked sending by another process or a run that died; "
            f"a run after {settings.stuck_after_seconds:.0f} s (or the clock) takes them back",
            file=sys.stderr,
        )
    if stopping.is_set():
        print("interrupted: run `alerts digests send` again to send the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


@contextmanager
def _stop_on_interrupt() -> Iterator[threading.Event]:
    """The first Ctrl-C (or SIGTERM) asks the run to stop after the message in
    flight; a second one interrupts at once."""
    stopping = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopping  # signal handlers can only be set from the main thread
        return

    def ask_to_stop(_signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        print("stopping after the message in flight (Ctrl-C again to abort)", file=sys.stderr)

    previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_schedule_list(_args: argparse.Namespace) -> int:
    settings = get_settings()
    now = utcnow()
    print(f"clock tick every {settings.clock_tick_seconds} s: source polls, due digests, sweeper")
    print(f"daily at {settings.prune_hour_utc:02d}:17 UTC: prune history past its retention")
    with get_database(settings).session_scope() as session:
        schedules = Counter(
            session.execute(
                select(
                    Subscriber.frequency,
                    Subscriber.timezone,
                    Subscriber.send_at,
                    Subscriber.weekly_day,
                ).where(Subscriber.status == "confirmed")
            ).all()
        )
        sources = session.execute(
            select(Source.name, Source.poll_minutes, Source.next_poll_at, Source.active).order_by(
                func.coalesce(Source.next_poll_at, now)
            )
        ).all()
    print("digests:")
    for (frequency, timezone, send_at, weekly_day), count in sorted(
        schedules.items(), key=lambda item: str(item[0])
    ):
        last = latest_slot(now, frequency, timezone, send_at, weekly_day)
        upcoming = latest_slot(
            last.at + period_length(frequency) + timedelta(minutes=1),
            frequency,
            timezone,
            send_at,
            weekly_day,
        )
        print(
            f"  {frequency.value:<9} {send_at:%H:%M} {timezone:<20} {count:>6} subscribers, "
            f"next {upcoming.at:%Y-%m-%d %H:%M} UTC"
        )
    print("sources:")
    for name, minutes, next_poll, active in sources:
        when = f"{next_poll:%Y-%m-%d %H:%M} UTC" if next_poll else "at the next tick"
        print(f"  {name}: every {minutes} min, next {when}{'' if active else ' (paused)'}")
    return 0
