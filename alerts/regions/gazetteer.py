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
body does so at least twice. Names shared by several regions ("Georgia")
are resolved per article by scoring each reading against the other places
the article names.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from alerts.matching.analysis import Token, tokenize, tokenize_with_case

GAZETTEER_PATH = Path(__file__).parent / "data" / "gazetteer.json"

#: Body mentions needed before an article counts as being in a region.
BODY_MENTIONS_REQUIRED = 2
#: Zones where a single mention is enough.
DIRECT_ZONES = frozenset({"tag", "title", "lead"})

#: Default prior per kind, used to pick a reading when context says nothing.
KIND_PRIOR = {"country": 3.0, "macro": 2.5, "historical": 2.0, "region": 2.0, "city": 1.0}
#: Context weights for ambiguous names (see ``_score``).
INSIDE_BONUS = 3.0  # another named place lies inside this reading
SAME_COUNTRY_BONUS = 2.0  # another named place shares this reading's country
CONTAINER_BONUS = 1.0  # this reading lies inside another named place
ADJACENT_BONUS = 10.0  # "Atlanta, Georgia": the place just before lies inside it
CUE_BONUS = 10.0  # "the U.S. state of Georgia"


class UnknownRegionError(ValueError):
    """A region name or id that the gazetteer does not know."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown region {name!r}")


@dataclass(frozen=True, slots=True)
class Region:
    id: str
    name: str
    kind: str
    parents: tuple[str, ...]
    prior: float
    generated: bool
    cues: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class Mention:
    """One place name found in an article, after disambiguation."""

    region_id: str
    zone: str  # "tag", "title", "lead" or "body"
    text: str  # the folded words that matched
    start: int


@dataclass(frozen=True, slots=True)
class _Reading:
    region_id: str
    needs_capital: bool


@dataclass(slots=True)
class RegionAssignment:
    """The regions an article is in, with the mentions that put it there."""

    regions: frozenset[str]
    mentions: list[Mention] = field(default_factory=list)

    def evidence(self, region_id: str, gazetteer: Gazetteer) -> list[Mention]:
        """Mentions that resolve into ``region_id``'s subtree."""
        return [m for m in self.mentions if region_id in gazetteer.ancestors(m.region_id)]


