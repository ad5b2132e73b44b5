"""``alerts webhooks``: register receivers of signed events and see how they answer."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sqlalchemy import func, select

from alerts.db import get_database, utcnow
from alerts.models import WebhookDelivery, WebhookEndpoint
from alerts.webhooks import EVENTS, WebhookError, add_endpoint


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhooks = subparsers.add_parser("webhooks", help="outgoing webhooks")
    actions = webhooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="register a URL; prints its signing secret once")
    add.add_argument("url")
    add.add_argument("--event", action="append", required=True, choices=sorted(EVENTS))
    add.set_defaults(handler=run_add)
    listing = actions.add_parser("list", help="endpoints with their last answers")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=run_list)


def run_add(args: argparse.Namespace) -> int:
    try:
        with get_database().session_scope() as session:
            endpoint = add_endpoint(session, args.url, args.event, utcnow())
            print(f"webhook {endpoint.id}: {endpoint.url}")
            print(f"signing secret (shown once): {endpoint.secret}")
    except WebhookError as error:
        print(f"alerts webhooks add: {error}", file=sys.stderr)
        return 2
    return 0


def run_list(args: argparse.Namespace) -> int:
    with get_database().session_scope() as session:
        rows: list[dict[str, Any]] = []
        for endpoint in session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)):
            last = session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.attempts > 0)
                .order_by(WebhookDelivery.updated_at.desc())
                .limit(1)
            ).first()
            counted = session.execute(
                select(WebhookDelivery.state, func.count(WebhookDelivery.id))
                .where(WebhookDelivery.endpoint_id == endpoint.id)
                .group_by(WebhookDelivery.state)
            )
            rows.append(
                {
                    "id": endpoint.id,
                    "url": endpoint.url,
                    "events": endpoint.events,
                    "active": endpoint.active,
                    "deliveries": {state.value: count for state, count in counted},
                    "last_status": last.last_status if last else None,
                    "last_response": last.last_response if last else None,
                }
            )
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        print(f"{row['id']:>4}  {row['url']}  {', '.join(row['events'])}")
        print(f"      deliveries {row['deliveries']}, last answer {row['last_status']}")
    return 0
