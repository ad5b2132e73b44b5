"""The gazetteer: regions with stable ids, a containment hierarchy and aliases.

Region ids (documented in docs): macro regions are slugs (``caucasus``,
``south-caucasus``), countries their ISO 3166-1 alpha-2 code (``ge``),
subdivisions their ISO 3166-2 code (``ge-ab``, ``us-ga``) or a curated
``<country>-<code>`` where ISO has none (``ge-so`` South Ossetia, ``az-nk``
Nagorno-Karabakh, ``ua-donbas``), cities ``<country>-c-<slug>``
(``ge-c-tskhinvali``). Containment is a DAG: Chechnya is inside both Russia
and the North Caucasus.

Detection follows the region rule of the brief: an article is in region R
when a tag, the title or the lead names R or a place inside R, or when the
body does so at least twice. Every name found is scored per reading (see
``docs/architecture.md``, "Region detection"): a prior from the kind and the
population, the qualifiers around it ("Paris, Texas", "the state of", "X
County"), the other places the article names, and cues that it is not a place
at all (a person's first name, an organisation). Each mention keeps the
evidence that chose it.
"""

from __future__ import annotations

import gc
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from alerts.errors import InvalidInputError
from alerts.text.analysis import Token, fold, tokenize, tokenize_with_case

GAZETTEER_PATH = Path(__file__).parent / "data" / "gazetteer.json"

#: Body mentions needed before an article counts as being in a region.
BODY_MENTIONS_REQUIRED = 2
#: Zones where a single mention is enough.
DIRECT_ZONES = frozenset({"tag", "title", "lead"})

#: Prior per kind for regions without a population (curated entries).
KIND_PRIOR = {
    "country": 3.0,
    "macro": 2.5,
    "historical": 2.0,
    "region": 2.0,
    "district": 2.0,
    "city": 1.0,
}
#: A country's prior grows slowly with its population (+0.3 at 1M, +0.45 at
#: 1bn), enough to tell the two Congos apart, never enough to beat context.
COUNTRY_POPULATION_WEIGHT = 1 / 20
#: A generated place's prior is log10(population / this): 0 for 10,000,
#: 1 for 100,000, 2.9 for 8 million.
CITY_PRIOR_BASE = 10_000
#: Generated places smaller than this, and those whose name is an everyday
#: word, count only with evidence beside the name (see ``_supported``).
STANDALONE_POPULATION = 100_000
#: Towns smaller than this are never offered as "did you mean" suggestions.
SUGGESTED_POPULATION = 1_000_000
#: Generated places below this size are read as a person's name when a
#: capitalised word that is no place stands next to them ("Nigel Lawson").
PERSON_CHECK_POPULATION = 1_000_000
#: A zone where more than this share of words is capitalised is an all-caps or
#: title-case headline: capitals say nothing there, so smaller places need support.
TITLE_CASE_SHARE = 0.6
#: Abbreviations that are everyday words and never qualify a place ("IN", "OR").
#: The AP forms that are words too ("Pa.", "Md.", "Mass.", "Wash.", "Ill.",
#: "Miss.", "Ore.", "Ind.", "Del.", "Mo.") are not here: a qualifier is only
#: read capitalised, right after another place and outside the title, where
#: "Lebanon, Pa." is the state and "Pa" the word is not seen.
AMBIGUOUS_QUALIFIERS = frozenset(
    {
        "in",
        "or",
        "me",
        "ok",
        "hi",
        "de",
        "la",
        "ma",
        "co",
        "id",
        "al",
        "oh",
        "cal",
        "man",
        "on",
        "ab",
        "ne",
        "act",
        "wa",
        "sa",
        "vic",
        "tas",
        "ms",
        "mi",
        "ut",
        "nt",
        "ar",
        "sc",
        "ri",
        "mt",
        "ks",
    }
)

#: Evidence weights (see docs/architecture.md, "Region detection").
ADJACENT_BONUS = 10.0  # "Paris, Texas", "Atlanta, Georgia": the neighbour contains / lies inside it
LIST_BONUS = 3.0  # "Utah, Virginia, Washington": a neighbour of the same kind and parent
CUE_BONUS = 10.0  # "the state of Georgia", "штат Джорджия", "Washington state"
ORGANISATION_BONUS = 4.0  # "University of Georgia": organisations carry sub-national names
INSIDE_BONUS = 3.0  # another named place lies inside this reading
SAME_DIVISION_BONUS = 2.0  # another named place shares this reading's state/province
SAME_COUNTRY_BONUS = 2.0  # another named place shares this reading's country
NEIGHBOUR_BONUS = 1.5  # another named place is in a country bordering this reading's
CONTAINER_BONUS = 1.0  # this reading lies inside another named place

