"""Interest matching: query language, article analysis and the interest index.

Typical use::

    gz = load_gazetteer()
    idx = InterestIndex(gazetteer=gz)
    idx.add(Interest(id="i1", query="referendum", regions=("south ossetia",)))
    doc = analyze("a1", title=..., body=..., language="en", gazetteer=gz)
    for match in idx.match(doc):
        print(match.interest_id, match.explanation)
"""

from alerts.matching.document import Document, analyze
from alerts.matching.index import (
    Explanation,
    Interest,
    InterestIndex,
    Match,
    PreparedInterest,
    RegionHit,
    TermHit,
    UnknownRegionError,
    prepare_interest,
)
from alerts.matching.query import Node, QueryError, parse_query, to_text
from alerts.regions.gazetteer import Gazetteer, load_gazetteer
from alerts.text.analysis import fold, stem, tokenize

__all__ = [
    "Document",
    "Explanation",
    "Gazetteer",
    "Interest",
    "InterestIndex",
    "Match",
    "Node",
    "PreparedInterest",
    "QueryError",
    "RegionHit",
    "TermHit",
    "UnknownRegionError",
    "analyze",
    "fold",
    "load_gazetteer",
    "parse_query",
    "prepare_interest",
    "stem",
    "to_text",
    "tokenize",
]
