"""Folding, tokenising and stemming: the ground every comparison stands on."""

from __future__ import annotations

import pytest

from alerts.text.analysis import (
    fold,
    normalise_language,
    stem,
    stem_variants,
    tokenize,
    tokenize_with_case,
)


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("Südossetien", "sudossetien"),
        ("ÉLYSÉE", "elysee"),
        ("Straße", "strasse"),
        ("ＡＢＣ", "abc"),  # NFKC: full-width letters
        ("Ёлка", "елка"),  # ё folds to е
        ("Йошкар", "йошкар"),  # й keeps its breve
        ("Naxçıvan", "naxcıvan"),
    ],
)
def test_fold(raw: str, folded: str) -> None:
    assert fold(raw) == folded


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Georgia's land", ["georgia", "land"]),
        ("Georgia’s land", ["georgia", "land"]),  # curly apostrophe
        ("the soldiers' camp", ["the", "soldiers", "camp"]),
        ("O'Neill spoke", ["oneill", "spoke"]),
        ("de-facto rulers", ["de", "facto", "rulers"]),
        ("58th army, 2008, 4,500 men", ["58th", "army", "2008", "4", "500", "men"]),
        ("snake_case", ["snake", "case"]),
        ("Цхинвали и Сухуми", ["цхинвали", "и", "сухуми"]),
        ("თბილისი და ბათუმი", ["თბილისი", "და", "ბათუმი"]),
        ("Երևան քաղաք", ["երեւան", "քաղաք"]),  # NFKC expands the և ligature
        ("", []),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_tokenize_with_case_keeps_capitalisation_per_source_word() -> None:
    tokens = tokenize_with_case("Nice weather in nice Nice-Côte")
    assert tokens == [
        ("nice", True),
        ("weather", False),
        ("in", False),
        ("nice", False),
        ("nice", True),
        ("cote", True),
    ]


@pytest.mark.parametrize(
    ("word", "language", "expected_same_as"),
    [
        ("referendums", "en", "referendum"),
        ("annexed", "en", "annexing"),
        ("abstimmungen", "de", "abstimmung"),
        ("regierungen", "de", "regierung"),
        ("референдума", "ru", "референдум"),
        ("референдумы", "ru", "референдум"),
        ("выборах", "ru", "выборы"),
    ],
)
def test_stemming_conflates_inflections(word: str, language: str, expected_same_as: str) -> None:
    assert stem(word, language) == stem(expected_same_as, language)


def test_stemming_uses_script_default_for_foreign_script_words() -> None:
    # a Russian word quoted in an English article is still stemmed as Russian
    assert stem("референдума", "en") == stem("референдум", "ru")
    # an unsupported language falls back to the script's default stemmer
    assert stem("referendums", "fr") == stem("referendum", "en")
    # scripts without a stemmer are left alone
    assert stem("თბილისში", "ka") == "თბილისში"


def test_stem_variants_cover_every_language() -> None:
    variants = stem_variants("abstimmungen")
    assert stem("abstimmungen", "de") in variants
    assert stem("abstimmungen", "en") in variants


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("en-GB", "en"), ("DE", "de"), ("ru_RU", "ru"), (None, None), ("", None), ("english", None)],
)
def test_normalise_language(tag: str | None, expected: str | None) -> None:
    assert normalise_language(tag) == expected


def test_repair_undoes_entities_and_mojibake() -> None:
    from alerts.text.analysis import repair

    assert repair("USX &lt;X&gt; debt") == "USX <X> debt"
    assert repair("Tickets cost Â£5 at the cafÃ©") == "Tickets cost £5 at the café"
    assert repair("plain text & more") == "plain text & more"


def test_analysis_sees_repaired_text() -> None:
    from alerts.matching import analyze

    doc = analyze("x", title="CafÃ© prices", body="Tom &amp; Jerry")
    assert "cafe" in doc.surfaces
    assert "amp" not in doc.surfaces