#: Words before a name that say it is a sub-national division.
DIVISION_CUES_BEFORE: tuple[tuple[str, ...], ...] = (
    ("state", "of"),
    ("province", "of"),
    ("commonwealth", "of"),
    ("штат",),
    ("штата",),
    ("штате",),
    ("штату",),
    ("провинция",),
    ("провинции",),
    ("bundesstaat",),
    ("us", "bundesstaat"),
    ("bundesstaats",),
    ("provinz",),
    # "Gwinnett County, Georgia", "Caddo Parish, Louisiana": what follows a
    # county is its state
    ("county",),
    ("parish",),
)
#: Words after a name that say it is a state: "Washington state", "Georgia
#: Gov. Brian Kemp" (a country has no governor; Washington, D.C. neither).
DIVISION_CUES_AFTER: tuple[tuple[str, ...], ...] = (("state",), ("gov",), ("governor",))
#: Organisation patterns: the name is part of an institution's name. They
#: favour sub-national readings ("University of Georgia" is the state's).
ORGANISATION_BEFORE: tuple[tuple[str, ...], ...] = (
    ("university", "of"),
    ("bureau", "of"),
    ("college", "of"),
    ("governor", "of"),
    ("gouverneur", "von"),
    ("губернатор",),
    ("губернатора",),
)
ORGANISATION_AFTER: tuple[tuple[str, ...], ...] = (
    ("bureau",),
    ("police",),
    ("university",),
    ("state", "university"),
    ("department",),
    ("sheriff",),
    ("senate",),
    ("legislature",),
    ("general", "assembly"),
    ("house", "of"),
    ("attorney", "general"),
    ("tech",),
    ("bulldogs",),
    ("power",),
    ("southern",),
    ("republicans",),
    ("democrats",),
    ("secretary", "of"),
    ("public", "service"),
    ("public", "health"),
    ("highway", "patrol"),
    ("state", "patrol"),
)
# the cue tables as sets: the words around a name are sets of tuples too, so
# each test is one intersection
_DIVISION_BEFORE = frozenset(DIVISION_CUES_BEFORE)
_DIVISION_AFTER = frozenset(DIVISION_CUES_AFTER)
_ORGANISATION_BEFORE = frozenset(ORGANISATION_BEFORE)
_ORGANISATION_AFTER = frozenset(ORGANISATION_AFTER)
#: Words after a name that make it another thing of that name ("Lebanon
#: County", "Georgia Avenue"): the mention is dropped.
NOT_PLACE_AFTER = frozenset(
    {
        "county",
        "parish",
        "avenue",
        "street",
        "road",
        "boulevard",
        "times",
        "post",
        "herald",
        "tribune",
        "journal",
        "gazette",
        "chronicle",
    }
)
#: Words before a name that make it a lake or a mountain ("Lake Victoria").
NOT_PLACE_BEFORE = frozenset({"lake", "mount", "mt", "cape"})
#: Titles before a name that make it a person ("Mr Jordan", "Sen. Georgia").
PERSON_TITLES = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "dr",
        "sen",
        "rep",
        "gov",
        "judge",
        "coach",
        "president",
        "господин",
        "frau",
        "herr",
    }
)
#: Capitalised words after a place name that say what the place has or is
#: ("Georgia Senate"; "Jordan's King Abdullah" once the possessive is gone),
#: never a surname: the place is not read as a person or firm before them.
#: Not "Secretary" ("Perm Secretary" is a permanent secretary), nor "Northern",
#: "Southern", "General", which follow names in firms' names ("Burlington
#: Northern", "GAO").
INSTITUTION_WORDS = frozenset(
    {
        "king",
        "queen",
        "prince",
        "princess",
        "emir",
        "sultan",
        "president",
        "premier",
        "prime",
        "foreign",
        "defence",
        "defense",
        "interior",
        "finance",
        "central",
        "supreme",
        "house",
        "senate",
        "assembly",
        "parliament",
        "legislature",
        "ministry",
        "army",
        "navy",
        "court",
        "gov",
        "governor",
        "attorney",
        "republicans",
        "democrats",
        "bulldogs",
        "college",
        "embassy",
        "opposition",
    }
)
#: Words that may follow a given-name place without making it a person.
PLACE_FOLLOWERS = frozenset(
    {
        "river",
        "valley",
        "city",
        "state",
        "republic",
        "government",
        "news",
        "university",
        "bureau",
        "police",
        "department",
        "county",
        "power",
        "tech",
        "street",
        "avenue",
        "road",
        "coast",
        "lake",
        "mountains",
        "sea",
        "bay",
        "island",
        "islands",
        "international",
        "national",
        "airport",
        "port",
        "north",
        "south",
        "east",
        "west",
    }
)


class UnknownRegionError(InvalidInputError):
    """A region name or id that the gazetteer does not know."""

    def __init__(
        self, name: str, suggestions: Sequence[str] = (), *, interest_id: str | None = None
    ) -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        self.interest_id = interest_id
        where = f"interest {interest_id!r}: " if interest_id is not None else ""
        super().__init__(f"{where}unknown region {name!r}{self.hint}")

    @property
    def hint(self) -> str:
        """``"; did you mean South Ossetia?"`` when the gazetteer has close names."""
        return f"; did you mean {' or '.join(self.suggestions)}?" if self.suggestions else ""


@dataclass(frozen=True, slots=True)
class Region:
    id: str
    name: str
    kind: str
    parents: tuple[str, ...]
    prior: float
    generated: bool
    cues: tuple[tuple[str, ...], ...] = ()
    population: int = 0
    neighbours: tuple[str, ...] = ()
    common_word: bool = False


@dataclass(frozen=True, slots=True)
class Mention:
    """One place name found in an article, after disambiguation."""

    region_id: str
    zone: str  # "tag", "title", "lead" or "body"
    text: str  # the folded words that matched
    start: int
    evidence: str = ""  # what chose this reading ("qualifier texas", "prior")


@dataclass(frozen=True, slots=True)
class _Reading:
    region_id: str
    needs_capital: bool
    qualifier: bool = False  # an abbreviation that names a place only after another ("Ga.")
    weak: bool = False  # counts only with evidence beside the name


