"""A brute-force evaluator, the oracle of the differential test.

It shares only parsing and text analysis with the index: every interest is
evaluated against every article by scanning the token lists linearly, with no
presearch keys, no posting maps and no sorted vocabulary. If the index's
presearch ever drops a true match, the two disagree.
"""

from __future__ import annotations

from collections.abc import Iterable

from alerts.matching.document import Document
from alerts.matching.index import Interest, PreparedInterest, prepare_interest
from alerts.matching.query import And, FieldValue, Node, Not, Or, Phrase, Prefix, Word
from alerts.regions.gazetteer import Gazetteer
from alerts.text.analysis import stem


def _span(doc: Document, title_only: bool) -> range:
    return range(doc.title_end if title_only else len(doc.surfaces))


def evaluate(node: Node, doc: Document) -> bool:
    """Evaluate a query by scanning the document's tokens.

    Recursive, like the index's ``verify``: safe because every tree comes from
    the parser, which refuses nesting past ``max_depth``.
    """
    if isinstance(node, And):
        return all(evaluate(child, doc) for child in node.children)
    if isinstance(node, Or):
        return any(evaluate(child, doc) for child in node.children)
    if isinstance(node, Not):
        return not evaluate(node.child, doc)
    if isinstance(node, Word):
        target = stem(node.text, doc.language)
        return any(
            doc.stems[i] == target and doc.surfaces[i] != ""
            for i in _span(doc, node.field == "title")
        )
    if isinstance(node, Phrase):
        span = _span(doc, node.field == "title")
        width = len(node.words)
        return any(
            tuple(doc.surfaces[i : i + width]) == node.words for i in range(len(span) - width + 1)
        )
    if isinstance(node, Prefix):
        return any(
            doc.surfaces[i].startswith(node.text) and doc.surfaces[i] != ""
            for i in _span(doc, node.field == "title")
        )
    return _field(node, doc)


def _field(node: FieldValue, doc: Document) -> bool:
    if node.name == "tag":
        return any(tag == node.value for tag in doc.tags)
    if node.name == "source":
        return doc.source == node.value
    if node.name == "lang":
        return doc.language == node.value
    return any(region == node.value for region in doc.region_ids)


def matches(prepared: PreparedInterest, doc: Document) -> bool:
    if prepared.region_ids and not any(r in doc.region_ids for r in prepared.region_ids):
        return False
    return prepared.node is None or evaluate(prepared.node, doc)


def reference_match(
    interests: Iterable[Interest], doc: Document, gazetteer: Gazetteer | None = None
) -> list[str]:
    """Sorted ids of the interests matching ``doc``, evaluated one by one."""
    return sorted(i.id for i in interests if matches(prepare_interest(i, gazetteer), doc))
