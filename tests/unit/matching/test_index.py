"""Interest matching end to end over our fixture articles."""

from __future__ import annotations

import pytest

from alerts.matching import (
    Document,
    Gazetteer,
    Interest,
    InterestIndex,
    QueryError,
    UnknownRegionError,
    analyze,
)


def matching_articles(
    query: str | None, docs: dict[str, Document], gz: Gazetteer, regions: tuple[str, ...] = ()
) -> set[str]:
    index = InterestIndex(gazetteer=gz)
    index.add(Interest(id="i", query=query, regions=regions))
    return {doc_id for doc_id, doc in docs.items() if index.match_ids(doc)}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # bare words: stems in the article's language
        ("referendum", {"so-vote"}),
        ("referendums", {"so-vote"}),
        ("referendum OR референдум", {"so-vote", "ru-referendum"}),
        ("референдумы", {"ru-referendum"}),
        ("Abstimmung", {"de-abstimmung"}),
        ("STORMS", {"atlanta"}),
        # diacritics and ё
        ("Sudossetien", {"de-abstimmung"}),
        ("елочные", {"ru-referendum"}),
        # phrases: consecutive folded surface words, across hyphens too
        ('"de facto"', {"so-vote", "de-abstimmung"}),
        ("de-facto", {"so-vote", "de-abstimmung"}),
        ('"facto leader"', {"so-vote"}),
        ('"leader facto"', set()),
        ('"referendum"', {"so-vote"}),  # quoting a word asks for that exact form
        # a phrase never spans title and lead
        ('"russia authorities"', set()),
        # prefix
        ("annex*", {"so-vote", "crimea"}),
        ("стромаус*", set()),
        ("stromausf*", {"de-strom"}),
        # boolean operators
        ("referendum russia", {"so-vote"}),
        ("referendum AND russia", {"so-vote"}),
        ("storms OR blackouts", {"atlanta", "abkhaz-power"}),
        ("referendum -tbilisi", set()),
        ("referendum NOT tbilisi", set()),
        ("(referendum OR референдум) -tbilisi", {"ru-referendum"}),
        ("(storms OR blackouts) -sukhum", {"atlanta"}),
        ("mosque OR power cuts", {"chechnya", "abkhaz-power"}),
        # fields
        ("title:referendum", {"so-vote"}),
        ("title:референдума", {"ru-referendum"}),
        ("title:цхинвали", set()),
        ("title:(storms OR mosque)", {"atlanta", "chechnya"}),
        ('title:"power cuts"', {"abkhaz-power"}),
        ("title:annex*", set()),
        ("tag:politics", {"so-vote"}),
        ("tag:politik", {"de-abstimmung"}),
        ("tag:(energy OR weather)", {"atlanta", "abkhaz-power"}),
        ('source:"Caucasus Watch"', {"so-vote", "tbilisi-protest", "abkhaz-power"}),
        ("source:wire", {"one-mention", "crimea"}),
        ("lang:de", {"de-abstimmung", "de-strom"}),
        ("lang:ru референдумы", {"ru-referendum"}),
        ("lang:en референдумы", set()),
        ("region:abkhazia", {"abkhaz-power", "de-strom"}),
        ('region:"North Caucasus"', {"chechnya", "ru-dagestan"}),
        ("region:ge-so -lang:en", {"de-abstimmung", "ru-referendum"}),
        ("region:(chechnya OR dagestan)", {"chechnya", "ru-dagestan"}),
    ],
)
def test_query_semantics(
    query: str, expected: set[str], docs: dict[str, Document], gz: Gazetteer
) -> None:
    assert matching_articles(query, docs, gz) == expected


@pytest.mark.parametrize(
    ("regions", "expected"),
    [
        (("South Ossetia",), {"so-vote", "de-abstimmung", "ru-referendum"}),
        (("Tskhinvali",), {"so-vote", "de-abstimmung", "ru-referendum"}),
        (("ge-ab",), {"abkhaz-power", "de-strom"}),
        (("Abkhazia", "Chechnya"), {"abkhaz-power", "de-strom", "chechnya"}),
        (
            ("South Caucasus",),
            {
                "so-vote",
                "tbilisi-protest",
                "abkhaz-power",
                "karabakh",
                "de-abstimmung",
                "de-strom",
                "ru-referendum",
            },
        ),
        (("Crimea",), {"crimea"}),
    ],
)
def test_region_only_interests(
    regions: tuple[str, ...], expected: set[str], docs: dict[str, Document], gz: Gazetteer
) -> None:
    assert matching_articles(None, docs, gz, regions) == expected


def test_query_and_regions_must_both_hold(docs: dict[str, Document], gz: Gazetteer) -> None:
    assert matching_articles("referendum", docs, gz, ("south ossetia",)) == {"so-vote"}
    assert matching_articles("referendum", docs, gz, ("abkhazia",)) == set()