@dataclass(slots=True)
class RegionAssignment:
    """The regions an article is in, with the mentions that put it there."""

    regions: frozenset[str]
    mentions: list[Mention] = field(default_factory=list)

    def evidence(self, region_id: str, gazetteer: Gazetteer) -> list[Mention]:
        """Mentions that resolve into ``region_id``'s subtree."""
        return [m for m in self.mentions if region_id in gazetteer.ancestors(m.region_id)]


@dataclass(slots=True)
class _Context:
    """The article's unambiguous places, indexed by what they can support."""

    ids: set[str]
    inside: dict[str, str] = field(default_factory=dict)  # ancestor -> a place inside it
    divisions: dict[str, str] = field(default_factory=dict)  # state/province -> a place in it
    countries: dict[str, list[str]] = field(default_factory=dict)  # country -> places in it
    neighbours: dict[str, str] = field(default_factory=dict)  # bordering country -> a place
    #: the context of the first pass (unambiguous names only), which small
    #: towns are judged by in the second
    first: _Context | None = None


#: The word sequences ending just before a name and starting just after it.
_Surroundings = tuple[set[tuple[str, ...]], set[tuple[str, ...]]]

#: One alias hit: token span and its readings.
_Hit = tuple[int, int, list[_Reading]]


def _prior(item: dict[str, Any]) -> float:
    if "prior" in item:
        return float(item["prior"])
    population = int(item.get("population") or 0)
    if item["kind"] == "country":
        bonus = math.log10(population) * COUNTRY_POPULATION_WEIGHT if population > 1 else 0.0
        return KIND_PRIOR["country"] + bonus
    if item["kind"] == "city" and item.get("generated") and population:
        return max(0.0, math.log10(population / CITY_PRIOR_BASE))
    return KIND_PRIOR.get(item["kind"], 1.0)


def _needs_capital(alias: str) -> bool:
    """Aliases written with a capital must be capitalised in running text;
    the curated table writes German and Russian adjectives in lower case."""
    return alias[:1].isupper()


def _acronym(alias: str) -> bool:
    letters = [c for c in alias if c.isalpha()]
    return bool(letters) and len(letters) <= 4 and all(c.isupper() for c in letters)


#: Acronyms that are names in running text on their own.
STRONG_ACRONYMS = frozenset(
    {
        "us",
        "usa",
        "u s",
        "u s a",
        "uk",
        "u k",
        "uae",
        "u a e",
        "ussr",
        "u s s r",
        "drc",
        "d c",
        "сша",
        "ссср",
        "кндр",
    }
)


