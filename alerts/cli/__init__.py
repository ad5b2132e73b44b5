"""The ``alerts`` command: one subcommand module per area, each with ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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
    "alerts.cli.regions",
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
    code: int = args.handler(args)
    return code


def run() -> None:
    sys.exit(main())
