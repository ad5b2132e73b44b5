"""The ``alerts`` command: one subcommand module per area, each with ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from alerts import metrics
from alerts.config import get_settings
from alerts.errors import AlertsError, UnavailableError
from alerts.jobs import install_job_sender
from alerts.mailer import close_process_mailer
from alerts.storage import storage_fault

# Who the audit log names for everything done at the command line.
CLI_ACTOR = "cli"
# A storage fault (a full disk, a read-only folder) is reported in one line with this code.
EXIT_STORAGE_FAULT = 1
# A command refused what it was given (argparse's own code for bad usage).
EXIT_REFUSED = 2
# A question answered "no" (or not answered): nothing was changed.
EXIT_DECLINED = 1
MAX_PORT = 65535

# Each module adds its subcommands; a subcommand's handler returns the exit code.
COMMAND_MODULES = (
    "alerts.cli.database",
    "alerts.cli.ingest",
    "alerts.cli.processes",
    "alerts.cli.match",
    "alerts.cli.subscribers",
    "alerts.cli.users",
    "alerts.cli.newsletters",
    "alerts.cli.webhooks",
    "alerts.cli.prune",
    "alerts.cli.bounces",
    "alerts.cli.regions",
)


DESCRIPTION = (
    "Keyword and region alerts, digests and newsletters for a newsroom. "
    "Start with `alerts up`; `alerts COMMAND --help` explains each command."
)


class CommandParser(argparse.ArgumentParser):
    """argparse with a one-line complaint: the usage block buries the reason.

    Subcommand parsers are made from the same class, so every command in the
    tree answers a bad command line the same way, with argparse's exit code.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_REFUSED, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def positive_int(text: str) -> int:
    """A count or size given on the command line: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def port_number(text: str) -> int:
    """A TCP port to listen on."""
    value = positive_int(text)
    if value > MAX_PORT:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to {MAX_PORT})")
    return value


def confirmed(question: str, assume_yes: bool) -> bool:
    """Ask ``question`` on the terminal unless ``--yes`` was given; no answer is "no".

    A script without ``--yes`` reads end-of-file and so removes nothing.
    """
    if assume_yes:
        return True
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = input()
    except EOFError:
        answer = ""
    if answer.strip().lower() in {"y", "yes"}:
        return True
    print("nothing changed", file=sys.stderr)
    return False


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """ "1 interest", "2 interests": the command line speaks English."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def region_label(region_id: str) -> str:
    """A region as people know it: its name, with where it lies when the name is
    shared ("Georgia (United States)"), and the id only for one the gazetteer lost."""
    from alerts.regions import default_gazetteer

    gazetteer = default_gazetteer()
    region = gazetteer.regions.get(region_id)
    if region is None:
        return region_id
    try:
        unique = gazetteer.resolve(region.name).id == region_id
    except ValueError:
        unique = False
    parent = gazetteer.regions.get(region.parents[0]) if region.parents else None
    return region.name if unique or parent is None else f"{region.name} ({parent.name})"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="alerts", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"alerts {version('alerts')}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


# sysexits.h's EX_UNAVAILABLE: a service the command needs is down; try again later.
EXIT_UNAVAILABLE = 69


def send_through_workers(job: str, arguments: dict[str, Any]) -> None:
    """The Celery sender, imported when a command first queues work, not at every start."""
    from workers.dispatch import send_job

    send_job(job, arguments)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    install_job_sender(send_through_workers)
    try:
        # The command's own process (and `alerts web`, which serves in it) counts
        # into this host's metrics files, as the worker and clock do.
        metrics.keep_in_files(get_settings())
        code: int = args.handler(args)
    except AlertsError as error:
        # A rule the command's own handler did not translate: still one line.
        print(f"alerts: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE if isinstance(error, UnavailableError) else EXIT_REFUSED
    except Exception as error:
        # The unit of work has rolled back by now (session_scope), so one line is
        # the whole story: nothing was half written.
        storage = _storage_fault(error)
        if storage is not None:
            print(f"alerts: {storage}", file=sys.stderr)
            return EXIT_STORAGE_FAULT
        message = outage_message(error)
        if message is None:
            raise
        # An outage is not a bug: one line that says which service, no traceback.
        print(f"alerts: {message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        close_process_mailer()
    return code


def _storage_fault(error: Exception) -> str | None:
    """The one-line account of a full disk or unwritable folder, if ``error`` is one."""
    try:
        settings = get_settings()
    except Exception:  # noqa: BLE001 - unreadable settings: the original error is shown
        return None
    return storage_fault(error, settings)


def outage_message(error: BaseException) -> str | None:
    """One line naming the service that is down, or None if ``error`` is no outage."""
    settings = get_settings()
    if isinstance(error, OperationalError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    ):
        where = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
        return f"the database is unavailable ({where}): {_first_line(error.orig or error)}"
    if _is_broker_error(error):
        where = _without_password(settings.resolved_broker_url)
        return f"the broker is unavailable ({where}): {_first_line(error)}"
    return None


def _is_broker_error(error: BaseException) -> bool:
    # kombu's OperationalError, told by name: the domain does not import the
    # messaging stack (workers/ does), and a CLI command may queue through it.
    return any(
        cls.__module__ == "kombu.exceptions" and cls.__name__ == "OperationalError"
        for cls in type(error).__mro__
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def run() -> None:
    sys.exit(main())
