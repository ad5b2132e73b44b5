"""``alerts newsletters``: compose, preview, test, schedule and watch issues."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.cli import CLI_ACTOR
from alerts.config import get_settings
from alerts.db import get_database, utcnow
from alerts.delivery.outbound import send_deliveries
from alerts.mailer import process_mailer, process_renderer
from alerts.models import Newsletter
from alerts.newsletters import (
    NewsletterError,
    approve,
    cancel,
    create_newsletter,
    local_moment,
    make_recurring,
    preview,
    progress,
    schedule,
    send_now,
    send_test,
)
from alerts.subscribers import SubscriberError

EXIT_REFUSED = 2
ISSUE_ID_HELP = "the issue's id (see `newsletters list`)"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    newsletters = subparsers.add_parser("newsletters", help="editors' newsletters")
    actions = newsletters.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="compose a draft issue")
    create.add_argument("--subject", required=True, help="the mail's subject line")
    create.add_argument(
        "--preheader", default="", help="the preview line mail programs show after the subject"
    )
    create.add_argument(
        "--intro-file", type=Path, help="Markdown intro ({email}, {date}... allowed)"
    )
    create.add_argument(
        "--section",
        action="append",
        default=[],
        metavar="TITLE=QUERY",
        help="a section filled from stored articles matching QUERY",
    )
    create.add_argument(
        "--pick",
        action="append",
        default=[],
        metavar="TITLE=ID,ID",
        help="a section of chosen article ids",
    )
    create.add_argument("--region", action="append", default=[], help="audience: readers of R")
    create.add_argument("--word", action="append", default=[], help="audience: interest word")
    create.add_argument(
        "--language", action="append", default=[], help="audience: readers of language L"
    )
    create.add_argument(
        "--frequency", action="append", default=[], help="audience: readers with frequency F"
    )
    create.set_defaults(handler=run_create)

    at = actions.add_parser("schedule", help="schedule or reschedule an issue")
    at.add_argument("id", type=int, help=ISSUE_ID_HELP)
    at.add_argument(
        "--at", required=True, metavar="'YYYY-MM-DD HH:MM'", help="when to send, local time"
    )
    at.add_argument("--timezone", default="UTC", help="IANA zone of --at (default: UTC)")
    at.set_defaults(handler=run_schedule)

    for name, handler, text in (
        ("send-now", run_send_now, "start sending at the next clock tick"),
        ("cancel", run_cancel, "cancel an issue that has not started sending"),
        ("approve", run_approve, "let a held recurring issue go"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("id", type=int, help=ISSUE_ID_HELP)
        action.set_defaults(handler=handler)

    recur = actions.add_parser("recur", help="make an issue a recurring template")
    recur.add_argument("id", type=int, help=ISSUE_ID_HELP)
    recur.add_argument("--cron", required=True, help="crontab, e.g. '0 7 * * mon'")
    recur.add_argument("--timezone", default="UTC", help="IANA zone of --cron (default: UTC)")
    recur.add_argument("--approval", action="store_true", help="hold each issue for approval")
    recur.set_defaults(handler=run_recur)

    show = actions.add_parser("preview", help="the issue as one reader would get it")
    show.add_argument("id", type=int, help=ISSUE_ID_HELP)
    show.add_argument(
        "--subscriber", required=True, metavar="EMAIL", help="the reader whose copy to show"
    )
    show.add_argument("--html", action="store_true", help="print the HTML part, not the text")
    show.set_defaults(handler=run_preview)

    test = actions.add_parser("test", help="send a test to given addresses now")
    test.add_argument("id", type=int, help=ISSUE_ID_HELP)
    test.add_argument(
        "--to",
        action="append",
        required=True,
        metavar="EMAIL",
        help="an address to send the test to (repeat for several)",
    )
    test.set_defaults(handler=run_test)

    listing = actions.add_parser("list", help="issues with their status and progress")
    listing.add_argument("--json", action="store_true", help="print them as one JSON array")
    listing.set_defaults(handler=run_list)


def _section(spec: str, picked: bool) -> dict[str, Any]:
    title, separator, value = spec.partition("=")
    if not separator:
        raise NewsletterError(f"{spec!r}: write TITLE={'ID,ID' if picked else 'QUERY'}")
    if picked:
        try:
            return {"title": title, "article_ids": [int(i) for i in value.split(",") if i]}
        except ValueError as error:
            raise NewsletterError(f"{spec!r}: article ids are numbers") from error
    return {"title": title, "query": value}


def _refused(action: str, error: Exception) -> int:
    # The first line says it all; a query's caret drawing under it suits a form.
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    print(f"alerts newsletters {action}: {reason}", file=sys.stderr)
    return EXIT_REFUSED


def _existing(session: Session, newsletter_id: int) -> None:
    """NewsletterError for an id that names no issue, before a command acts on it."""
    if session.get(Newsletter, newsletter_id) is None:
        raise NewsletterError(f"no newsletter {newsletter_id}")


def _intro(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise NewsletterError(f"cannot read {path}: {reason}") from error


def run_create(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        intro = _intro(args.intro_file)
        sections = [_section(s, False) for s in args.section] + [
            _section(s, True) for s in args.pick
        ]
        audience = {
            "regions": args.region,
            "words": args.word,
            "languages": args.language,
            "frequencies": args.frequency,
        }
        with get_database(settings).session_scope() as session:
            newsletter = create_newsletter(
                session,
                CLI_ACTOR,
                subject=args.subject,
                preheader=args.preheader,
                intro_markdown=intro,
                sections=sections,
                audience=audience,
                settings=settings,
                now=utcnow(),
            )
            print(f"newsletter {newsletter.id}: draft")
    except (NewsletterError, SubscriberError) as error:
        return _refused("create", error)
    return 0


def run_schedule(args: argparse.Namespace) -> int:
    try:
        at = local_moment(args.at, args.timezone)
        with get_database().session_scope() as session:
            _existing(session, args.id)
            newsletter = schedule(session, args.id, at, args.timezone, utcnow(), actor=CLI_ACTOR)
            print(f"newsletter {newsletter.id}: scheduled for {at:%Y-%m-%d %H:%M} UTC")
    except NewsletterError as error:
        return _refused("schedule", error)
    return 0


def run_send_now(args: argparse.Namespace) -> int:
    try:
        with get_database().session_scope() as session:
            _existing(session, args.id)
            send_now(session, args.id, utcnow(), actor=CLI_ACTOR)
    except NewsletterError as error:
        return _refused("send-now", error)
    print(f"newsletter {args.id}: sending starts at the next clock tick")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    with get_database().session_scope() as session:
        cancelled = cancel(session, args.id, actor=CLI_ACTOR)
    if not cancelled:
        return _refused(
            "cancel", NewsletterError(f"issue {args.id} has started sending or is gone")
        )
    print(f"newsletter {args.id}: cancelled")
    return 0


def run_approve(args: argparse.Namespace) -> int:
    with get_database().session_scope() as session:
        approved = approve(session, args.id, actor=CLI_ACTOR)
    if not approved:
        return _refused("approve", NewsletterError(f"issue {args.id} is not awaiting approval"))
    print(f"newsletter {args.id}: approved")
    return 0


def run_recur(args: argparse.Namespace) -> int:
    try:
        with get_database().session_scope() as session:
            _existing(session, args.id)
            newsletter = make_recurring(
                session,
                args.id,
                args.cron,
                args.timezone,
                approval_required=args.approval,
                now=utcnow(),
                actor=CLI_ACTOR,
            )
            when = f"{newsletter.recurrence_next_at:%Y-%m-%d %H:%M} UTC"
            print(f"newsletter {newsletter.id}: next issue {when}")
    except NewsletterError as error:
        return _refused("recur", error)
    return 0


def run_preview(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        with get_database(settings).session_scope() as session:
            mail = preview(
                session, args.id, args.subscriber, settings, utcnow(), process_renderer()
            )
    except NewsletterError as error:
        return _refused("preview", error)
    print(f"Subject: {mail.subject}\n")
    print(mail.html if args.html else mail.text)
    return 0


def run_test(args: argparse.Namespace) -> int:
    settings = get_settings()
    database = get_database(settings)
    try:
        with database.session_scope() as session:
            _existing(session, args.id)
            ids = send_test(session, CLI_ACTOR, args.id, args.to, settings, utcnow())
    except NewsletterError as error:
        return _refused("test", error)
    report = send_deliveries(database, ids, process_mailer(settings), utcnow)
    print(f"{report.sent} test mails sent, {report.deferred + report.failed + report.bounced} not")
    return 0 if report.sent == len(ids) else 1


def run_list(args: argparse.Namespace) -> int:
    with get_database().session_scope() as session:
        rows: list[dict[str, Any]] = [
            {
                "id": n.id,
                "subject": n.subject,
                "status": n.status.value,
                "scheduled_at": n.scheduled_at.isoformat() if n.scheduled_at else None,
                "recurrence": n.recurrence,
                "progress": progress(session, n.id),
            }
            for n in session.scalars(select(Newsletter).order_by(Newsletter.id))
        ]
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        counts = row["progress"]
        print(
            f"{row['id']:>4}  {row['status']:<17} {row['subject']}  "
            f"sent {counts['sent']}, failed {counts['failed']}, bounced {counts['bounced']}"
        )
    return 0
