"""``alerts db upgrade``."""

from __future__ import annotations

import argparse

from alerts.config import get_settings
from alerts.db import make_engine, schema_is_current, upgrade_schema


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = subparsers.add_parser("db", help="database schema")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = actions.add_parser(
        "upgrade", help="create or migrate the schema to the newest version"
    )
    upgrade.set_defaults(handler=run_upgrade)


def run_upgrade(_args: argparse.Namespace) -> int:
    settings = get_settings()
    if settings.resolved_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade_schema(engine, settings)
    print("schema is current" if schema_is_current(engine) else "schema upgrade failed")
    return 0
