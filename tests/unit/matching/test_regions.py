"""The gazetteer and the region rule."""

from __future__ import annotations

import pytest

from alerts.matching import Document, Gazetteer, analyze
from alerts.regions import BODY_MENTIONS_REQUIRED, UnknownRegionError, load_gazetteer
from alerts.regions.gazetteer import GAZETTEER_PATH

FILLER = "Nothing else of note was reported."


def regions_of(
    gz: Gazetteer,
    *,
    title: str = "Local news",
    lead: str = FILLER,
    body: str = FILLER,
    tags: tuple[str, ...] = (),
    language: str = "en",
) -> frozenset[str]:
    return analyze(
        "x", title=title, lead=lead, body=body, tags=tags, language=language, gazetteer=gz
    ).region_ids


def test_hierarchy_is_transitive(gz: Gazetteer) -> None:
    assert gz.ancestors("ge-c-tskhinvali") >= {"ge-so", "ge", "south-caucasus", "caucasus"}
    assert gz.contains("caucasus", "ru-c-grozny")
    assert gz.contains("ru", "ru-c-grozny")
    assert not gz.contains("south-caucasus", "ru-ce")
    assert gz.contains("ua-donbas", "ua-c-mariupol")


@pytest.mark.parametrize(
    ("name", "region_id"),
    [
        ("Tskhinvali", "ge-c-tskhinvali"),
        ("Tskhinval", "ge-c-tskhinvali"),
        ("Цхинвали", "ge-c-tskhinvali"),
        ("Sukhum", "ge-c-sukhumi"),
        ("Сухуми", "ge-c-sukhumi"),
        ("Tskhinvali Region", "ge-so"),
        ("Südossetien", "ge-so"),
        ("Abchasien", "ge-ab"),
        ("Georgien", "ge"),
        ("Georgia", "ge"),
        ("south ossetia", "ge-so"),
        ("GE-SO", "ge-so"),
        ("north caucasus", "north-caucasus"),
        ("Nagorno-Karabakh", "az-nk"),
        ("Kabardino-Balkaria", "ru-kb"),
        ("Zaporizhzhia", "ua-c-zaporizhzhia"),
        ("Transnistria", "md-sn"),
        ("Kakheti", "ge-ka"),
        ("Samegrelo", "ge-sz"),
        ("Atlanta", "us-c-atlanta"),
        ("France", "fr"),
        ("Central Asia", "central-asia"),
    ],
)
def test_resolve_names_and_ids(gz: Gazetteer, name: str, region_id: str) -> None:
    assert gz.resolve(name).id == region_id


def test_unknown_region(gz: Gazetteer) -> None:
    with pytest.raises(UnknownRegionError) as info:
        gz.resolve("Atlantis")
    assert info.value.name == "Atlantis"


def test_ambiguous_name_lists_every_reading(gz: Gazetteer) -> None:
    assert gz.candidates("Georgia") == ["ge", "us-ga"]


def test_one_tag_is_enough(gz: Gazetteer) -> None:
    assert "ge-ab" in regions_of(gz, tags=("Abkhazia",))
    assert "ge-so" in regions_of(gz, tags=("tskhinvali",))  # tags need no capital


def test_title_or_lead_once_is_enough(gz: Gazetteer) -> None:
    assert "ge-so" in regions_of(gz, title="Vote planned in Tskhinvali")
    assert "ge-so" in regions_of(gz, lead="Officials in Tskhinvali spoke today.")


def test_body_needs_two_mentions(gz: Gazetteer) -> None:
    assert BODY_MENTIONS_REQUIRED == 2
    once = regions_of(gz, body="A delegation later travelled to Sukhumi.")
    twice = regions_of(gz, body="A delegation travelled to Sukhumi. Sukhumi was quiet.")
    assert "ge-ab" not in once
    assert "ge-ab" in twice


def test_body_mentions_of_places_inside_count_together(gz: Gazetteer) -> None:
    body = "Leaders in Sukhumi met. Later they flew to Tskhinvali."
    found = regions_of(gz, body=body)
    # one mention each of Abkhazia and South Ossetia, but two inside Georgia
    assert "ge-ab" not in found
    assert "ge-so" not in found
    assert {"ge", "south-caucasus", "caucasus"} <= found


def test_possessives_and_demonyms(gz: Gazetteer) -> None:
    assert "ge" in regions_of(gz, title="Georgia's parliament meets")
    assert "ge" in regions_of(gz, title="Georgia’s parliament meets")
    assert "ge-ab" in regions_of(gz, title="Abkhaz officials resign")
    assert "ge" in regions_of(gz, title="Georgian wine on sale")
    assert "ge-so" in regions_of(gz, title="South Ossetian troops leave")
    assert "ossetia" in regions_of(gz, title="Ossetian songs")


def test_transliterations_and_scripts(gz: Gazetteer) -> None:
    assert "ge-so" in regions_of(gz, title="Власти Цхинвали", language="ru")
    assert "ge-so" in regions_of(gz, title="Новости Южной Осетии", language="ru")
    assert "ge-ab" in regions_of(gz, title="Strom in Suchumi", language="de")
    assert "ge-ab" in regions_of(gz, title="Ночь в Сухуме", language="ru")
    assert "ge" in regions_of(gz, title="თბილისი")


def test_german_forms(gz: Gazetteer) -> None:
    assert "ge-so" in regions_of(gz, title="Wahl in Südossetien", language="de")
    assert "ge" in regions_of(gz, title="die georgische Regierung", language="de")