class Gazetteer:
    """Regions, their aliases and hierarchy; loaded once and shared read-only."""

    def __init__(self, regions: Iterable[Region], aliases: dict[tuple[str, ...], list[_Reading]]):
        self.regions: dict[str, Region] = {r.id: r for r in regions}
        self._aliases = aliases
        grouped: dict[str, dict[int, dict[tuple[str, ...], list[_Reading]]]] = {}
        for words, readings in aliases.items():
            grouped.setdefault(words[0], {}).setdefault(len(words), {})[words] = readings
        # first word -> [(length, {words: readings})], longest first
        self._by_first: dict[str, list[tuple[int, dict[tuple[str, ...], list[_Reading]]]]] = {
            first: sorted(by_length.items(), reverse=True) for first, by_length in grouped.items()
        }
        self._lower_first = frozenset(
            words[0]
            for words, readings in aliases.items()
            if any(not r.needs_capital for r in readings)
        )
        self._ancestors: dict[str, frozenset[str]] = {}
        self._countries: dict[str, frozenset[str]] = {}
        self._division: dict[str, str] = {}
        self._names: list[tuple[str, str]] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Gazetteer:
        """Build from the compiled JSON layout written by ``alerts.regions.build``."""
        regions: list[Region] = []
        aliases: dict[tuple[str, ...], list[_Reading]] = {}
        for item in data["regions"]:
            population = int(item.get("population") or 0)
            cues = tuple(tuple(tokenize(cue)) for cue in item.get("cues", []))
            region = Region(
                item["id"],
                item["name"],
                item["kind"],
                tuple(item["parents"]),
                _prior(item),
                bool(item.get("generated")),
                cues,
                population,
                tuple(item.get("neighbours", ())),
                bool(item.get("common")),
            )
            regions.append(region)
            small = (
                region.kind == "city"
                and region.generated
                and (population < STANDALONE_POPULATION or region.common_word)
            )
            for alias in [*item["aliases"], *item.get("demonyms", [])]:
                words = tuple(tokenize(alias))
                if not words:
                    continue
                weak = small or (_acronym(alias) and " ".join(words) not in STRONG_ACRONYMS)
                _add_reading(aliases, words, _Reading(region.id, _needs_capital(alias), weak=weak))
            for abbreviation in item.get("qualifiers", []):
                words = tuple(tokenize(abbreviation))
                if words and " ".join(words) not in AMBIGUOUS_QUALIFIERS:
                    _add_reading(aliases, words, _Reading(region.id, True, qualifier=True))
        return cls(regions, aliases)

    # --- hierarchy -------------------------------------------------------

    def ancestors(self, region_id: str) -> frozenset[str]:
        """``region_id`` and every region containing it, transitively."""
        cached = self._ancestors.get(region_id)
        if cached is not None:
            return cached
        result = {region_id}
        stack = list(self.regions[region_id].parents)
        while stack:
            parent = stack.pop()
            if parent not in result:
                result.add(parent)
                stack.extend(self.regions[parent].parents)
        frozen = frozenset(result)
        self._ancestors[region_id] = frozen
        return frozen

    def contains(self, outer: str, inner: str) -> bool:
        """True when ``inner`` lies inside ``outer`` (or is it)."""
        return outer in self.ancestors(inner)

    def countries(self, region_id: str) -> frozenset[str]:
        cached = self._countries.get(region_id)
        if cached is None:
            cached = frozenset(
                a for a in self.ancestors(region_id) if self.regions[a].kind == "country"
            )
            self._countries[region_id] = cached
        return cached

    def division(self, region_id: str) -> str:
        """The first-level division (state, province) a place is in, or ``""``."""
        cached = self._division.get(region_id)
        if cached is None:
            cached = ""
            for ancestor in self.ancestors(region_id):
                region = self.regions[ancestor]
                if region.kind == "region" and any(
                    self.regions[p].kind == "country" for p in region.parents
                ):
                    cached = ancestor
                    break
            self._division[region_id] = cached
        return cached

    # --- lookup ----------------------------------------------------------

    def candidates(self, name: str) -> list[str]:
        """Region ids a name can refer to, most likely first."""
        readings = [r for r in self._aliases.get(tuple(tokenize(name)), []) if not r.qualifier]
        ranked = sorted(readings, key=lambda r: -self.regions[r.region_id].prior)
        return [r.region_id for r in ranked]

    def resolve(self, name_or_id: str) -> Region:
        """Region for an id (``ge-so``) or a name ("South Ossetia", "Südossetien",
        "Южная Осетия"); ambiguous names take their most likely reading, and
        "Georgia (U.S. state)" / "Georgia, US" name the other. This is the one
        place where a name a reader typed becomes a region: sign-up, the
        preference centre, the API and the CLI all come here. Raises
        :class:`UnknownRegionError` with "did you mean" suggestions."""
        key = name_or_id.strip().lower()
        for candidate_id in (key, key.replace(" ", "-")):  # "ge so" is how ge-so tokenises
            if candidate_id in self.regions:
                return self.regions[candidate_id]
        found = self.candidates(name_or_id)
        if found:
            return self.regions[found[0]]
        qualified = self._resolve_qualified(name_or_id)
        if qualified is not None:
            return qualified
        raise UnknownRegionError(name_or_id, self.suggest(name_or_id))

    def _resolve_qualified(self, text: str) -> Region | None:
        """ "Georgia (U.S. state)", "Georgia, USA", "London Ontario": a name and
        a place that contains the reading meant; "State of Georgia", "US-Bundesstaat
        Georgia": a division cue before the name selects its sub-national reading."""
        words = tokenize(text)
        while words and words[0] in ("the", "us", "u", "s", "american"):
            words = words[1:]
        cue = next((c for c in DIVISION_CUES_BEFORE if tuple(words[: len(c)]) == c), None)
        if cue is not None and len(words) > len(cue):
            for candidate in self.candidates(" ".join(words[len(cue) :])):
                if self.regions[candidate].kind == "region":
                    return self.regions[candidate]
        words = tokenize(text)
        for split in range(len(words) - 1, 0, -1):
            inner = self.candidates(" ".join(words[:split]))
            outer_words = [w for w in words[split:] if w not in ("state", "province", "the")]
            outer = self.candidates(" ".join(outer_words)) if outer_words else []
            if not outer and outer_words:
                outer = [r.region_id for r in self._aliases.get(tuple(outer_words), [])]
            for candidate in inner:
                if any(self.contains(o, candidate) for o in outer):
                    return self.regions[candidate]
            if (
                inner
                and words[split:]
                and all(w in ("state", "us", "u", "s") for w in words[split:])
            ):
                for candidate in inner:
                    if self.regions[candidate].kind == "region":
                        return self.regions[candidate]
        return None

    def _name_table(self) -> list[tuple[str, str]]:
        if self._names is None:
            seen: dict[str, str] = {}
            for words, readings in self._aliases.items():
                usable = [r for r in readings if not r.qualifier]
                if usable and len(" ".join(words)) > 2:
                    best = max(usable, key=lambda r: self.regions[r.region_id].prior)
                    seen.setdefault(" ".join(words), best.region_id)
            self._names = sorted(seen.items())
        return self._names

    def suggest(self, text: str, limit: int = 3) -> list[str]:
        """Region names close to a misspelt one ("South Osetia" -> "South Ossetia")."""
        from difflib import get_close_matches

        folded = " ".join(tokenize(text))
        if len(folded) < 3:
            return []
        table = self._name_table()
        names = [name for name, _ in table]
        close = get_close_matches(folded, names, n=limit * 4, cutoff=0.75)
        by_name = dict(table)
        out: list[str] = []
        for name in close:
            region = self.regions[by_name[name]]
            if (
                region.generated
                and region.kind == "city"
                and region.population < SUGGESTED_POPULATION
            ):
                continue  # a reader who misspells a region rarely means a small town
            if region.name not in out:
                out.append(region.name)
            if len(out) >= limit:
                break
        return out

    # --- detection -------------------------------------------------------

    def _scan(self, tokens: Sequence[Token], zone: str) -> list[_Hit]:
        """Longest-first alias matches as (start, end, readings).

        Aliases are keyed by first word, then looked up whole per length
        (longest first): one dict probe per candidate length, however many
        aliases share the first word ("new york", "new london", ...).
        """
        found: list[_Hit] = []
        words = [t[0] for t in tokens]
        i, n = 0, len(words)
        by_first = self._by_first
        previous_end = -1
        tag = zone == "tag"
        lower_first = self._lower_first
        while i < n:
            step = 1
            capital = tag or tokens[i][1]
            # most words are lower case and only curated lower-case aliases
            # (adjectives) can start with one: a small set answers for them
            entry = by_first.get(words[i]) if capital or words[i] in lower_first else None
            if entry is not None:
                for length, table in entry:
                    end = i + length
                    if end > n:
                        continue
                    readings = (
                        table.get(tuple(words[i:end])) if length > 1 else table.get((words[i],))
                    )
                    if readings is None:
                        continue
                    usable = [
                        r
                        for r in readings
                        if (capital or not r.needs_capital)
                        and (not r.qualifier or (previous_end == i and zone != "title"))
                    ]
                    if usable:
                        found.append((i, end, usable))
                        step = length
                        previous_end = end
                        break
            i += step
        return found

    def _context(self, ids: set[str]) -> _Context:
        """Index the article's unambiguous places for :meth:`_score`."""
        context = _Context(ids)
        for other in sorted(ids):
            for ancestor in self.ancestors(other):
                context.inside.setdefault(ancestor, other)
            division = self.division(other)
            if division and division != other:  # the state itself is a container
                context.divisions.setdefault(division, other)
            for country in self.countries(other):
                context.countries.setdefault(country, []).append(other)
                for neighbour in self.regions[country].neighbours:
                    if neighbour in self.regions:
                        context.neighbours.setdefault(neighbour, other)
        return context

    def _score(
        self,
        candidate: str,
        context: _Context,
        near_words: _Surroundings,
        neighbours: Sequence[str],
        listed: Sequence[str] = (),
    ) -> tuple[float, str, bool]:
        """Score one reading: (score, the evidence that counted, locally supported)."""
        region = self.regions[candidate]
        score = region.prior
        evidence: list[str] = []
        supported = False
        before, after = near_words
        sub_national = region.kind in ("region", "city", "district")
        for neighbour in neighbours:
            if neighbour != candidate and (
                self.contains(neighbour, candidate) or self.contains(candidate, neighbour)
            ):
                score += ADJACENT_BONUS
                evidence.append(f"next to {self.regions[neighbour].name}")
                supported = True
                break
        else:
            other = next(
                (
                    n
                    for n in listed
                    if n != candidate
                    and self.regions[n].kind == region.kind
                    and self.regions[n].parents == region.parents
                ),
                None,
            )
            if other is not None:
                # the neighbour's reading is the one taken (or its only one),
                # so a town listed beside it is supported: "Edmonton, north London"
                score += LIST_BONUS
                evidence.append(f"listed with {self.regions[other].name}")
                supported = True
        cue = next((c for c in region.cues if c in before), None)
        if cue is None and region.kind == "region":
            cue = max(before & _DIVISION_BEFORE, key=len, default=None)
        if cue is not None:
            score += CUE_BONUS
            evidence.append(f"after '{' '.join(cue)}'")
            supported = True
        cue_after = min(after & _DIVISION_AFTER, key=len, default=None)
        if region.kind == "region" and cue_after is not None:
            score += CUE_BONUS
            evidence.append(f"before '{' '.join(cue_after)}'")
            supported = True
        if sub_national and not (
            before.isdisjoint(_ORGANISATION_BEFORE) and after.isdisjoint(_ORGANISATION_AFTER)
        ):
            score += ORGANISATION_BONUS
            evidence.append("organisation name")
        countries = self.countries(candidate)
        division = self.division(candidate)
        near: list[str] = []
        # each kind of context counts once, so a long list of places in one
        # country does not outweigh a big city's prior
        inside = context.inside.get(candidate)
        if inside is not None and inside != candidate:
            score += INSIDE_BONUS
            supported = True
            near.append(inside)
        containers = [c for c in self.ancestors(candidate) if c != candidate and c in context.ids]
        if containers:
            score += CONTAINER_BONUS
            supported = supported or any(self.regions[c].kind == "region" for c in containers)
            near.append(containers[0])
        same_division = context.divisions.get(division) if division else None
        if same_division is not None and same_division != candidate:
            score += SAME_DIVISION_BONUS
            supported = True
            near.append(same_division)
        own = self.ancestors(candidate)
        same_country = next(
            (
                member
                for c in countries
                for member in context.countries.get(c, ())
                if member not in own and candidate not in self.ancestors(member)
            ),
            None,
        )
        if same_country is not None and same_division is None:
            # a country's other places say more about a state than about a
            # city: world news names big cities of countries it also names
            score += SAME_COUNTRY_BONUS if region.kind != "city" else SAME_COUNTRY_BONUS / 2
            near.append(same_country)
        elif same_country is None and any(c in context.neighbours for c in countries):
            score += NEIGHBOUR_BONUS
            near.append(next(context.neighbours[c] for c in countries if c in context.neighbours))
        if near:
            names = sorted({self.regions[r].name for r in near})
            evidence.append("with " + ", ".join(names[:3]))
        return score, "; ".join(evidence), supported

    def _not_a_place(
        self, tokens: Sequence[Token], start: int, end: int, zone: str, hit_starts: set[int]
    ) -> str:
        """Why the name here is something else, or ``""``."""
        after = tokens[end][0] if end < len(tokens) else ""
        if after in NOT_PLACE_AFTER:
            return f"'{after}' after it"
        before = tokens[start - 1][0] if start else ""
        if before in PERSON_TITLES:
            return f"'{before}' before it"
        if before in NOT_PLACE_BEFORE:
            return f"'{before}' before it"
        if (
            zone in ("lead", "body")
            and end == start + 1
            and end < len(tokens)
            and tokens[start][0] in _GIVEN_NAMES
            and tokens[end][1]
            and after not in PLACE_FOLLOWERS
            and after not in INSTITUTION_WORDS
            and not any(
                tuple(w for w, _ in tokens[end : end + len(o)]) == o for o in ORGANISATION_AFTER
            )
            and end not in hit_starts
            and tokens[end][0].isalpha()
        ):
            return "a first name before a surname"
        return ""

    def detect(
        self, *, title: str = "", lead: str = "", body: str = "", tags: Sequence[str] = ()
    ) -> RegionAssignment:
        """Apply the region rule to one article (``body`` excludes the lead)."""
        return self.detect_tokens(
            [
                ("title", tokenize_with_case(title)),
                ("lead", tokenize_with_case(lead)),
                ("body", tokenize_with_case(body)),
            ],
            tags,
        )

    def detect_tokens(
        self, zones: Sequence[tuple[str, list[Token]]], tags: Sequence[str] = ()
    ) -> RegionAssignment:
        """:meth:`detect` for text already tokenised (``analyze`` shares its tokens)."""
        zones = [*(("tag", tokenize_with_case(tag)) for tag in tags), *zones]
        raw = [(zone, tokens, self._scan(tokens, zone)) for zone, tokens in zones]
        title_case = {
            zone
            for zone, tokens in zones
            if zone != "tag"
            and len(tokens) > 2
            and sum(1 for t in tokens if t[1]) > TITLE_CASE_SHARE * len(tokens)
        }
        # context: names with one strong reading; the readings ambiguous names
        # took then join it for a second pass ("Atlanta" names the state
        # that a later "Georgia" is in)
        strong = {
            readings[0].region_id
            for _, _, hits in raw
            for _, _, readings in hits
            if len(readings) == 1 and not readings[0].weak and not readings[0].qualifier
        }
        first = self._context(strong)
        taken: dict[tuple[int, int], Mention] = {}
        mentions = self._mentions(raw, lambda _: first, title_case, taken)
        by_text: dict[str, set[str]] = {}
        for mention in mentions:
            if mention.region_id not in strong:
                by_text.setdefault(mention.text, set()).add(mention.region_id)
        # only names with several readings can change their mind, and not
        # those a qualifier or a cue beside them decided (+10 each), nor those
        # the first pass dropped (for reasons that do not depend on context)
        several = {
            " ".join(t[0] for t in tokens[start:end])
            for _, tokens, hits in raw
            for start, end, readings in hits
            if sum(1 for r in readings if not r.qualifier) > 1
        }
        ambiguous = {
            m.text for m in mentions if m.text in several and not m.evidence.startswith(_DECIDED)
        }
        if by_text and ambiguous:
            # a name is never its own context: "Washington" read as the capital
            # must not make the state more likely through the same country.
            # Small towns still need support from the first pass: a reading
            # chosen for another ambiguous name weighs between readings that
            # can stand alone, it does not raise a town from nothing.
            contexts: dict[str, _Context] = {}

            def context_for(text: str) -> _Context:
                if text not in by_text:
                    text = ""  # names that chose nothing new share one context
                found = contexts.get(text)
                if found is None:
                    others = {r for t, ids in by_text.items() if t != text for r in ids}
                    found = first
                    if others:
                        found = self._context(strong | others)
                        found.first = first
                    contexts[text] = found
                return found

            mentions = self._mentions(raw, context_for, title_case, taken, ambiguous)
        return RegionAssignment(self._apply_rule(mentions), mentions)

    def _mentions(
        self,
        raw: Sequence[tuple[str, list[Token], list[_Hit]]],
        context_for: Callable[[str], _Context],
        title_case: set[str],
        taken: dict[tuple[int, int], Mention],
        ambiguous: set[str] | None = None,
    ) -> list[Mention]:
        """Choose a reading for every name found, zone by zone. ``taken`` holds
        the first pass's mentions by (zone, start); the second pass reads them
        and decides again only the ``ambiguous`` names."""
        first_pass = ambiguous is None
        mentions: list[Mention] = []
        for number, (zone, tokens, hits) in enumerate(raw):
            # names a person's surname cannot be: places that stand on their
            # own, and abbreviations read after a place ("Athens, Ga.")
            starts = {
                start
                for start, _, readings in hits
                if any(r.qualifier or not r.weak for r in readings)
            }
            previous: tuple[int, list[str]] = (-1, [])
            for index, (start, end, readings) in enumerate(hits):
                # adjacent: every reading of the names beside it, for
                # containment ("Paris, Texas"); listed: only the readings
                # taken or the only one, so that "London, Paris" do not
                # choose London and Paris, Ontario for each other
                adjacent = list(previous[1]) if _next_to(tokens, previous[0], start) else []
                listed = list(adjacent) if len(adjacent) == 1 else []
                if index + 1 < len(hits) and _next_to(tokens, end, hits[index + 1][0]):
                    following = [r.region_id for r in hits[index + 1][2] if not r.qualifier]
                    adjacent += [r.region_id for r in hits[index + 1][2]]
                    earlier = taken.get((number, hits[index + 1][0]))
                    if len(following) == 1 or earlier is not None:
                        listed += [earlier.region_id] if earlier is not None else following
                text = " ".join(t[0] for t in tokens[start:end])
                if ambiguous is not None and text not in ambiguous:
                    kept = taken.get((number, start))
                    if kept is not None:
                        mentions.append(kept)
                        previous = (end, [kept.region_id])
                    else:
                        previous = (end, [r.region_id for r in readings])
                    continue
                chosen = self._choose(
                    readings,
                    context_for(text),
                    tokens,
                    start,
                    end,
                    adjacent,
                    zone,
                    starts,
                    zone in title_case,
                    listed,
                )
                if chosen is not None:
                    mention = Mention(chosen[0], zone, text, start, chosen[1])
                    mentions.append(mention)
                    if first_pass:
                        taken[(number, start)] = mention
                    previous = (end, [chosen[0]])
                else:
                    previous = (end, [r.region_id for r in readings])
        return mentions

    def _choose(
        self,
        readings: list[_Reading],
        context: _Context,
        tokens: Sequence[Token],
        start: int,
        end: int,
        adjacent: list[str],
        zone: str,
        hit_starts: set[int],
        title_case: bool = False,
        listed: Sequence[str] = (),
    ) -> tuple[str, str] | None:
        """The reading a name takes here and why, or ``None`` when it is no place."""
        if all(r.qualifier for r in readings):
            # "Ga." right after a place: the qualifier itself names the state
            return readings[0].region_id, "abbreviation after a place"
        readings = [r for r in readings if not r.qualifier]
        if zone != "tag":
            why_not = self._not_a_place(tokens, start, end, zone, hit_starts)
            if why_not:
                return None
        if zone != "tag" and end == start + 1:
            readings = [
                r
                for r in readings
                if not self._town_read_as_name(r, tokens, start, hit_starts, title_case)
            ]
            if not readings:
                return None
        if len(readings) == 1 and not readings[0].weak and not adjacent and not title_case:
            return readings[0].region_id, ""
        best: tuple[float, str, str] | None = None
        # the word sequences just before and after the name, as sets of
        # tuples, so each cue is one set probe
        before_words = [t[0] for t in tokens[max(0, start - 3) : start]]
        after_words = [t[0] for t in tokens[end : end + 2]]
        near_words = (
            {tuple(before_words[-k:]) for k in range(1, len(before_words) + 1)},
            {tuple(after_words[:k]) for k in range(1, len(after_words) + 1)},
        )
        for reading in readings:
            weak = reading.weak or (title_case and self._small_town(reading.region_id))
            judged_by = (context.first or context) if weak else context
            if (
                weak
                and not adjacent
                and not self._may_be_supported(reading.region_id, judged_by, near_words)
            ):
                continue  # the common case for a small town: nothing beside it
            score, evidence, supported = self._score(
                reading.region_id, judged_by, near_words, adjacent, listed
            )
            if weak and not supported:
                continue
            if best is None or score > best[0]:
                best = (score, reading.region_id, evidence)
        if best is None:
            return None
        evidence = best[2] or "most likely reading"
        return best[1], evidence if len(readings) > 1 or best[2] else ""

    def _may_be_supported(
        self, candidate: str, context: _Context, near_words: _Surroundings
    ) -> bool:
        """A cheap test that :meth:`_score` could find local support."""
        if candidate in context.inside:
            return True
        division = self.division(candidate)
        if division and division in context.divisions:
            return True
        if any(a in context.ids for a in self.ancestors(candidate) if a != candidate):
            return True
        region = self.regions[candidate]
        return region.kind == "region" and bool(near_words[0] | near_words[1])

    def _small_town(self, region_id: str) -> bool:
        region = self.regions[region_id]
        return (
            region.generated
            and region.kind == "city"
            and region.population < PERSON_CHECK_POPULATION
        )

    def _town_read_as_name(
        self,
        reading: _Reading,
        tokens: Sequence[Token],
        start: int,
        hit_starts: set[int],
        title_case: bool,
    ) -> bool:
        """A smaller town's one-word name beside a capitalised word that is no
        place is part of a person's or a firm's name ("Nigel Lawson", "Queen
        Elizabeth", "Weston Presidio"), and so is a name that is an everyday
        word ("Butterball Turkey", "Turkey Point"); capitals in a headline
        say nothing."""
        if title_case or not (
            self._small_town(reading.region_id) or self.regions[reading.region_id].common_word
        ):
            return False
        end = start + 1
        if (
            end < len(tokens)
            and tokens[end][1]
            and end not in hit_starts
            and tokens[end][0].isalpha()
            and tokens[end][0] not in PLACE_FOLLOWERS
            and tokens[end][0] not in INSTITUTION_WORDS
        ):
            return True
        if start and tokens[start - 1][1] and (start - 1) not in hit_starts:
            before = tokens[start - 1][0]
            return (
                before.isalpha() and before not in _SENTENCE_WORDS and before not in PLACE_FOLLOWERS
            )
        return False

    def _apply_rule(self, mentions: Sequence[Mention]) -> frozenset[str]:
        regions: set[str] = set()
        body_counts: Counter[str] = Counter()
        for mention in mentions:
            ancestors = self.ancestors(mention.region_id)
            if mention.zone in DIRECT_ZONES:
                regions |= ancestors
            else:
                body_counts.update(ancestors)
        regions.update(r for r, count in body_counts.items() if count >= BODY_MENTIONS_REQUIRED)
        return frozenset(regions)


