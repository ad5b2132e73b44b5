"""``alerts match``: match JSONL articles against JSONL interests, offline.

Interests are validated up front: one that cannot be parsed or names an
unknown region stops the command (exit 2) before any article is read, with
each bad interest's line, id and problem on stderr. Output is one JSON line
per article: ``{"article": id, "interests": [ids]}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from alerts.cli import positive_int, region_label
from alerts.config import get_settings
from alerts.db import get_database, utcnow
from alerts.errors import InvalidInputError
from alerts.matching import (
    Interest,
    InterestIndex,
    PreparedInterest,
    QueryError,
    UnknownRegionError,
    analyze,
    load_gazetteer,
    prepare_interest,
)
from alerts.matching.service import preview_interest
from alerts.regions import Gazetteer

EXIT_OK = 0
EXIT_BAD_ARTICLE = 1
EXIT_BAD_INTEREST = 2


class InputError(InvalidInputError):
    """A malformed line in one of the JSONL inputs."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``match`` subcommand; its handler is stored as ``handler``."""
    parser = subparsers.add_parser(
        "match", help="match articles against interests (JSONL in, JSONL out)"
    )
    parser.add_argument("--interests", required=True, type=Path, help="interests JSONL file")
    parser.add_argument("--articles", required=True, type=Path, help="articles JSONL file")
    parser.set_defaults(handler=run_match_command)

    interests = subparsers.add_parser("interests", help="try interests against stored articles")
    actions = interests.add_subparsers(dest="action", required=True, metavar="ACTION")
    preview = actions.add_parser(
        "preview", help="list the stored articles an interest would have matched"
    )
    preview.add_argument("query", nargs="?", help="keyword query (may be empty with --region)")
    preview.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="R",
        help="a region the interest follows (repeat for several)",
    )
    preview.add_argument(
        "--days", type=positive_int, default=7, help="how far back to look (default: 7)"
    )
    preview.add_argument(
        "--limit", type=positive_int, default=50, help="most articles listed (default: 50)"
    )
    preview.add_argument(
        "--max-articles",
        type=positive_int,
        default=None,
        metavar="N",
        help="look through the newest N stored articles at most (default: all in --days)",
    )
    preview.add_argument("--json", action="store_true", help="one JSON line per article")
    preview.set_defaults(handler=run_preview_command)


def run_preview_command(args: argparse.Namespace) -> int:
    """``alerts interests preview``: exit 2 with the problem when the interest is bad."""
    settings = get_settings()
    try:
        with get_database(settings).session_scope() as session:
            hits = preview_interest(
                session,
                args.query,
                args.region,
                since=utcnow() - timedelta(days=args.days),
                gazetteer=load_gazetteer(),
                settings=settings,
                limit=args.limit,
                max_articles=args.max_articles,
            )
    except UnknownRegionError as error:
        print(
            f"alerts interests preview: unknown region {error.name!r}{error.hint}",
            file=sys.stderr,
        )
        return EXIT_BAD_INTEREST
    except QueryError as error:
        # With no query typed there is nothing for a caret to point under.
        reason = error if (args.query or "").strip() else error.message
        print(f"alerts interests preview: {reason}", file=sys.stderr)
        return EXIT_BAD_INTEREST
    for hit in hits:
        why = dataclasses.asdict(hit.explanation)
        if args.json:
            print(json.dumps({"article": hit.article_id, "title": hit.title, "why": why}))
        else:
            when = f"{hit.published:%Y-%m-%d}" if hit.published else "undated"
            # Region names for people; the JSON line keeps the ids for scripts.
            regions = [region_label(r["region_id"]) for r in why["regions"]]
            found = [t["term"] for t in why["terms"]] + regions
            print(f"{hit.article_id:>6}  {when}  {hit.title}  [{', '.join(found)}]")
    if not args.json:
        print(f"{len(hits)} articles in the last {args.days} days")
    return EXIT_OK