def test_longest_match_wins(gz: Gazetteer) -> None:
    doc = analyze("x", title="Tension in the Tskhinvali Region", body="", gazetteer=gz)
    assert doc.region_assignment is not None
    assert [m.region_id for m in doc.region_assignment.mentions] == ["ge-so"]
    doc = analyze("x", title="North Ossetia and South Ossetia", body="", gazetteer=gz)
    assert doc.region_assignment is not None
    assert [m.region_id for m in doc.region_assignment.mentions] == ["ru-se", "ge-so"]


def test_atlanta_georgia_is_not_the_country(docs: dict[str, Document]) -> None:
    found = docs["atlanta"].region_ids
    assert "us-ga" in found
    assert "ge" not in found
    assert "south-caucasus" not in found


def test_tbilisi_article_is_in_georgia(docs: dict[str, Document]) -> None:
    assert {"ge", "south-caucasus", "caucasus"} <= docs["tbilisi-protest"].region_ids
    assert "us-ga" not in docs["tbilisi-protest"].region_ids


def test_georgia_alone_is_the_country(gz: Gazetteer) -> None:
    assert "ge" in regions_of(gz, title="Georgia holds elections")


def test_us_state_cue_and_us_context(gz: Gazetteer) -> None:
    assert "us-ga" in regions_of(gz, title="Floods in the U.S. state of Georgia")
    found = regions_of(gz, title="Georgia and Alabama brace for hurricane")
    assert "us-ga" in found
    assert "ge" not in found


def test_generated_names_need_a_capital_outside_tags(gz: Gazetteer) -> None:
    assert "us-c-atlanta" in regions_of(gz, title="Atlanta weather")
    assert "us-c-atlanta" not in regions_of(gz, title="atlanta weather")


def test_article_with_one_passing_mention_is_not_in_that_region(docs: dict[str, Document]) -> None:
    assert "am" not in docs["one-mention"].region_ids


def test_north_caucasus_article(docs: dict[str, Document]) -> None:
    found = docs["chechnya"].region_ids
    assert {"ru-ce", "north-caucasus", "caucasus", "ru"} <= found
    assert "ru-da" not in found  # Dagestan is named once in the body
    assert {"ru-da", "north-caucasus"} <= docs["ru-dagestan"].region_ids


def test_gazetteer_loads_from_its_data_file() -> None:
    gz = load_gazetteer(GAZETTEER_PATH)  # an uncached load
    assert len(gz.regions) > 2000
    assert gz.resolve("Tbilisi").id == "ge-tb"


@pytest.mark.parametrize(
    ("name", "region_id"),
    [
        ("Palestine", "ps"),
        ("England", "gb-eng"),
        ("Scotland", "gb-sct"),
        ("Wales", "gb-wls"),
        ("Ontario", "ca-on"),
        ("Georgia (U.S. state)", "us-ga"),
        ("Georgia, USA", "us-ga"),
        ("Georgia state", "us-ga"),
        ("UK", "gb"),
        ("Britain", "gb"),
        ("Schweiz", "ch"),
        ("Швейцария", "ch"),
        ("Vereinigtes Königreich", "gb"),
        ("D.C.", "us-dc"),
        ("New South Wales", "au-nsw"),
        ("Queensland", "au-qld"),
    ],
)
def test_names_readers_type_resolve(gz: Gazetteer, name: str, region_id: str) -> None:
    assert gz.resolve(name).id == region_id


def test_typo_gets_did_you_mean(gz: Gazetteer) -> None:
    with pytest.raises(UnknownRegionError) as info:
        gz.resolve("South Osetia")
    assert "South Ossetia" in info.value.suggestions
    assert "did you mean South Ossetia" in str(info.value)


def test_unknown_region_in_interest_carries_suggestions(gz: Gazetteer) -> None:
    from alerts.matching import Interest, UnknownRegionError, prepare_interest

    with pytest.raises(UnknownRegionError) as info:
        prepare_interest(Interest("i", regions=("Swizerland",)), gz)
    assert "Switzerland" in info.value.suggestions
    assert "did you mean Switzerland" in str(info.value)


def test_regions_cli_resolve_exits_2_with_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    from alerts.cli import main

    assert main(["regions", "resolve", "Ontario"]) == 0
    assert "ca-on" in capsys.readouterr().out
    assert main(["regions", "resolve", "Untied Kingdom"]) == 2
    assert "did you mean United Kingdom" in capsys.readouterr().err


def test_population_prior_picks_the_bigger_namesake(gz: Gazetteer) -> None:
    assert "cd" in regions_of(gz, title="Fighting flares in Congo")
    assert "cg" not in regions_of(gz, title="Fighting flares in Congo")


def test_generated_data_inflects_russian_and_german_names() -> None:
    from alerts.regions.build import (
        german_adjective_forms,
        german_name_forms,
        russian_adjective_forms,
        russian_noun_forms,
    )

    assert "Франции" in russian_noun_forms("Франция")
    assert "Канаде" in russian_noun_forms("Канада")
    assert "французского" in russian_adjective_forms("французский")
    assert "französischen" in german_adjective_forms("französisch")
    assert german_name_forms("Frankreich") == ["Frankreich", "Frankreichs"]


def test_inflected_country_names_in_russian_and_german(gz: Gazetteer) -> None:
    assert "fr" in regions_of(gz, title="Выборы во Франции", language="ru")
    assert "fr" in regions_of(gz, title="Французского посла вызвали", language="ru")
    assert "fr" in regions_of(gz, title="Die französische Regierung tritt zurück", language="de")
    assert "ch" in regions_of(gz, title="Wahlen in der Schweiz", language="de")
