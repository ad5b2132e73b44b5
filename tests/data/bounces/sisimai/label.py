"""Turn Sisimai's answers (sisimai-4.25.15.tsv) into expected.json for our kinds.

Run from this folder after sisimai_labels.pl: ``python3 label.py``. The
mapping from Sisimai's reasons to ``alerts bounces parse`` kinds, decided once:

* ``feedback`` -> complaint; ``vacation`` -> auto-reply;
* ``mailboxfull`` and ``expired`` -> soft: the mailbox exists and may empty
  again, or delivery timed out without the address ever being refused;
* anything else -> by the SMTP class of the status the message gives (5.x.x
  hard, 4.x.x soft); where Sisimai had to make a status up (its x.0.9xx
  codes: the message gave none), a network, queue or system trouble is soft
  and the rest (user unknown, filtered, suspended, rejected...) hard.

A recipient Sisimai could not name (its ``...@libsisimai.org.invalid``
placeholder) expects no recipient. ``notes.json`` records, per file, why an
answer is ambiguous and what is expected instead (or that it is not scored).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

HERE = Path(__file__).parent
ALWAYS_SOFT = {"mailboxfull", "expired"}
SOFT_WITHOUT_STATUS = {"networkerror", "toomanyconn", "systemerror", "systemfull"}
PSEUDO_STATUS = re.compile(r"^\d\.0\.9\d\d$")
LICENCE = "BSD-2-Clause (Sisimai set-of-emails)"


def kind_of(reason: str, status: str) -> str:
    if reason == "feedback":
        return "complaint"
    if reason == "vacation":
        return "auto-reply"
    if reason in ALWAYS_SOFT:
        return "soft"
    if not status or PSEUDO_STATUS.match(status):
        return "soft" if reason in SOFT_WITHOUT_STATUS or status.startswith("4") else "hard"
    return "hard" if status.startswith("5") else "soft"


def main() -> None:
    sources = {row[0]: row[1:] for row in csv.reader((HERE / "sources.tsv").open(), delimiter="\t")}
    notes = json.loads((HERE / "notes.json").read_text())
    answers: dict[str, list[list[str]]] = {}
    for row in csv.reader((HERE / "sisimai-4.25.15.tsv").open(), delimiter="\t"):
        answers.setdefault(row[0], []).append(row)
    expected = {}
    for name in sorted(sources):
        rows = [r for r in answers.get(name, []) if r[1] != "NONE"]
        kinds = [kind_of(r[3], r[2]) for r in rows]
        # One hard failure makes the whole message hard, as in alerts.bounces.
        kind = "hard" if "hard" in kinds else (kinds[0] if kinds else "not-a-bounce")
        statuses = [r[2] for r in rows if r[2] and not PSEUDO_STATUS.match(r[2])]
        recipients = sorted(
            {r[1].lower() for r in rows if not r[1].endswith("libsisimai.org.invalid")}
        )
        repo, commit, path = sources[name]
        entry = {
            "kind": kind,
            "recipients": recipients,
            "status": statuses[0] if statuses else None,
            "sisimai": sorted({f"{r[4]}:{r[3]}" for r in rows}),
            "source": {"repo": repo, "path": path, "commit": commit, "licence": LICENCE},
        }
        entry.update(notes.get(name, {}))
        expected[name] = entry
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