class Gazetteer:
    """Regions, their aliases and hierarchy; loaded once and shared read-only."""

    def __init__(self, regions: Iterable[Region], aliases: dict[tuple[str, ...], list[_Reading]]):
        self.regions: dict[str, Region] = {r.id: r for r in regions}
        self._aliases = aliases
        self._by_first: dict[str, list[tuple[tuple[str, ...], list[_Reading]]]] = {}
        for words, readings in aliases.items():
            self._by_first.setdefault(words[0], []).append((words, readings))
        for entries in self._by_first.values():
            entries.sort(key=lambda entry: -len(entry[0]))  # longest match first
        self._ancestors: dict[str, frozenset[str]] = {}
        for region_id in self.regions:
            self.ancestors(region_id)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Gazetteer:
        """Build from the compiled JSON layout written by ``alerts.regions.build``."""
        regions: list[Region] = []
        aliases: dict[tuple[str, ...], list[_Reading]] = {}
        for item in data["regions"]:
            prior = float(item.get("prior", KIND_PRIOR.get(item["kind"], 1.0)))
            cues = tuple(tuple(tokenize(cue)) for cue in item.get("cues", []))
            region = Region(item["id"], item["name"], item["kind"], tuple(item["parents"]),
                            prior, bool(item.get("generated")), cues)
            regions.append(region)
            for alias in [*item["aliases"], *item.get("demonyms", [])]:
                words = tuple(tokenize(alias))
                if not words:
                    continue
                readings = aliases.setdefault(words, [])
                if all(r.region_id != region.id for r in readings):
                    readings.append(_Reading(region.id, region.generated))
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
        return frozenset(a for a in self.ancestors(region_id) if self.regions[a].kind == "country")

    # --- lookup ----------------------------------------------------------

    def candidates(self, name: str) -> list[str]:
        """Region ids a name can refer to, most likely first."""
        readings = self._aliases.get(tuple(tokenize(name)), [])
        ranked = sorted(readings, key=lambda r: -self.regions[r.region_id].prior)
        return [r.region_id for r in ranked]

    def resolve(self, name_or_id: str) -> Region:
        """Region for an id (``ge-so``) or a name ("South Ossetia"); ambiguous names
        take their most likely reading. Raises :class:`UnknownRegionError`."""
        key = name_or_id.strip().lower()
        for candidate_id in (key, key.replace(" ", "-")):  # "ge so" is how ge-so tokenises
            if candidate_id in self.regions:
                return self.regions[candidate_id]
        found = self.candidates(name_or_id)
        if not found:
            raise UnknownRegionError(name_or_id)
        return self.regions[found[0]]

    # --- detection -------------------------------------------------------

    def _scan(self, tokens: Sequence[Token], zone: str) -> list[tuple[int, int, list[str]]]:
        """Longest-first alias matches as (start, end, candidate ids)."""
        found: list[tuple[int, int, list[str]]] = []
        i, n = 0, len(tokens)
        while i < n:
            step = 1
            for words, readings in self._by_first.get(tokens[i][0], ()):
                end = i + len(words)
                if end > n or any(tokens[i + k][0] != words[k] for k in range(1, len(words))):
                    continue
                ids = [r.region_id for r in readings
                       if zone == "tag" or not r.needs_capital or tokens[i][1]]
                if ids:
                    found.append((i, end, ids))
                    step = len(words)
                    break
            i += step
        return found

    def _score(self, candidate: str, context: set[str], cue_before: Sequence[str],
               previous: str) -> float:
        region = self.regions[candidate]
        score = region.prior
        countries = self.countries(candidate)
        for other in context:
            if candidate in self.ancestors(other):
                score += INSIDE_BONUS
            elif other in self.ancestors(candidate):
                score += CONTAINER_BONUS
            elif countries & self.countries(other):
                score += SAME_COUNTRY_BONUS
        if previous and candidate in self.ancestors(previous):
            score += ADJACENT_BONUS
        for cue in region.cues:
            if tuple(cue_before[-len(cue):]) == cue:
                score += CUE_BONUS
        return score

    def detect(self, *, title: str = "", lead: str = "", body: str = "",
               tags: Sequence[str] = ()) -> RegionAssignment:
        """Apply the region rule to one article (``body`` excludes the lead)."""
        return self.detect_tokens([
            ("title", tokenize_with_case(title)), ("lead", tokenize_with_case(lead)),
            ("body", tokenize_with_case(body))], tags)

    def detect_tokens(self, zones: Sequence[tuple[str, list[Token]]],
                      tags: Sequence[str] = ()) -> RegionAssignment:
        """:meth:`detect` for text already tokenised (``analyze`` shares its tokens)."""
        zones = [*(("tag", tokenize_with_case(tag)) for tag in tags), *zones]
        raw = [(zone, tokens, self._scan(tokens, zone)) for zone, tokens in zones]
        context = {ids[0] for _, _, hits in raw for _, _, ids in hits if len(ids) == 1}
        mentions: list[Mention] = []
        for zone, tokens, hits in raw:
            previous_end, previous_id = -1, ""
            for start, end, ids in hits:
                chosen = ids[0]
                if len(ids) > 1:
                    adjacent = previous_id if previous_end == start else ""
                    others = context - set(ids)
                    before = [t[0] for t in tokens[max(0, start - 4):start]]
                    chosen = max(ids, key=lambda c: self._score(c, others, before, adjacent))
                text = " ".join(t[0] for t in tokens[start:end])
                mentions.append(Mention(chosen, zone, text, start))
                previous_end, previous_id = end, chosen
        return RegionAssignment(self._apply_rule(mentions), mentions)

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


def load_gazetteer(path: Path | None = None) -> Gazetteer:
    """Load the gazetteer from its compiled JSON (the default one is cached)."""
    if path is None:
        return _default_gazetteer()
    return Gazetteer.from_json(json.loads(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=1)
def _default_gazetteer() -> Gazetteer:
    return Gazetteer.from_json(json.loads(GAZETTEER_PATH.read_text(encoding="utf-8")))
