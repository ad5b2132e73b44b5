"""Regression table for issue 13's "where it goes wrong" list, in our own sentences.

Each row is an article (title, lead) and the regions it must and must not be
in. The lead is one paragraph, so one mention there counts.
"""

from __future__ import annotations

import pytest

from alerts.matching import Gazetteer, analyze

CASES: list[tuple[str, str, str, set[str], set[str]]] = [
    # demonyms and common names
    ("british", "Talks", "British ministers met on Monday.", {"gb"}, set()),
    ("french", "Talks", "French farmers blocked roads.", {"fr"}, set()),
    ("german", "Talks", "The German chancellor spoke.", {"de"}, set()),
    ("chinese", "Talks", "Chinese exporters had a good year.", {"cn"}, set()),
    ("israeli", "Talks", "Israeli officials declined to comment.", {"il"}, set()),
    ("palestinian", "Talks", "Palestinian negotiators arrived late.", {"ps"}, set()),
    ("swiss", "Talks", "Swiss banks reported profits.", {"ch"}, set()),
    ("canadian", "Talks", "Canadian wheat prices rose.", {"ca"}, set()),
    ("uk", "Talks", "The UK economy grew slowly.", {"gb"}, set()),
    ("britain", "Talks", "Britain raised interest rates.", {"gb"}, set()),
    ("england", "Match report", "Rain stopped play in England.", {"gb-eng", "gb"}, set()),
    ("scotland", "Match report", "Voters in Scotland went to the polls.", {"gb-sct", "gb"}, set()),
    ("wales", "Match report", "Floods hit Wales overnight.", {"gb-wls", "gb"}, set()),
    ("northern-ireland", "Talks", "Northern Ireland's assembly met.", {"gb-nir", "gb"}, set()),
    ("us-no-dots", "Talks", "US officials met their counterparts.", {"us"}, set()),
    ("dc", "Talks", "Protesters gathered in D.C. on Sunday.", {"us-dc", "us"}, set()),
    ("gaza", "Talks", "Aid trucks entered Gaza at dawn.", {"ps"}, set()),
    ("west-bank", "Talks", "Settlers in the West Bank clashed with police.", {"ps"}, set()),
    # small places read as big foreign ones
    (
        "paris-texas",
        "Fair",
        "The county fair in Paris, Texas, drew crowds.",
        {"us-tx", "us"},
        {"fr"},
    ),
    (
        "london-ontario",
        "Fair",
        "A new bridge opened in London, Ontario, this week.",
        {"ca-on", "ca"},
        {"gb"},
    ),
    (
        "athens-ga",
        "Game",
        "Fans filled the stadium in Athens, Ga., on Saturday.",
        {"us-ga", "us"},
        {"gr", "ge"},
    ),
    (
        "alexandria-va",
        "Council",
        "The council of Alexandria, Va., voted on Tuesday.",
        {"us-va", "us"},
        {"eg"},
    ),
    ("dublin-ohio", "Council", "Dublin, Ohio, approved a new park.", {"us-oh", "us"}, {"ie"}),
    ("lebanon-county", "Roads", "Snow closed roads across Lebanon County.", set(), {"lb"}),
    # Washington and D.C.
    (
        "washington-dc",
        "Budget",
        "Lawmakers in Washington argued about the budget.",
        {"us-dc", "us"},
        {"us-wa"},
    ),
    ("washington-state", "Fires", "Wildfires spread in Washington state.", {"us-wa"}, {"us-dc"}),
    (
        "seattle-washington",
        "Fires",
        "Crews near Seattle, Washington, fought a fire.",
        {"us-wa"},
        set(),
    ),
    # people and common words
    (
        "georgia-stevens",
        "Award",
        "Georgia Stevens won the award for her novel.",
        set(),
        {"ge", "us-ga"},
    ),
    ("jordan-person", "Award", "Jordan Clark scored twice in the final.", set(), {"jo"}),
    ("chad-person", "Award", "Chad Miller opened a bakery downtown.", set(), {"td"}),
    ("turkey-lowercase", "Dinner", "We roasted a turkey for the holiday dinner.", set(), {"tr"}),
    (
        "dnr-department",
        "Hunting",
        "The DNR said deer season opens next week.",
        set(),
        {"ua-14", "ua"},
    ),
    # Georgia, the state and the country
    (
        "northeast-georgia",
        "Storm",
        "Storms knocked out power in Northeast Georgia.",
        {"us-ga"},
        {"ge"},
    ),
    ("gbi", "Case", "The Georgia Bureau of Investigation opened a case.", {"us-ga"}, {"ge"}),
    ("uga", "Campus", "Students at the University of Georgia returned.", {"us-ga"}, {"ge"}),
    (
        "war-in-georgia",
        "Summit",
        "U.S. and Russian diplomats discussed the war in Georgia and Russia's troops.",
        {"ge", "ru", "us"},
        {"us-ga"},
    ),
    ("state-of-georgia-ru", "Выборы", "В штате Джорджия прошли выборы.", {"us-ga"}, {"ge"}),
]


@pytest.mark.parametrize(
    ("case", "title", "lead", "wanted", "unwanted"), CASES, ids=[c[0] for c in CASES]
)
def test_region_regression(
    gz: Gazetteer, case: str, title: str, lead: str, wanted: set[str], unwanted: set[str]
) -> None:
    language = "ru" if any("а" <= ch <= "я" for ch in lead) else "en"
    found = analyze(
        case, title=title, lead=lead, body="", language=language, gazetteer=gz
    ).region_ids
    assert wanted <= found, f"missing {wanted - found}"
    assert not unwanted & found, f"unexpected {unwanted & found}"


def test_why_names_the_evidence(gz: Gazetteer) -> None:
    doc = analyze(
        "x",
        title="Fair",
        lead="The county fair in Paris, Texas, drew crowds.",
        body="",
        gazetteer=gz,
    )
    assert doc.region_assignment is not None
    paris = [m for m in doc.region_assignment.mentions if m.text == "paris"]
    assert paris
    assert "Texas" in paris[0].evidence


def test_match_explanation_carries_the_evidence(gz: Gazetteer) -> None:
    from alerts.matching import Interest, InterestIndex

    index = InterestIndex(gazetteer=gz)
    index.add(Interest("tx", regions=("Texas",)))
    doc = analyze(
        "x",
        title="Fair",
        lead="The county fair in Paris, Texas, drew crowds.",
        body="",
        gazetteer=gz,
    )
    [match] = index.match(doc)
    [hit] = match.explanation.regions
    assert any(line.startswith("paris: next to Texas") for line in hit.evidence)


@pytest.mark.parametrize(
    ("title", "language", "region_id"),
    [
        ("Власти Цхинвала заявили", "ru", "ge-so"),
        ("Переговоры с Южной Осетией", "ru", "ge-so"),
        ("южноосетинские власти", "ru", "ge-so"),
        ("Wahl in Suedossetien", "de", "ge-so"),
        ("Прогулка по Москве и Москвой", "ru", "ru"),
    ],
)
def test_inflected_and_transcribed_place_names(
    gz: Gazetteer, title: str, language: str, region_id: str
) -> None:
    found = analyze("x", title=title, body="", language=language, gazetteer=gz).region_ids
    assert region_id in found
