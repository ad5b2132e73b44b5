"""Measure ``alerts bounces parse`` against the labelled bounce collections.

    .venv/bin/python bench/bounce_corpus.py [COLLECTION ...]

For each folder of tests/data/bounces (default: all), it runs the CLI itself,
``alerts bounces parse FILE... --json``, over the folder's labelled messages
and compares each answer with ``expected.json``: the recipients (as a set)
and the kind. It prints the share right per collection, per sending MTA where
the labels name it (Sisimai's ``sisimai`` field, else the file name's stem),
and every miss. Files whose answer is ambiguous (``"scored": false`` in
expected.json) are parsed but not counted; the output says how many.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "bounces"
CLI = REPO / ".venv" / "bin" / "alerts"


def mta_of(name: str, want: dict) -> str:
    labels = want.get("sisimai") or []
    if labels:
        return labels[0].split(":")[0]
    stem = name.rsplit(".", 1)[0]
    for prefix in ("eg-", "lhost-", "rhost-", "email-"):
        stem = stem.removeprefix(prefix)
    return stem.rstrip("0123456789").rstrip("_-")


def measure(folder: Path) -> tuple[int, int, int]:
    expected = json.loads((folder / "expected.json").read_text())
    scored = {name: want for name, want in expected.items() if want.get("scored", True)}
    files = [str(folder / name) for name in sorted(expected)]
    env = {**os.environ, "ALERTS_BOUNCE_DOMAIN": "bounces.news.example.org"}
    out = subprocess.run(
        [str(CLI), "bounces", "parse", "--json", *files],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    answers = {Path(item["file"]).name: item for item in map(json.loads, out.splitlines())}
    per_mta: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    misses = []
    right_recipient = right_kind = 0
    for name, want in sorted(scored.items()):
        got = answers[name]
        recipient_ok = sorted(got["recipients"]) == sorted(want["recipients"])
        kind_ok = got["kind"] == want["kind"]
        right_recipient += recipient_ok
        right_kind += kind_ok
        row = per_mta[mta_of(name, want)]
        row[0] += 1
        row[1] += recipient_ok
        row[2] += kind_ok
        if not (recipient_ok and kind_ok):
            misses.append(
                f"  {name}: got {got['kind']} {got['recipients']}, "
                f"want {want['kind']} {want['recipients']}"
            )
    total = len(scored)
    print(f"== {folder.name}: {total} scored, {len(expected) - total} ambiguous (not scored)")
    print(f"recipient right: {right_recipient}/{total} = {right_recipient / total:.1%}")
    print(f"kind right:      {right_kind}/{total} = {right_kind / total:.1%}")
    print(f"{'MTA':<20} {'files':>5} {'recipient':>9} {'kind':>5}")
    for mta, (n, rec, kind) in sorted(per_mta.items(), key=lambda item: item[0].lower()):
        print(f"{mta:<20} {n:>5} {rec:>9} {kind:>5}")
    if misses:
        print("misses:")
        print("\n".join(misses))
    return total, right_recipient, right_kind


def main(argv: list[str]) -> int:
    names = argv or sorted(p.parent.name for p in CORPUS.glob("*/expected.json"))
    for name in names:
        measure(CORPUS / name)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
