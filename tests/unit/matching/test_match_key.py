"""Match keys: the name stored matches are filed under (``distinct_interests``).

Interests that mean the same share a key and so share stored rows; the keys of
known interests are pinned, because a key that changes between releases moves
every interest to a new distinct interest, which reaches only matches found
from then on (an upgrade that changes them must re-key ``distinct_interests``).
"""

from __future__ import annotations

import pytest

from alerts.matching import Document, Gazetteer, Interest, InterestIndex, prepare_interest
from alerts.matching.index import match_key


def key(query: str | None, gz: Gazetteer, *regions: str) -> str:
    return match_key(prepare_interest(Interest("any", query, regions), gz))


# Keys as 0009 stored them: changing one needs a migration that re-keys.
PINNED = [
    ("flood", (), "8509e392757ff507468d91d7530eeab3a71ff866baa08c3b007ada350d51ae5c"),
    ("referendum", ("ge-so",), "8606f54d5b39c2457f94a829ddb0b2e88c0def9c546dad5cf90d2793ee264980"),
    (None, ("ge-so",), "fd48460b1233bc09a0a70aa1979e2a9bd780b4667587ad5791450711f69cf923"),
    ('"de facto" leader', (), "9c6ffb8b9786b2b5ee9658948b0c69d480bce95fc79988816c2f389dfb22796e"),
]


@pytest.mark.parametrize(("query", "regions", "expected"), PINNED)
def test_keys_of_known_interests_do_not_change(
    query: str | None, regions: tuple[str, ...], expected: str, gz: Gazetteer
) -> None:
    assert key(query, gz, *regions) == expected


def test_interests_that_mean_the_same_share_a_key(gz: Gazetteer) -> None:
    assert key("  FLOOD ", gz) == key("flood", gz)
    assert key(None, gz, "south ossetia") == key(None, gz, "ge-so")
    assert key("referendum", gz, "ge-so") != key("referendum", gz)
    assert key("referendum", gz, "ge-so") != key(None, gz, "ge-so")
    assert key("referendum OR abkhazia", gz) != key("referendum abkhazia", gz)


def test_the_index_files_an_interest_under_the_key_match_key_gives(gz: Gazetteer) -> None:
    index = InterestIndex(gazetteer=gz)
    index.add(Interest("a", "Referendum", ("south ossetia",)))
    assert index.key_of("a") == key("referendum", gz, "ge-so")


def test_match_entries_name_each_meaning_once_with_every_interest_sharing_it(
    docs: dict[str, Document], gz: Gazetteer
) -> None:
    index = InterestIndex(gazetteer=gz)
    index.add(Interest("1", "referendum", ()))
    index.add(Interest("2", "REFERENDUM", ()))
    index.add(Interest("3", None, ("ge-so",)))
    index.add(Interest("4", "mosque", ()))
    for doc in docs.values():
        entries = index.match_entries(doc)
        assert len({entry.match_key for entry in entries}) == len(entries)
        reached = sorted(i for entry in entries for i in entry.interest_ids)
        assert reached == sorted(m.interest_id for m in index.match(doc))
    shared = {tuple(sorted(entry.interest_ids)) for entry in index.match_entries(docs["so-vote"])}
    assert shared == {("1", "2"), ("3",)}