#: Place names that are also common first names: followed by a capitalised
#: word that is no place ("Georgia Stevens", "Jordan Clark"), they are a person.
_GIVEN_NAMES = frozenset(
    fold(name)
    for name in (
        "Georgia",
        "Jordan",
        "Chad",
        "Lori",
        "Victoria",
        "Florence",
        "Austin",
        "Paris",
        "Israel",
        "Kenya",
        "India",
        "Asia",
        "Chelsea",
        "Sydney",
        "Dallas",
        "Houston",
        "Devon",
        "Sierra",
        "Virginia",
        "Carolina",
        "Regina",
        "Madison",
        "Lincoln",
        "Jackson",
        "Hamilton",
        "Eugene",
        "Marion",
        "Troy",
        "Tyler",
        "Orlando",
        "Aurora",
        "Charlotte",
        "Savannah",
        "Brooklyn",
        "Phoenix",
        "Dakota",
        "Montana",
        "Nevada",
        "Alexandria",
        "Vienna",
        "Adelaide",
        "Camden",
        "Chester",
        "Clinton",
        "Douglas",
        "Florida",
        "Kennedy",
        "Lebanon",
        "Logan",
        "Milan",
        "Santiago",
        "Sofia",
        "Valencia",
        "Warren",
        "Wellington",
        "Winston",
        "Sheridan",
        "Gary",
    )
)


