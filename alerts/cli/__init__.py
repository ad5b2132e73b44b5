"""The ``alerts`` command: one subcommand module per area, each with ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from alerts import metrics
from alerts.config import get_settings
from alerts.storage import storage_fault

# A storage fault (a full disk, a read-only folder) is reported in one line with this code.
EXIT_STORAGE_FAULT = 1

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
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alerts", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # The command's own process (and `alerts web`, which serves in it) counts
        # into this host's metrics files, as the worker and clock do.
        metrics.keep_in_files(get_settings())
        code: int = args.handler(args)
    except Exception as error:
        message = _storage_fault(error)
        if message is None:
            raise
        # The unit of work has rolled back by now (session_scope), so the sentence
        # is the whole story: nothing was half written.
        print(f"alerts: {message}", file=sys.stderr)
        return EXIT_STORAGE_FAULT
    return code


def _storage_fault(error: Exception) -> str | None:
    """The one-line account of a full disk or unwritable folder, if ``error`` is one."""
    try:
        settings = get_settings()
    except Exception:  # noqa: BLE001 - unreadable settings: the original error is shown
        return None
    return storage_fault(error, settings)


def run() -> None:
    sys.exit(main())
