"""``alerts prune``: delete history past its retention period, a batch at a time."""

from __future__ import annotations

import argparse
import json

from alerts.config import get_settings
from alerts.db import utcnow
from alerts.retention import PruneReport, prune_all


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prune = subparsers.add_parser(
        "prune", help="delete articles, matches and ledger rows past their retention period"
    )
    prune.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    prune.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    prune.set_defaults(handler=run_prune)


def run_prune(args: argparse.Namespace) -> int:
    report: PruneReport = prune_all(get_settings(), utcnow(), dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, **report.as_dict()}))
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    counts = report.as_dict()
    for kind, cutoff in report.cutoffs.items():
        print(f"{kind.replace('_', ' ')}: {verb} {counts[kind]} (older than {cutoff})")
    kept = set(counts) - set(report.cutoffs) - {"total", "cutoffs"}
    for kind in sorted(kept):
        print(f"{kind.replace('_', ' ')}: kept forever")
    return 0