def test_explanation_names_terms_regions_and_zones(
    docs: dict[str, Document], gz: Gazetteer
) -> None:
    index = InterestIndex(gazetteer=gz)
    index.add(
        Interest(
            id="i1", query="referendum annex* -bibilov tag:politics", regions=("South Ossetia",)
        )
    )
    (match,) = index.match(docs["so-vote"])
    assert match.interest_id == "i1"
    terms = {hit.term: hit.zones for hit in match.explanation.terms}
    assert terms == {
        "referendum": ("title", "lead", "body"),
        "annex*": ("body",),
        'tag:"politics"': ("tag",),
    }
    (region,) = match.explanation.regions
    assert region.region_id == "ge-so"
    assert set(region.zones) == {"tag", "title", "lead"}
    assert "tskhinvali" in region.names


def test_identical_interests_share_an_entry_and_fan_out(
    docs: dict[str, Document], gz: Gazetteer
) -> None:
    index = InterestIndex(gazetteer=gz)
    index.add(Interest(id="a", query="referendum russia", regions=("ge-so",)))
    index.add(Interest(id="b", query="Russia  referendum", regions=("South Ossetia",)))
    index.add(Interest(id="c", query="referendum"))
    assert len(index) == 3
    assert index.entry_count == 2
    assert index.match_ids(docs["so-vote"]) == ["a", "b", "c"]
    index.remove("a")
    assert index.match_ids(docs["so-vote"]) == ["b", "c"]
    index.remove("b")
    assert index.entry_count == 1
    assert index.match_ids(docs["so-vote"]) == ["c"]


def test_add_replaces_and_remove_forgets(docs: dict[str, Document], gz: Gazetteer) -> None:
    index = InterestIndex(gazetteer=gz)
    index.add(Interest(id="x", query="storms"))
    assert index.match_ids(docs["atlanta"]) == ["x"]
    index.add(Interest(id="x", query="mosque"))
    assert index.match_ids(docs["atlanta"]) == []
    assert index.match_ids(docs["chechnya"]) == ["x"]
    index.remove("x")
    assert "x" not in index
    assert index.match_ids(docs["chechnya"]) == []
    with pytest.raises(KeyError):
        index.remove("x")


def test_bad_interests_are_refused(gz: Gazetteer) -> None:
    index = InterestIndex(gazetteer=gz)
    with pytest.raises(QueryError):
        index.add(Interest(id="empty"))
    with pytest.raises(QueryError):
        index.add(Interest(id="neg", query="-foo"))
    with pytest.raises(UnknownRegionError) as info:
        index.add(Interest(id="r", query="foo", regions=("Atlantis",)))
    assert info.value.interest_id == "r"
    assert info.value.name == "Atlantis"
    with pytest.raises(QueryError) as qinfo:
        index.add(Interest(id="q", query="foo region:atlantis"))
    assert qinfo.value.position == 11  # the caret points at the region name
    assert "atlantis" in qinfo.value.message
    assert len(index) == 0


def test_limits_are_configurable_on_the_index(gz: Gazetteer) -> None:
    index = InterestIndex(gazetteer=gz, max_terms=2, max_length=30)
    index.add(Interest(id="ok", query="a b"))
    with pytest.raises(QueryError):
        index.add(Interest(id="many", query="a b c"))
    with pytest.raises(QueryError):
        index.add(Interest(id="long", query="x" * 31))


def test_lead_can_be_given_explicitly(gz: Gazetteer) -> None:
    doc = analyze(
        "x",
        title="Quiet day",
        lead="Nothing happened in Sukhumi.",
        body="A second paragraph with more detail.",
        language="en",
        gazetteer=gz,
    )
    index = InterestIndex(gazetteer=gz)
    index.add(Interest(id="abkhazia", regions=("abkhazia",)))
    index.add(Interest(id="phrase", query='"sukhumi a"'))
    # one lead mention is enough; phrases do not cross from lead to body
    assert index.match_ids(doc) == ["abkhazia"]


def test_no_gazetteer_means_no_regions() -> None:
    doc = analyze("x", title="Tbilisi", body="Tbilisi Tbilisi", language="en")
    assert doc.region_ids == frozenset()


def test_bulk_load_shares_entries_and_handles_replacement(
    docs: dict[str, Document], gz: Gazetteer
) -> None:
    index = InterestIndex(gazetteer=gz)
    index.add_all(
        [
            Interest(id="a", query="storms"),
            Interest(id="a", query="mosque"),  # replaces; the storms entry dies
            Interest(id="b", query="storms"),  # must not join the dead entry
            Interest(id="c", query="storms"),
            Interest(id="d", query="storms", regions=("us-ga",)),
        ]
    )
    assert len(index) == 4
    assert index.entry_count == 3
    assert index.match_ids(docs["atlanta"]) == ["b", "c", "d"]
    assert index.match_ids(docs["chechnya"]) == ["a"]
    index.remove("b")
    index.remove("c")
    assert index.match_ids(docs["atlanta"]) == ["d"]
