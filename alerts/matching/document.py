"""An article analysed once for matching against every interest.

Token positions run over title, lead and body in that order, with one empty
slot between zones so that a phrase never spans the title and the lead.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

from alerts.regions.gazetteer import Gazetteer, RegionAssignment
from alerts.text.analysis import (
    normalise_language,
    repair,
    stem_all,
    tokenize,
    tokenize_with_case,
)

#: Prefix presearch keys are cut at these lengths; a ``foo*`` query is keyed
#: on its first ``min(len, max)`` characters (queries need >= the smallest).
PREFIX_KEY_LENGTHS = (3, 4, 5)
GAP = ""  # placeholder token between zones; no query word is empty
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
#: Line endings that close a sentence (a lead never stops mid-sentence).
_LEAD_MAX_LINES = 8  # a lead found by sentence end spans at most this many lines
_SENTENCE_ENDS = (".", "!", "?", ":", '"', "\u201d", "\u00bb", ")")

TAG_KEY, SOURCE_KEY, LANG_KEY, REGION_KEY, PREFIX_KEY = "t:", "s:", "l:", "r:", "p:"


def split_lead(body: str) -> tuple[str, str]:
    """First paragraph and the rest.

    Paragraphs end at a blank line, or at a line break followed by an indent
    (wire copy: hard-wrapped lines, paragraphs indented). A body without
    either splits at the first line that ends a sentence, so one paragraph
    per line keeps its first line as the lead while hard-wrapped text does not
    get half a sentence as its lead.
    """
    text = body.strip()
    parts = _PARAGRAPH_BREAK.split(text, maxsplit=1)
    if len(parts) == 2:
        return parts[0], parts[1]
    lines = text.split("\n")
    for index, line in enumerate(lines[: min(len(lines) - 1, _LEAD_MAX_LINES)]):
        if lines[index + 1][:1] in (" ", "\t") or line.rstrip().endswith(_SENTENCE_ENDS):
            return "\n".join(lines[: index + 1]), "\n".join(lines[index + 1 :])
    lead, _, rest = text.partition("\n")  # no sentence in sight: a list, a line per item
    return lead, rest


def fold_field_value(value: str) -> str:
    """How tags and sources are compared: folded words joined by single spaces."""
    return " ".join(tokenize(value))


@dataclass(slots=True)
class Document:
    """The analysed form of one article; built by :func:`analyze`."""

    id: str
    language: str
    surfaces: list[str]
    stems: list[str]
    title_end: int
    lead_end: int
    tags: frozenset[str]
    source: str
    region_assignment: RegionAssignment | None
    region_ids: frozenset[str]
    stem_positions: dict[str, list[int]] = field(default_factory=dict)
    surface_positions: dict[str, list[int]] = field(default_factory=dict)
    title_stems: frozenset[str] = frozenset()
    sorted_surfaces: list[str] = field(default_factory=list)
    sorted_title_surfaces: list[str] = field(default_factory=list)
    keys: frozenset[str] = frozenset()

    def zone(self, position: int) -> str:
        """``title``, ``lead`` or ``body`` for a token position."""
        if position < self.title_end:
            return "title"
        return "lead" if position < self.lead_end else "body"

    def has_prefix(self, prefix: str, title_only: bool = False) -> bool:
        words = self.sorted_title_surfaces if title_only else self.sorted_surfaces
        i = bisect_left(words, prefix)
        return i < len(words) and words[i].startswith(prefix)

    def prefix_positions(self, prefix: str) -> list[int]:
        """Positions of tokens starting with ``prefix`` (for explanations only)."""
        words = self.sorted_surfaces
        out: list[int] = []
        i = bisect_left(words, prefix)
        while i < len(words) and words[i].startswith(prefix):
            out.extend(self.surface_positions[words[i]])
            i += 1
        return out


def analyze(
    article_id: str,
    *,
    title: str = "",
    body: str = "",
    lead: str | None = None,
    tags: Sequence[str] = (),
    source: str = "",
    language: str | None = "",
    gazetteer: Gazetteer | None = None,
) -> Document:
    """Analyse an article. ``lead`` defaults to the first paragraph of ``body``;
    without a ``gazetteer`` the document is in no region."""
    title, body = repair(title), repair(body)
    if lead is None:
        lead, body = split_lead(body)
    else:
        lead = repair(lead)
    lang = normalise_language(language) or ""
    zones = [
        ("title", tokenize_with_case(title)),
        ("lead", tokenize_with_case(lead)),
        ("body", tokenize_with_case(body)),
    ]
    title_tokens = [token[0] for token in zones[0][1]]
    surfaces = [*title_tokens, GAP, *(t[0] for t in zones[1][1]), GAP, *(t[0] for t in zones[2][1])]
    title_end = len(title_tokens)
    lead_end = title_end + 1 + len(zones[1][1])
    surface_positions: dict[str, list[int]] = {}
    for position, surface in enumerate(surfaces):
        surface_positions.setdefault(surface, []).append(position)
    del surface_positions[GAP]
    # each distinct word is stemmed once; stems are grouped from the surfaces
    stem_of = dict(zip(surface_positions, stem_all(list(surface_positions), lang), strict=True))
    stem_of[GAP] = GAP
    stems = [stem_of[surface] for surface in surfaces]
    stem_positions: dict[str, list[int]] = {}
    for surface, positions in surface_positions.items():
        stem_positions.setdefault(stem_of[surface], []).extend(positions)
    for positions in stem_positions.values():
        positions.sort()
    folded_tags = frozenset(filter(None, (fold_field_value(tag) for tag in tags)))
    folded_source = fold_field_value(source)
    assignment = gazetteer.detect_tokens(zones, tags) if gazetteer else None
    region_ids = assignment.regions if assignment else frozenset()
    keys: set[str] = set(stem_positions)
    for surface in surface_positions:
        for length in PREFIX_KEY_LENGTHS:
            if len(surface) >= length:
                keys.add(PREFIX_KEY + surface[:length])
    keys.update(TAG_KEY + tag for tag in folded_tags)
    keys.update(REGION_KEY + region for region in region_ids)
    keys.add(SOURCE_KEY + folded_source)
    keys.add(LANG_KEY + lang)
    return Document(
        id=article_id,
        language=lang,
        surfaces=surfaces,
        stems=stems,
        title_end=title_end,
        lead_end=lead_end,
        tags=folded_tags,
        source=folded_source,
        region_assignment=assignment,
        region_ids=region_ids,
        stem_positions=stem_positions,
        surface_positions=surface_positions,
        title_stems=frozenset(stems[:title_end]),
        sorted_surfaces=sorted(surface_positions),
        sorted_title_surfaces=sorted(set(title_tokens)),
        keys=frozenset(keys),
    )
