"""The index against the brute-force reference on thousands of random queries.

Both must return exactly the same interests for every fixture article; any
difference means the presearch dropped a match (or verification is wrong).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from alerts.matching import Document, Gazetteer, Interest, InterestIndex, QueryError, tokenize
from alerts.matching.reference import reference_match

QUERY_COUNT = 3000
SEED = 20240331
REGION_CHOICES = [
    "ge",
    "ge-so",
    "ge-ab",
    "south-caucasus",
    "north-caucasus",
    "ru",
    "us-ga",
    "caucasus",
    "az-nk",
    "ua-43",
    "Tskhinvali",
    "Abkhazia",
    "Georgia",
]
TAG_CHOICES = ["politics", "energy", "weather", "politik", "security", "nothing"]
LANG_CHOICES = ["en", "de", "ru", "fr"]


def _vocabulary(raw_articles: list[dict[str, Any]]) -> list[str]:
    words: set[str] = set()
    for raw in raw_articles:
        words.update(tokenize(raw["title"] + " " + raw["body"]))
    return sorted(words)


class QueryGenerator:
    """Random but valid-looking queries over the fixtures' own words."""

    def __init__(self, rng: random.Random, words: list[str]) -> None:
        self.rng = rng
        self.words = words
        self.common = words[:: max(1, len(words) // 40)]

    def word(self) -> str:
        pool = self.common if self.rng.random() < 0.5 else self.words
        return self.rng.choice(pool)

    def leaf(self) -> str:
        roll = self.rng.random()
        if roll < 0.45:
            return self.word()
        if roll < 0.55:
            return f'"{self.word()} {self.word()}"'
        if roll < 0.62:
            w = self.rng.choice([w for w in self.words if len(w) >= 3])
            return w[: self.rng.randint(3, len(w))] + "*"
        if roll < 0.70:
            return f"title:{self.word()}"
        if roll < 0.78:
            return f"tag:{self.rng.choice(TAG_CHOICES)}"
        if roll < 0.84:
            return f"lang:{self.rng.choice(LANG_CHOICES)}"
        if roll < 0.92:
            return f'region:"{self.rng.choice(REGION_CHOICES)}"'
        return f'source:"{self.rng.choice(["Caucasus Watch", "Wire", "Regional Review"])}"'

    def expr(self, depth: int = 0) -> str:
        roll = self.rng.random()
        if depth > 2 or roll < 0.35:
            return self.leaf()
        if roll < 0.6:
            return f"{self.expr(depth + 1)} {self.expr(depth + 1)}"
        if roll < 0.8:
            return f"({self.expr(depth + 1)} OR {self.expr(depth + 1)})"
        return f"{self.expr(depth + 1)} -{self.leaf()}"

    def interest(self, number: int) -> Interest:
        regions: tuple[str, ...] = ()
        if self.rng.random() < 0.25:
            regions = tuple(self.rng.sample(REGION_CHOICES, self.rng.randint(1, 2)))
        query = self.expr() if not regions or self.rng.random() < 0.6 else None
        return Interest(id=f"q{number}", query=query, regions=regions)


@pytest.fixture(scope="module")
def random_interests(raw_articles: list[dict[str, Any]], gz: Gazetteer) -> list[Interest]:
    generator = QueryGenerator(random.Random(SEED), _vocabulary(raw_articles))
    interests: list[Interest] = []
    number = 0
    while len(interests) < QUERY_COUNT:
        interest = generator.interest(number)
        number += 1
        try:
            InterestIndex(gazetteer=gz).add(interest)
        except QueryError:
            continue
        interests.append(interest)
    return interests


def test_index_agrees_with_reference_on_every_article(
    random_interests: list[Interest], docs: dict[str, Document], gz: Gazetteer
) -> None:
    index = InterestIndex(gazetteer=gz)
    index.add_all(random_interests)
    total = 0
    for doc in docs.values():
        expected = reference_match(random_interests, doc, gz)
        assert index.match_ids(doc) == expected, doc.id
        assert [m.interest_id for m in index.match(doc)] == expected
        total += len(expected)
    # the generator must produce a useful mix, neither nothing nor everything
    assert 0.01 * QUERY_COUNT * len(docs) < total < 0.6 * QUERY_COUNT * len(docs)


def test_agreement_survives_removals(
    random_interests: list[Interest], docs: dict[str, Document], gz: Gazetteer
) -> None:
    index = InterestIndex(gazetteer=gz)
    index.add_all(random_interests)
    kept = random_interests[::2]
    for interest in random_interests[1::2]:
        index.remove(interest.id)
    assert len(index) == len(kept)
    for doc in docs.values():
        assert index.match_ids(doc) == reference_match(kept, doc, gz)


def test_agreement_with_learned_term_frequencies(
    random_interests: list[Interest], docs: dict[str, Document], gz: Gazetteer
) -> None:
    # statistics only change which key an interest is filed under, never results
    frequencies: dict[str, float] = {}
    for doc in docs.values():
        for key in doc.keys:
            frequencies[key] = frequencies.get(key, 0.0) + 1 / len(docs)
    index = InterestIndex(gazetteer=gz, term_frequencies=frequencies)
    index.add_all(random_interests)
    for doc in docs.values():
        assert index.match_ids(doc) == reference_match(random_interests, doc, gz)
