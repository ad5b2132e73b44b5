"""``alerts ingest`` and ``alerts sources``."""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy import func, select

from alerts.cli import CLI_ACTOR, EXIT_DECLINED, EXIT_REFUSED, confirmed, plural
from alerts.config import get_settings
from alerts.db import get_database, utcnow
from alerts.ingest.fetch import read_source
from alerts.ingest.formats import SourceError
from alerts.ingest.service import ingest_document, limits_from
from alerts.ingest.store import IngestReport
from alerts.models import Article, Source
from alerts.progress import tracked
from alerts.sources import (
    MAX_POLL_MINUTES,
    MIN_POLL_MINUTES,
    SourceForm,
    SourceInputError,
    create_source,
    delete_source,
)
from alerts.transactions import run_in_transaction

EXIT_UNREADABLE = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ingest = subparsers.add_parser(
        "ingest", help="read feeds, pages or files and store their new articles"
    )
    ingest.add_argument("sources", nargs="+", metavar="SOURCE", help="file path, http(s) URL or -")
    ingest.add_argument("--json", action="store_true", help="print one JSON object of counts")
    ingest.add_argument(
        "--redate",
        action="store_true",
        help="move each document's dates together so its newest article is from now "
        "(for samples and demos)",
    )
    ingest.set_defaults(handler=run_ingest)

    sources = subparsers.add_parser("sources", help="sources the clock polls")
    actions = sources.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="register a feed or page to poll")
    add.add_argument("url", help="http(s) address of the feed, page or JSON file")
    add.add_argument("--name", help="shown to editors and in mail (default: the URL)")
    add.add_argument(
        "--every",
        metavar="MINUTES",
        help=f"poll interval, {MIN_POLL_MINUTES} to {MAX_POLL_MINUTES} "
        "(default: ALERTS_SOURCE_DEFAULT_POLL_MINUTES)",
    )
    add.add_argument("--tag", action="append", default=[], help="tag added to every article")
    add.set_defaults(handler=run_sources_add)
    listing = actions.add_parser("list", help="registered sources and their last poll")
    listing.add_argument("--json", action="store_true", help="print them as one JSON array")
    listing.set_defaults(handler=run_sources_list)
    remove = actions.add_parser(
        "remove", help="stop polling a source and delete it; its articles stay"
    )
    remove.add_argument("id", type=int, help="the source's id (see `sources list`)")
    remove.add_argument("--yes", action="store_true", help="do not ask; remove at once")
    remove.set_defaults(handler=run_sources_remove)


def run_ingest(args: argparse.Namespace) -> int:
    settings = get_settings()
    limits = limits_from(settings)
    database = get_database(settings)
    total = IngestReport()
    exit_code = 0
    for spec in tracked(args.sources, len(args.sources), "ingest"):
        try:
            data, content_type = read_source(spec, limits=limits, stdin=sys.stdin.buffer)
            # Retried whole when it lost a race with another ingest (a deadlock).
            report = run_in_transaction(
                database,
                lambda session: ingest_document(
                    session,
                    data,  # noqa: B023 - called right here, before the loop moves on
                    location=spec,  # noqa: B023
                    content_type=content_type,  # noqa: B023
                    limits=limits,
                    redate_to=utcnow() if args.redate else None,
                ),
            )
        except SourceError as error:
            print(f"alerts ingest: {spec}: {error}", file=sys.stderr)
            exit_code = EXIT_UNREADABLE
            continue
        total.add(report)
        unqueued = report.unqueued_article_ids()
        if unqueued:
            # Stored and committed all the same: the clock's match sweeper
            # queues them once the broker answers again.
            print(
                f"alerts ingest: warning: {spec}: {len(unqueued)} article(s) stored but not "
                f"queued for matching (the task queue is unavailable); the clock queues them "
                f"again within {settings.match_requeue_after_seconds} s of it being back",
                file=sys.stderr,
            )
        if not args.json:
            duplicate = f"{report.duplicate} duplicate"
            if report.requeued_article_ids:
                waiting = len(report.requeued_article_ids)
                duplicate += f" ({waiting} not yet matched: queued again)"
            counts = f"{report.new} new, {duplicate}, {report.rejected} rejected"
            print(f"{spec}: {counts}")
            for rejected in report.errors:
                print(f"  rejected {rejected['entry']}: {rejected['reason']}")
    if args.json:
        print(json.dumps(total.as_json(), ensure_ascii=False))
    return exit_code


def run_sources_add(args: argparse.Namespace) -> int:
    """The editor's and the API's rules: guarded host, interval and tag limits, audited."""
    settings = get_settings()
    # --every 0 is refused by the interval rule, not taken for "the default".
    every = "" if args.every is None else args.every
    form = SourceForm(args.name or "", args.url, every, args.tag)
    try:
        with get_database(settings).session_scope() as session:
            source = create_source(session, CLI_ACTOR, form, settings, utcnow())
            print(f"source {source.id}: {source.name}, polled every {source.poll_minutes} min")
    except SourceInputError as error:
        print(f"alerts sources add: {error}", file=sys.stderr)
        return 1
    return 0


def run_sources_remove(args: argparse.Namespace) -> int:
    database = get_database()
    with database.session_scope() as session:
        source = session.get(Source, args.id)
        found = None if source is None else (source.name, source.url)
        stored = session.scalar(select(func.count(Article.id)).where(Article.source_id == args.id))
    if found is None:
        print(f"alerts sources remove: no source {args.id}", file=sys.stderr)
        return EXIT_REFUSED
    name, url = found
    kept = plural(int(stored or 0), "stored article")
    if not confirmed(f"Remove source {args.id} ({name}, {url})? Its {kept} stay.", args.yes):
        return EXIT_DECLINED
    with database.session_scope() as session:
        source = session.get(Source, args.id)
        if source is None:  # removed by someone else while the question was open
            print(f"alerts sources remove: no source {args.id}", file=sys.stderr)
            return EXIT_REFUSED
        delete_source(session, CLI_ACTOR, source)
    print(f"source {args.id}: removed")
    return 0


def run_sources_list(args: argparse.Namespace) -> int:
    with get_database().session_scope() as session:
        sources = session.scalars(select(Source).order_by(Source.id)).all()
        rows = [
            {
                "id": source.id,
                "name": source.name,
                "url": source.url,
                "active": source.active,
                "poll_minutes": source.poll_minutes,
                "last_polled_at": source.last_polled_at.isoformat()
                if source.last_polled_at
                else None,
                "last_status": source.last_status,
                "last_error": source.last_error,
                "last_counts": source.last_counts,
            }
            for source in sources
        ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    for row in rows:
        status = row["last_status"] or "never polled"
        print(f"{row['id']:>4}  {row['name']}  every {row['poll_minutes']} min  {status}")
        if row["last_error"]:
            print(f"      {row['last_error']}")
    return 0
