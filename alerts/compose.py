"""Turning a matched article into a mail entry: snippet, highlights, "why".

The match explanation says which query terms and region names hit; here they
become character spans in the title and snippet (the templates escape the
text and wrap the spans), and a plain sentence saying why the reader got it.
That sentence and the publication time are in the reader's language (and the
time in their zone), so an entry belongs to one (language, zone) pair.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.i18n import (
    DEFAULT_LANGUAGE,
    DEFAULT_ZONE,
    N_,
    ReaderLocale,
    format_moment,
    translations,
)
from alerts.models import Article, Subscriber
from alerts.regions.gazetteer import Gazetteer
from alerts.text import fold, stem

SNIPPET_CHARS = 280
# Where in an article a term hit, as the "why" line names it.
ZONE_NAMES = {
    "title": N_("title"),
    "lead": N_("first paragraph"),
    "body": N_("text"),
    "tag": N_("tags"),
}
WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
FIELD_PREFIX = re.compile(r"^(title|tag|source|lang|region):")


@dataclass(frozen=True)
class Highlighter:
    """What to mark: word stems, prefixes and exact folded words (region names)."""

    stems: frozenset[str]
    prefixes: tuple[str, ...]
    words: frozenset[str]
    language: str

    def spans(self, text: str) -> list[tuple[int, int]]:
        found = []
        for match in WORD.finditer(text):
            folded = fold(match.group()).replace("’", "'")
            if folded.endswith("'s"):
                folded = folded[:-2]
            if (
                folded in self.words
                or stem(folded, self.language) in self.stems
                or folded.startswith(self.prefixes or ("\0",))
            ):
                found.append((match.start(), match.end()))
        return found


def highlighter(explanations: Iterable[Mapping[str, Any]], language: str) -> Highlighter:
    """Collect the terms of stored match explanations (``{"terms": [...], "regions": [...]}``)."""
    stems: set[str] = set()
    prefixes: list[str] = []
    words: set[str] = set()
    for explanation in explanations:
        for hit in explanation.get("terms", []):
            term = FIELD_PREFIX.sub("", hit["term"]).strip('"')
            if term.endswith("*"):
                prefixes.append(fold(term[:-1]))
                continue
            stems.update(stem(fold(word), language) for word in WORD.findall(term))
        for region in explanation.get("regions", []):
            for name in region.get("names", []):
                words.update(fold(word) for word in WORD.findall(name))
    return Highlighter(frozenset(stems), tuple(prefixes), frozenset(words), language)


def snippet(article: Article, limit: int = SNIPPET_CHARS) -> str:
    """The lead (or the start of the body), cut at a word boundary."""
    text = " ".join((article.lead or article.body or "").split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > 0 else limit].rstrip(",;:") + " …"


def why(
    explanations: Sequence[Mapping[str, Any]],
    gazetteer: Gazetteer,
    language: str = DEFAULT_LANGUAGE,
) -> str:
    """One sentence naming what matched and where, in the reader's language."""
    gettext = translations(language).gettext
    parts: list[str] = []
    for explanation in explanations:
        for hit in explanation.get("terms", []):
            zones = gettext(" and ").join(
                gettext(ZONE_NAMES[zone]) if zone in ZONE_NAMES else zone
                for zone in hit.get("zones", [])
            )
            parts.append(
                gettext("“{term}” in the {zones}").format(term=hit["term"], zones=zones)
                if zones
                else gettext("“{term}”").format(term=hit["term"])
            )
        for region in explanation.get("regions", []):
            name = _region_name(gazetteer, region["region_id"])
            parts.append(gettext("the region {name}").format(name=name))
    unique = list(dict.fromkeys(parts))
    if not unique:
        return gettext("It matched one of your interests.")
    listed = ", ".join(unique[:-1]) + (gettext(" and ") if len(unique) > 1 else "") + unique[-1]
    return gettext("Matched {things}.").format(things=listed)


def _region_name(gazetteer: Gazetteer, region_id: str) -> str:
    try:
        return gazetteer.resolve(region_id).name
    except (KeyError, ValueError):
        return region_id


def entry(
    article: Article,
    explanations: Sequence[Mapping[str, Any]],
    gazetteer: Gazetteer,
    *,
    also_reported_by: Sequence[str] = (),
    language: str = DEFAULT_LANGUAGE,
    timezone: str = DEFAULT_ZONE,
) -> dict[str, Any]:
    """The template context of one article (the ENTRY shape of every mail),
    its time and "why" written for a reader of ``language`` living in ``timezone``."""
    marker = highlighter(explanations, article.language or "en")
    text = snippet(article)
    published: datetime | None = article.published_at or article.ingested_at
    return {
        "title": article.title,
        "url": article.url or "",
        "source": article.source_name or "",
        "published": format_moment(published, language, timezone) if published else "",
        "snippet": text,
        "highlights": marker.spans(text),
        "title_highlights": marker.spans(article.title),
        "also_reported_by": list(also_reported_by),
        "why": why(explanations, gazetteer, language),
    }


class EntryCache:
    """Entries of one batch, built once per distinct (article, why, sources, language, zone).

    Many readers of a batch share a story and the terms that matched it; the
    entry and its ``key`` (which lets the renderer reuse the rendered
    fragment) are computed once for all of them.
    """

    def __init__(self, gazetteer: Gazetteer) -> None:
        self.gazetteer = gazetteer
        self._entries: dict[tuple[Any, ...], dict[str, Any]] = {}

    def get(
        self,
        article: Article,
        explanations: Sequence[Mapping[str, Any]],
        also_reported_by: Sequence[str] = (),
        *,
        language: str = DEFAULT_LANGUAGE,
        timezone: str = DEFAULT_ZONE,
    ) -> dict[str, Any]:
        # Within a batch identical explanations are one object (digest.gather
        # decodes each distinct one once), so ids find the entry cheaply.
        batch_key = (
            article.id,
            tuple(sorted(map(id, explanations))),
            tuple(also_reported_by),
            language,
            timezone,
        )
        cached = self._entries.get(batch_key)
        if cached is None:
            cached = entry(
                article,
                explanations,
                self.gazetteer,
                also_reported_by=also_reported_by,
                language=language,
                timezone=timezone,
            )
            # The process's renderer keeps fragments across batches (and across
            # databases, in tests): the key is all the entry shows, so an article
            # whose title or time changed, or another article under the same id,
            # is rendered anew.
            content = json.dumps(cached, sort_keys=True, default=str)
            cached["key"] = hashlib.sha1(content.encode(), usedforsecurity=False).hexdigest()
            self._entries[batch_key] = cached
        return cached


def reader_locales(
    session: Session, subscriber_ids: Iterable[int | None]
) -> dict[int, ReaderLocale]:
    """Language and zone of each reader of a batch, in one query."""
    ids = {i for i in subscriber_ids if i is not None}
    if not ids:
        return {}
    rows = session.execute(
        select(Subscriber.id, Subscriber.language, Subscriber.timezone).where(
            Subscriber.id.in_(ids)
        )
    )
    return {row.id: ReaderLocale.of(row.language, row.timezone) for row in rows}