def run_match_command(args: argparse.Namespace) -> int:
    """argparse entry point: returns the process exit code."""
    return run_match(args.interests, args.articles, out=sys.stdout, err=sys.stderr)


def _jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: invalid JSON: {exc.msg}") from exc


def _interest(raw: Any) -> Interest:
    if not isinstance(raw, dict) or "id" not in raw:
        raise InputError("an interest must be an object with an 'id'")
    query = raw.get("query")
    regions = raw.get("regions") or []
    if query is not None and not isinstance(query, str):
        raise InputError(f"interest {raw['id']!r}: 'query' must be a string")
    if not isinstance(regions, list) or not all(isinstance(r, str) for r in regions):
        raise InputError(f"interest {raw['id']!r}: 'regions' must be a list of strings")
    return Interest(id=str(raw["id"]), query=query, regions=tuple(regions))


def load_interests(
    path: Path, gazetteer: Gazetteer, err: TextIO
) -> list[tuple[str, PreparedInterest]] | None:
    """Parse every interest, reporting each bad one; ``None`` if any was bad."""
    settings = get_settings()
    prepared: list[tuple[str, PreparedInterest]] = []
    failed = False
    for number, raw in _jsonl(path):
        try:
            interest = _interest(raw)
        except InputError as exc:
            print(f"{path}:{number}: {exc}", file=err)
            failed = True
            continue
        try:
            # the limits the workers apply to stored interests, so a file that
            # passes here would also pass sign-up, the API and the import
            item = prepare_interest(
                interest,
                gazetteer,
                max_length=settings.query_max_length,
                max_terms=settings.query_max_terms,
                max_depth=settings.query_max_depth,
            )
            prepared.append((interest.id, item))
        except QueryError as exc:
            print(
                f"{path}:{number}: interest {interest.id!r}: bad query: {exc.message} "
                f"at position {exc.position}\n{exc.caret()}",
                file=err,
            )
            failed = True
        except UnknownRegionError as exc:
            print(
                f"{path}:{number}: interest {interest.id!r}: unknown region {exc.name!r}{exc.hint}",
                file=err,
            )
            failed = True
    return None if failed else prepared


def _article_fields(number: int, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or "id" not in raw:
        raise InputError(f"line {number}: an article must be an object with an 'id'")
    tags = raw.get("tags") or []
    if not isinstance(tags, list):
        raise InputError(f"line {number}: article {raw['id']!r}: 'tags' must be a list")
    return {
        "title": str(raw.get("title") or ""),
        "body": str(raw.get("body") or ""),
        "tags": [str(tag) for tag in tags],
        "source": str(raw.get("source") or ""),
        "language": str(raw.get("language") or ""),
    }


def run_match(
    interests_path: Path,
    articles_path: Path,
    *,
    out: TextIO,
    err: TextIO,
    gazetteer: Gazetteer | None = None,
) -> int:
    """Match every article and write one JSON line per article to ``out``."""
    gz = gazetteer or load_gazetteer()
    try:
        prepared = load_interests(interests_path, gz, err)
    except (InputError, OSError) as exc:
        print(f"{interests_path}: {exc}", file=err)
        return EXIT_BAD_INTEREST
    if prepared is None:
        return EXIT_BAD_INTEREST
    index = InterestIndex(gazetteer=gz)
    for interest_id, item in prepared:
        index.add_prepared(interest_id, item)
    try:
        for number, raw in _jsonl(articles_path):
            doc = analyze(
                str(raw.get("id")) if isinstance(raw, dict) else "",
                gazetteer=gz,
                **_article_fields(number, raw),
            )
            line = {"article": raw["id"], "interests": index.match_ids(doc)}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    except (InputError, OSError) as exc:
        print(f"{articles_path}: {exc}", file=err)
        return EXIT_BAD_ARTICLE
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``match`` on its own: ``python -m alerts.cli.match --interests ... --articles ...``."""
    parser = argparse.ArgumentParser(prog="alerts")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["match", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
