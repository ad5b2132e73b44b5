"""``alerts bounces``: read returned mail; ``parse`` prints, ``serve`` records.

``serve`` is an LMTP (or SMTP) receiver for the bounce domain: the MTA hands
it every message addressed there (bounces to VERP addresses, complaints,
mailto unsubscribe requests). A message is acknowledged only once what it says
is committed; if the database cannot be reached the answer is a 451 and the
MTA keeps the message and tries again, so nothing is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope
from sqlalchemy.exc import SQLAlchemyError

from alerts.bounce_mailbox import Mailbox, MailboxError, poll
from alerts.bounces import MAX_BOUNCE_BYTES, bounce_domain, classify, take_in
from alerts.cli import port_number
from alerts.config import Settings, get_settings
from alerts.db import get_database
from alerts.logs import configure_logging

log = logging.getLogger("alerts.bounces")
DEFAULT_PORT = 8024


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bounces = subparsers.add_parser("bounces", help="bounces, complaints and auto-replies")
    actions = bounces.add_subparsers(dest="action", required=True, metavar="ACTION")
    parse = actions.add_parser("parse", help="classify returned mail files (nothing is recorded)")
    parse.add_argument("files", nargs="+", metavar="FILE", help="a message as received (.eml)")
    parse.add_argument("--json", action="store_true", help="one JSON object per file")
    parse.set_defaults(handler=run_parse)
    serve = actions.add_parser(
        "serve", help="receive the bounce domain's mail from the MTA and record it"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help=f"port to listen on ({DEFAULT_PORT})"
    )
    serve.add_argument(
        "--protocol", choices=("lmtp", "smtp"), default="lmtp", help="what the MTA speaks"
    )
    serve.set_defaults(handler=run_serve)
    poller = actions.add_parser(
        "poll", help="record and delete the returned mail in ALERTS_BOUNCE_MAILBOX_URL once"
    )
    poller.set_defaults(handler=run_poll)


def run_parse(args: argparse.Namespace) -> int:
    settings = get_settings()
    secret = settings.resolved_secret_key
    code = 0
    for name in args.files:
        try:
            with Path(name).open("rb") as handle:
                raw = handle.read(MAX_BOUNCE_BYTES)
        except OSError as error:
            print(f"alerts bounces parse: cannot read {name}: {error.strerror}", file=sys.stderr)
            code = 1
            continue
        report = classify(raw, secret, bounce_domain=bounce_domain(settings))
        if args.json:
            print(json.dumps({"file": name, **report.as_dict()}, ensure_ascii=False))
        else:
            who = ", ".join(report.recipients) or "no recipient"
            status = f" {report.status}" if report.status else ""
            delivery = f" (delivery {report.delivery})" if report.delivery else ""
            print(f"{name}: {report.kind}{status}: {who}{delivery}")
    return code


class ReturnedMailHandler:
    """aiosmtpd handler: one reply per recipient (LMTP), after the commit."""

    def __init__(self, settings: Settings, lmtp: bool) -> None:
        self.settings = settings
        self.lmtp = lmtp

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        raw = envelope.original_content or b""
        recipients = list(envelope.rcpt_tos)
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, take_in, raw, recipients, self.settings
            )
            reply = "250 2.0.0 recorded"
        except SQLAlchemyError:
            log.exception("could not record returned mail; the MTA will retry")
            reply = "451 4.3.0 cannot record it now, try again later"
        # LMTP answers DATA once per accepted recipient (RFC 2033 section 4.2).
        return "\r\n".join([reply] * len(recipients)) if self.lmtp else reply


def run_serve(args: argparse.Namespace) -> int:
    settings = get_settings()
    configure_logging(settings, "bounces")
    get_database(settings)  # migrate and fail now, not at the first message
    lmtp = args.protocol == "lmtp"
    protocol = LMTP if lmtp else SMTP
    handler = ReturnedMailHandler(settings, lmtp)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: protocol(handler, data_size_limit=MAX_BOUNCE_BYTES * 4),
            host=args.host,
            port=args.port,
        )
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info("receiving returned mail (%s) on %s:%d", args.protocol, args.host, args.port)
        async with server:
            await stop.wait()

    asyncio.run(serve())
    return 0


def run_poll(_args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.bounce_mailbox_url:
        print("alerts bounces poll: ALERTS_BOUNCE_MAILBOX_URL is not set", file=sys.stderr)
        return 2
    try:
        mailbox = Mailbox.from_url(settings.bounce_mailbox_url)
        report = poll(mailbox, lambda raw: take_in(raw, (), settings))
    except MailboxError as error:
        print(f"alerts bounces poll: {error}", file=sys.stderr)
        return 1
    print(f"recorded {report.taken}, failed {report.failed}, left for the next poll {report.left}")
    return 1 if report.failed else 0
