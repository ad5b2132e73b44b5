"""``alerts webhooks``: register receivers of signed events and see how they answer."""

from __future__ import annotations

import argparse
import json
import sys

from alerts.cli import CLI_ACTOR, EXIT_DECLINED, EXIT_REFUSED, confirmed
from alerts.db import get_database, utcnow
from alerts.models import WebhookEndpoint
from alerts.webhooks import EVENTS, WebhookError, add_endpoint, overview, remove_endpoint


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhooks = subparsers.add_parser("webhooks", help="outgoing webhooks")
    actions = webhooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="register a URL; prints its signing secret once")
    add.add_argument("url", help="https URL that receives each event as a signed POST")
    add.add_argument(
        "--event",
        action="append",
        required=True,
        metavar="EVENT",
        # The domain refuses an unknown event (add_endpoint); the list is for reading.
        help=f"an event to send (repeat for several): {', '.join(sorted(EVENTS))}",
    )
    add.set_defaults(handler=run_add)
    listing = actions.add_parser("list", help="endpoints with their last answers")
    listing.add_argument("--json", action="store_true", help="print them as one JSON array")
    listing.set_defaults(handler=run_list)
    remove = actions.add_parser(
        "remove", help="delete an endpoint and its delivery history; nothing more is sent to it"
    )
    remove.add_argument("id", type=int, help="the endpoint's id (see `webhooks list`)")
    remove.add_argument("--yes", action="store_true", help="do not ask; remove at once")
    remove.set_defaults(handler=run_remove)


def run_add(args: argparse.Namespace) -> int:
    try:
        with get_database().session_scope() as session:
            endpoint = add_endpoint(session, CLI_ACTOR, args.url, args.event, utcnow())
            print(f"webhook {endpoint.id}: {endpoint.url}")
            print(f"signing secret (shown once): {endpoint.secret}")
    except WebhookError as error:
        print(f"alerts webhooks add: {error}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def run_list(args: argparse.Namespace) -> int:
    with get_database().session_scope() as session:
        rows = overview(session)
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        state = "" if row["active"] else " (inactive)"
        print(f"{row['id']:>4}  {row['url']}{state}  {', '.join(row['events'])}")
        print(f"      deliveries {row['deliveries']}, last answer {row['last_status']}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    database = get_database()
    with database.session_scope() as session:
        endpoint = session.get(WebhookEndpoint, args.id)
        url = None if endpoint is None else endpoint.url
    if url is None:
        print(f"alerts webhooks remove: no webhook {args.id}", file=sys.stderr)
        return EXIT_REFUSED
    if not confirmed(f"Remove webhook {args.id} ({url}) and its delivery history?", args.yes):
        return EXIT_DECLINED
    with database.session_scope() as session:
        removed = remove_endpoint(session, CLI_ACTOR, args.id, utcnow())
    if not removed:
        print(f"alerts webhooks remove: no webhook {args.id}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"webhook {args.id}: removed")
    return 0