#: Capitalised words that start sentences and headlines before a place
#: ("In Hamilton, ..."); they do not make the place part of a name.
_SENTENCE_WORDS = frozenset(
    {
        "in",
        "at",
        "from",
        "to",
        "the",
        "a",
        "an",
        "of",
        "and",
        "but",
        "on",
        "near",
        "for",
        "by",
        "with",
        "outside",
        "inside",
        "into",
        "across",
        "since",
        "while",
        "when",
        "after",
        "before",
        "as",
        "said",
        "says",
        "like",
        "via",
        "between",
        "around",
        "during",
        "over",
        "under",
        "against",
        "than",
        "if",
        "both",
        "only",
        "also",
        "then",
        "there",
        "here",
        "this",
        "that",
        "last",
        "next",
        "rural",
        "greater",
        "central",
        "downtown",
        "metro",
        "northern",
        "southern",
        "eastern",
        "western",
        "im",
        "aus",
        "nach",
        "bei",
        "und",
        "в",
        "из",
        "во",
        "на",
        "и",
    }
)


#: Evidence that decides a reading whatever else the article names.
_DECIDED = ("next to ", "after '", "before '")

#: Words that may stand between two places that qualify each other: a
#: district "in Edmonton, north London", a town "in Kenora, northwestern
#: Ontario". ("of" is not one: "the U.S. of Brazil's cases" is a list.)
COMPASS_WORDS = frozenset(
    {
        "north",
        "south",
        "east",
        "west",
        "northern",
        "southern",
        "eastern",
        "western",
        "northeast",
        "northwest",
        "northeastern",
        "northwestern",
        "southeastern",
        "southwestern",
        "southeast",
        "southwest",
        "central",
    }
)
#: At most this many such words between them ("Edmonton, north-east London").
MAX_COMPASS_WORDS = 2


