"""The compiled interest index: presearch, exact verification and explanations.

Matching one article against a million interests cannot afford to evaluate
each query, so the index follows Lucene Monitor's presearcher and the
k-index of "Indexing Boolean Expressions" (Whang et al., VLDB 2009):

* every query is reduced to *required clauses*: sets of keys of which at
  least one must occur in any matching article (a word's stems in every
  stemmed language, a tag, a language, a region id, a 3-5 letter prefix);
* the interest is filed under the keys of its cheapest (rarest) clause and
  remembers the keys of its second cheapest clause;
* for an article, only entries filed under one of its keys *and* whose
  second clause it also satisfies are candidates; candidates are then
  verified exactly against the analysed article.

Filing turns a million interests into the few filed under words the article
contains; the second clause (one C-level set test) drops most of the long
tail, "common word AND rare word", before a candidate is evaluated.

Interests with the same normalised query and regions share one entry.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alerts.matching.document import (
    LANG_KEY,
    PREFIX_KEY,
    PREFIX_KEY_LENGTHS,
    REGION_KEY,
    SOURCE_KEY,
    TAG_KEY,
    Document,
)
from alerts.matching.query import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_LENGTH,
    DEFAULT_MAX_TERMS,
    And,
    FieldValue,
    Leaf,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    QueryError,
    Word,
    leaves,
    map_field_values,
    parse_query,
    to_text,
)
from alerts.regions.gazetteer import Gazetteer, UnknownRegionError
from alerts.text.analysis import stem, stem_variants

#: Estimated share of articles containing a key, used when no statistics are
#: given. Words are guessed from their length (long words are rarer).
WORD_FREQUENCY_SCALE = 0.5
MIN_ESTIMATED_FREQUENCY = 0.0005
FIELD_FREQUENCY = {TAG_KEY: 0.05, SOURCE_KEY: 0.2, LANG_KEY: 0.5, REGION_KEY: 0.1, PREFIX_KEY: 0.05}
#: Share given to a word missing from supplied statistics (never seen = rare).
UNSEEN_FREQUENCY = 0.0005
#: A second-level clause with more keys than this is not worth filing under.
MAX_SECONDARY_KEYS = 4

#: Keys of which at least one must occur; a sorted tuple (a frozenset per
#: interest would triple the memory of the postings).
Clause = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Interest:
    """A keyword query and/or regions (names or ids); at least one is given."""

    id: str
    query: str | None = None
    regions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PreparedInterest:
    """An interest parsed, with region names resolved to gazetteer ids."""

    node: Node | None
    region_ids: frozenset[str]

    def canonical(self) -> tuple[str, tuple[str, ...]]:
        """Key under which identical interests share one index entry."""
        return (to_text(self.node) if self.node else "", tuple(sorted(self.region_ids)))


def prepare_interest(
    interest: Interest,
    gazetteer: Gazetteer | None,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    max_terms: int = DEFAULT_MAX_TERMS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> PreparedInterest:
    """Parse and resolve an interest; raises :class:`QueryError` or
    :class:`UnknownRegionError` naming what is wrong.

    The parser bounds the tree's depth (``max_depth``, at most
    ``MAX_DEPTH_CEILING``), which is what keeps the recursive walks below
    (verification, clauses, canonical text) short: every tree reaching them
    comes through here.
    """
    query = (interest.query or "").strip()
    if not query and not interest.regions:
        raise QueryError("an interest needs a query or at least one region", 0, "")
    node = (
        parse_query(query, max_length=max_length, max_terms=max_terms, max_depth=max_depth)
        if query
        else None
    )
    if node is not None and "region" in query.lower():  # cheap guard: most queries have none

        def resolve_leaf(leaf: FieldValue) -> str:
            try:
                return _resolve(gazetteer, leaf.value)
            except UnknownRegionError as exc:
                raise QueryError(str(exc), leaf.pos, query) from exc

        node = map_field_values(node, "region", resolve_leaf)
    region_ids: set[str] = set()
    for name in interest.regions:
        try:
            region_ids.add(_resolve(gazetteer, name))
        except UnknownRegionError as exc:
            raise UnknownRegionError(name, exc.suggestions, interest_id=interest.id) from exc
    return PreparedInterest(node, frozenset(region_ids))


def _resolve(gazetteer: Gazetteer | None, name: str) -> str:
    if gazetteer is None:
        raise UnknownRegionError(name)
    return gazetteer.resolve(name).id


# --- explanations ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TermHit:
    """A positive query term found in the article, and in which zones."""

    term: str
    zones: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RegionHit:
    """A region of the interest the article is in, with the names that count."""

    region_id: str
    zones: tuple[str, ...]
    names: tuple[str, ...]
    #: why an ambiguous name took this reading ("paris: next to Texas")
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Explanation:
    terms: tuple[TermHit, ...] = ()
    regions: tuple[RegionHit, ...] = ()


@dataclass(frozen=True, slots=True)
class Match:
    interest_id: str
    explanation: Explanation


@dataclass(frozen=True, slots=True)
class EntryMatch:
    """One distinct interest that matched, with the ids of every interest sharing it."""

    match_key: str
    explanation: Explanation
    interest_ids: tuple[str, ...]


# --- evaluation -----------------------------------------------------------


def _phrase_at(doc: Document, words: tuple[str, ...], start: int, title_only: bool) -> bool:
    end = start + len(words)
    if end > len(doc.surfaces) or (title_only and end > doc.title_end):
        return False
    surfaces = doc.surfaces
    return all(surfaces[start + k] == words[k] for k in range(1, len(words)))


def _phrase_positions(doc: Document, node: Phrase) -> list[int]:
    title_only = node.field == "title"
    return [
        p
        for p in doc.surface_positions.get(node.words[0], ())
        if _phrase_at(doc, node.words, p, title_only)
    ]


def verify(node: Node, doc: Document) -> bool:
    """Evaluate ``node`` exactly against the analysed document."""
    if isinstance(node, Word):
        stemmed = stem(node.text, doc.language)
        if node.field:
            return stemmed in doc.title_stems
        return stemmed in doc.stem_positions
    if isinstance(node, And):
        return all(verify(child, doc) for child in node.children)
    if isinstance(node, Or):
        return any(verify(child, doc) for child in node.children)
    if isinstance(node, Not):
        return not verify(node.child, doc)
    if isinstance(node, Phrase):
        title_only = node.field == "title"
        return any(
            _phrase_at(doc, node.words, p, title_only)
            for p in doc.surface_positions.get(node.words[0], ())
        )
    if isinstance(node, Prefix):
        return doc.has_prefix(node.text, title_only=node.field == "title")
    return _field_matches(node, doc)


def _field_matches(node: FieldValue, doc: Document) -> bool:
    if node.name == "tag":
        return node.value in doc.tags
    if node.name == "source":
        return node.value == doc.source
    if node.name == "lang":
        return node.value == doc.language
    return node.value in doc.region_ids


def _leaf_zones(leaf: Leaf, doc: Document, gazetteer: Gazetteer | None) -> tuple[str, ...]:
    if isinstance(leaf, FieldValue):
        if not _field_matches(leaf, doc):
            return ()
        if leaf.name == "region" and doc.region_assignment and gazetteer:
            zones = {m.zone for m in doc.region_assignment.evidence(leaf.value, gazetteer)}
            return tuple(sorted(zones))
        return (leaf.name,)
    if isinstance(leaf, Word):
        positions = doc.stem_positions.get(stem(leaf.text, doc.language), [])
    elif isinstance(leaf, Phrase):
        positions = _phrase_positions(doc, leaf)
    else:
        positions = doc.prefix_positions(leaf.text)
    zones = {doc.zone(p) for p in positions}
    if leaf.field == "title":
        zones &= {"title"}
    return tuple(z for z in ("title", "lead", "body") if z in zones)


def explain(prepared: PreparedInterest, doc: Document, gazetteer: Gazetteer | None) -> Explanation:
    """Which positive terms and which regions of a matching interest hit, and where."""
    terms: list[TermHit] = []
    if prepared.node is not None:
        seen: set[str] = set()
        for leaf, negated in leaves(prepared.node):
            text = to_text(leaf)
            if negated or text in seen:
                continue
            seen.add(text)
            zones = _leaf_zones(leaf, doc, gazetteer)
            if zones:
                terms.append(TermHit(text, zones))
    regions: list[RegionHit] = []
    for region_id in sorted(prepared.region_ids & doc.region_ids):
        mentions = (
            doc.region_assignment.evidence(region_id, gazetteer)
            if doc.region_assignment and gazetteer
            else []
        )
        regions.append(
            RegionHit(
                region_id,
                tuple(sorted({m.zone for m in mentions})),
                tuple(sorted({m.text for m in mentions})),
                tuple(sorted({f"{m.text}: {m.evidence}" for m in mentions if m.evidence})),
            )
        )
    return Explanation(tuple(terms), tuple(regions))


# --- presearch keys -------------------------------------------------------


def _leaf_clauses(leaf: Leaf) -> list[Clause]:
    if isinstance(leaf, Word):
        return [stem_variants(leaf.text)]
    if isinstance(leaf, Phrase):
        return [stem_variants(word) for word in leaf.words]
    if isinstance(leaf, Prefix):
        return [(PREFIX_KEY + leaf.text[: PREFIX_KEY_LENGTHS[-1]],)]
    prefix = {"tag": TAG_KEY, "source": SOURCE_KEY, "lang": LANG_KEY, "region": REGION_KEY}
    return [(prefix[leaf.name] + leaf.value,)]


class _Costs:
    """Estimated share of articles holding a key; lower is better to file under."""

    def __init__(self, frequencies: Mapping[str, float] | None) -> None:
        self.frequencies = frequencies

    def key(self, key: str) -> float:
        if self.frequencies is not None and key in self.frequencies:
            return self.frequencies[key]
        head = key[:2]
        if head in FIELD_FREQUENCY:
            return FIELD_FREQUENCY[head]
        if self.frequencies is not None:
            return UNSEEN_FREQUENCY
        return max(MIN_ESTIMATED_FREQUENCY, WORD_FREQUENCY_SCALE / (len(key) ** 2 or 1))

    def clause(self, clause: Clause) -> float:
        if len(clause) == 1:
            return self.key(clause[0])
        return sum(self.key(k) for k in clause)


def required_clauses(node: Node, costs: _Costs) -> list[Clause]:
    """Clauses that every matching article satisfies (one key of each occurs)."""
    if isinstance(node, Not):
        return []
    if isinstance(node, And):
        return [c for child in node.children for c in required_clauses(child, costs)]
    if isinstance(node, Or):
        merged: set[str] = set()
        for child in node.children:
            options = required_clauses(child, costs)
            if not options:
                return []
            best: Clause = min(options, key=costs.clause)
            merged.update(best)
        return [tuple(sorted(merged))]
    return _leaf_clauses(node)


# --- the index ------------------------------------------------------------

#: A query stored compactly: a tuple of plain words means "all of these" (the
#: commonest shape by far); anything else keeps its AST. At a million
#: interests the AST nodes would cost more memory than everything else.
Compiled = Node | tuple[str, ...]


def _compile(node: Node | None) -> Compiled | None:
    if isinstance(node, Word) and not node.field:
        return (node.text,)
    if isinstance(node, And) and all(isinstance(c, Word) and not c.field for c in node.children):
        return tuple(sorted(c.text for c in node.children if isinstance(c, Word)))
    return node


def _expand(compiled: Compiled) -> Node:
    if not isinstance(compiled, tuple):
        return compiled
    words = tuple(Word(w) for w in compiled)
    return words[0] if len(words) == 1 else And(words)


def _key_text(query: Compiled | None, region_ids: frozenset[str]) -> str:
    """The normalised meaning of an interest as one string: canonical query, regions."""
    text = "" if query is None else to_text(_expand(query))
    return text + "\x1f" + ",".join(sorted(region_ids))


def match_key(prepared: PreparedInterest) -> str:
    """A stable name of what the index shares as one entry (SHA-256 of its meaning).

    Stored matches are filed under it (``distinct_interests.match_key``), so it
    must not change between releases for interests that mean the same.
    """
    return _entry_key(_compile(prepared.node), prepared.region_ids)


def _entry_key(query: Compiled | None, region_ids: frozenset[str]) -> str:
    return hashlib.sha256(_key_text(query, region_ids).encode()).hexdigest()


def _dedup_key(query: Compiled | None, region_ids: frozenset[str]) -> object:
    """Equal for interests that mean the same. A plain-word query without
    regions is its own key (the words tuple is shared with the entry, so the
    commonest interests cost no extra key string)."""
    if isinstance(query, tuple) and not region_ids:
        return query
    text = "" if query is None else to_text(_expand(query))
    return (text, tuple(sorted(region_ids)))


class _Entry:
    """One distinct interest (query + regions) and the ids that share it."""

    __slots__ = ("ids", "primary", "query", "region_ids", "secondary")

    def __init__(
        self,
        query: Compiled | None,
        region_ids: frozenset[str],
        primary: Clause,
        secondary: Clause | None,
    ) -> None:
        self.query = query
        self.region_ids = region_ids
        # a lone id is stored as itself: a list per entry would cost 72 bytes
        self.ids: str | list[str] = []
        self.primary = primary
        self.secondary = secondary

    def id_list(self) -> list[str]:
        return [self.ids] if isinstance(self.ids, str) else list(self.ids)

    def match_key(self) -> str:
        return _entry_key(self.query, self.region_ids)

    def prepared(self) -> PreparedInterest:
        return PreparedInterest(
            None if self.query is None else _expand(self.query), self.region_ids
        )

    def matches(self, doc: Document) -> bool:
        if self.region_ids and self.region_ids.isdisjoint(doc.region_ids):
            return False
        query = self.query
        if query is None:
            return True
        if isinstance(query, tuple):
            language, stems = doc.language, doc.stem_positions
            return all(stem(word, language) in stems for word in query)
        return verify(query, doc)


_NO_REGIONS: frozenset[str] = frozenset()


class InterestIndex:
    """Interests compiled for fast matching; supports incremental add/remove."""

    def __init__(
        self,
        gazetteer: Gazetteer | None = None,
        *,
        term_frequencies: Mapping[str, float] | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_terms: int = DEFAULT_MAX_TERMS,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        """``term_frequencies`` maps keys (stems, ``t:tag``, ``r:region`` ...) to the
        share of recent articles holding them; without it rarity is guessed."""
        self.gazetteer = gazetteer
        self.max_length = max_length
        self.max_terms = max_terms
        self.max_depth = max_depth
        self._costs = _Costs(term_frequencies)
        # presearch key -> entries filed under it (their cheapest clause)
        self._postings: dict[str, list[_Entry]] = {}
        self._entries: dict[object, _Entry] = {}
        self._by_id: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, interest_id: object) -> bool:
        return interest_id in self._by_id

    @property
    def entry_count(self) -> int:
        """Distinct compiled entries (identical interests share one)."""
        return len(self._entries)

    def add(self, interest: Interest) -> None:
        """Compile and file ``interest``, replacing any interest with the same id."""
        prepared = prepare_interest(
            interest,
            self.gazetteer,
            max_length=self.max_length,
            max_terms=self.max_terms,
            max_depth=self.max_depth,
        )
        self.add_prepared(interest.id, prepared)

    def add_all(self, interests: Iterable[Interest], *, freeze: bool = True) -> None:
        """Add many interests, pausing the cyclic garbage collector meanwhile.

        A bulk load allocates millions of long-lived, acyclic objects; repeated
        full collections over them would cost a third of the load time. With
        ``freeze`` the loaded objects are then moved out of the collector's
        reach (``gc.freeze``), so a later full collection does not stall
        matching for a second at a million interests. Objects are still freed
        by reference counting when interests are removed.
        """
        was_enabled = gc.isenabled()
        gc.disable()
        # Many subscribers type the very same query: each text is parsed once
        # and later copies join its entry. Keyed by the caller's own query
        # string, so the map costs one slot per distinct text while loading.
        by_text: dict[str, _Entry] = {}
        try:
            for interest in interests:
                text = interest.query
                if text is None or interest.regions or interest.id in self._by_id:
                    self.add(interest)
                    continue
                entry = by_text.get(text)
                if entry is not None and entry.ids:
                    self._attach(interest.id, entry)
                else:
                    self.add(interest)
                    by_text[text] = self._by_id[interest.id]
        finally:
            if was_enabled:
                if freeze:
                    gc.freeze()
                gc.enable()

    def add_prepared(self, interest_id: str, prepared: PreparedInterest) -> None:
        """File an already prepared interest (lets callers validate in bulk first)."""
        if interest_id in self._by_id:
            self.remove(interest_id)
        query = _compile(prepared.node)
        key = _dedup_key(query, prepared.region_ids)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._new_entry(prepared, query)
            self._entries[key] = entry
            for key in entry.primary:
                self._postings.setdefault(key, []).append(entry)
        self._attach(interest_id, entry)

    def _attach(self, interest_id: str, entry: _Entry) -> None:
        if isinstance(entry.ids, str):
            entry.ids = [entry.ids, interest_id]
        elif entry.ids:
            entry.ids.append(interest_id)
        else:
            entry.ids = interest_id
        self._by_id[interest_id] = entry

    def remove(self, interest_id: str) -> None:
        """Forget an interest; raises ``KeyError`` if it is unknown."""
        entry = self._by_id.pop(interest_id)
        if isinstance(entry.ids, list) and len(entry.ids) > 1:
            entry.ids.remove(interest_id)
            if len(entry.ids) == 1:
                entry.ids = entry.ids[0]
            return
        entry.ids = []  # dead: a bulk load holding on to it must not reuse it
        del self._entries[_dedup_key(entry.query, entry.region_ids)]
        for key in entry.primary:
            bucket = self._postings[key]
            bucket.remove(entry)
            if not bucket:
                del self._postings[key]

    def _new_entry(self, prepared: PreparedInterest, query: Compiled | None) -> _Entry:
        clauses: list[Clause] = []
        if isinstance(query, tuple):
            clauses = [stem_variants(word) for word in query]
        elif prepared.node is not None:
            clauses = required_clauses(prepared.node, self._costs)
        if prepared.region_ids:
            clauses.append(tuple(sorted(REGION_KEY + r for r in prepared.region_ids)))
        if not clauses:
            raise QueryError("the query has no term that can be searched for", 0, "")
        cost = self._costs.clause
        primary = min(clauses, key=cost)
        secondary = None
        others = [c for c in clauses if c != primary]
        if others:
            runner_up = min(others, key=cost)
            if len(runner_up) <= MAX_SECONDARY_KEYS:
                secondary = runner_up
        return _Entry(query, prepared.region_ids or _NO_REGIONS, primary, secondary)

    def candidates(self, doc: Document) -> list[_Entry]:
        """Entries whose presearch keys the document holds (a superset of matches).

        An entry is a candidate when the document has a key of its cheapest
        clause and, if it has one, a key of its second cheapest clause.
        """
        keys = doc.keys
        found: dict[int, _Entry] = {}
        postings = self._postings
        for key in keys:
            bucket = postings.get(key)
            if bucket is None:
                continue
            for entry in bucket:
                second = entry.secondary
                if second is None or not keys.isdisjoint(second):
                    found[id(entry)] = entry
        return list(found.values())

    def match_ids(self, doc: Document) -> list[str]:
        """Ids of matching interests, sorted; no explanations (the fast path)."""
        out: list[str] = []
        for entry in self.candidates(doc):
            if entry.matches(doc):
                ids = entry.ids
                if isinstance(ids, str):
                    out.append(ids)
                else:
                    out.extend(ids)
        out.sort()
        return out

    def key_of(self, interest_id: str) -> str:
        """The match key of the entry ``interest_id`` is filed under."""
        return self._by_id[interest_id].match_key()

    def match_entries(self, doc: Document) -> list[EntryMatch]:
        """Matching distinct interests, each explained once, sorted by key."""
        out = [
            EntryMatch(
                entry.match_key(),
                explain(entry.prepared(), doc, self.gazetteer),
                tuple(entry.id_list()),
            )
            for entry in self.candidates(doc)
            if entry.matches(doc)
        ]
        out.sort(key=lambda m: m.match_key)
        return out

    def match(self, doc: Document) -> list[Match]:
        """Matching interests, sorted by id, each with its explanation."""
        out: list[Match] = []
        for entry in self.candidates(doc):
            if entry.matches(doc):
                explanation = explain(entry.prepared(), doc, self.gazetteer)
                out.extend(Match(interest_id, explanation) for interest_id in entry.id_list())
        out.sort(key=lambda m: m.interest_id)
        return out
