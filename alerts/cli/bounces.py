"""``alerts bounces``: what returned mail says (parse), without touching the database."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alerts.bounces import MAX_BOUNCE_BYTES, classify
from alerts.config import get_settings
from alerts.delivery.outbound import mail_domain


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bounces = subparsers.add_parser("bounces", help="bounces, complaints and auto-replies")
    actions = bounces.add_subparsers(dest="action", required=True, metavar="ACTION")
    parse = actions.add_parser("parse", help="classify returned mail files (nothing is recorded)")
    parse.add_argument("files", nargs="+", metavar="FILE", help="a message as received (.eml)")
    parse.add_argument("--json", action="store_true", help="one JSON object per file")
    parse.set_defaults(handler=run_parse)


def run_parse(args: argparse.Namespace) -> int:
    settings = get_settings()
    secret = settings.resolved_secret_key
    bounce_domain = settings.bounce_domain or mail_domain(settings)
    code = 0
    for name in args.files:
        try:
            with Path(name).open("rb") as handle:
                raw = handle.read(MAX_BOUNCE_BYTES)
        except OSError as error:
            print(f"alerts bounces parse: cannot read {name}: {error.strerror}", file=sys.stderr)
            code = 1
            continue
        report = classify(raw, secret, bounce_domain=bounce_domain)
        if args.json:
            print(json.dumps({"file": name, **report.as_dict()}, ensure_ascii=False))
        else:
            who = ", ".join(report.recipients) or "no recipient"
            status = f" {report.status}" if report.status else ""
            delivery = f" (delivery {report.delivery})" if report.delivery else ""
            print(f"{name}: {report.kind}{status}: {who}{delivery}")
    return code