def _next_to(tokens: Sequence[Token], end: int, start: int) -> bool:
    """The name ending at ``end`` and the one starting at ``start`` stand side
    by side, or with only compass words between them ("Edmonton, north London")."""
    if end < 0 or start < end or start - end > MAX_COMPASS_WORDS:
        return False
    return all(tokens[i][0] in COMPASS_WORDS for i in range(end, start))


def _add_reading(
    aliases: dict[tuple[str, ...], list[_Reading]], words: tuple[str, ...], reading: _Reading
) -> None:
    readings = aliases.setdefault(words, [])
    for index, existing in enumerate(readings):
        if existing.region_id == reading.region_id:
            if existing.qualifier and not reading.qualifier:
                readings[index] = reading  # a full name beats an abbreviation
            return
    readings.append(reading)


def load_gazetteer(path: Path | None = None) -> Gazetteer:
    """Load the gazetteer from its compiled JSON (the default one is cached)."""
    if path is None:
        return default_gazetteer()
    return _load(path)


def _load(path: Path) -> Gazetteer:
    # Loading creates a few hundred thousand objects and no garbage: the cyclic
    # collector, run every few hundred allocations over a growing heap, would
    # take half the load time for nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return Gazetteer.from_json(json.loads(path.read_text(encoding="utf-8")))
    finally:
        if enabled:
            gc.enable()


@lru_cache(maxsize=1)
def default_gazetteer() -> Gazetteer:
    """The process-wide gazetteer: loaded once, shared by every caller (read-only)."""
    gazetteer = _load(GAZETTEER_PATH)
    # The gazetteer is a few hundred thousand long-lived objects that are read,
    # never freed: moved out of the cyclic collector's reach, they no longer make
    # every full collection (and so the slowest articles) pay for walking them.
    gc.freeze()
    return gazetteer
