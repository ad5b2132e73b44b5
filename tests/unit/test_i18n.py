"""Readers' languages: complete catalogues, every mail in every language, local dates."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from string import Formatter
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from jinja2.ext import babel_extract

from alerts.compose import why
from alerts.delivery.render import DEFAULT_TEMPLATES_DIR, MailRenderer
from alerts.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    LOCALE_DIR,
    ReaderLocale,
    accepted_languages,
    format_day,
    format_moment,
    pick_language,
    translations,
)
from alerts.regions import default_gazetteer
from tests.unit.delivery.test_render import LINKS, contexts

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MAPPING_FILE = LOCALE_DIR / "babel.cfg"
TEMPLATE_FILE = LOCALE_DIR / "messages.pot"
TRANSLATED = sorted(set(LANGUAGES) - {DEFAULT_LANGUAGE})
NNBSP = "\N{NARROW NO-BREAK SPACE}"
MOMENT = datetime(2026, 11, 26, 21, 5, tzinfo=UTC)  # already the 27th in Tbilisi (UTC+4)
# English chrome that must not survive in a translated mail (the samples'
# article text is English on purpose, so these avoid its words).
ENGLISH_CHROME = (
    "News alerts",
    "This mail went to",
    "Manage your preferences",
    "Unsubscribe",
    "You get this",
    "Read it:",
    "Why:",
    "also reported by",
    "matching your interests",
    "Confirm my subscription",
    "more articles matched",
)
# One phrase of each translated footer that every mail carries.
TRANSLATED_FOOTER = {"de": "Einstellungen verwalten", "ru": "Настроить подписку"}


def message_key(message_id: str | tuple[str, ...]) -> str:
    return message_id[0] if isinstance(message_id, tuple) else message_id


def extracted_messages() -> set[str]:
    """Every msgid the templates and Python sources mark, by Babel's own extractors."""
    with MAPPING_FILE.open() as mapping:
        method_map, options_map = parse_mapping_cfg(mapping, str(MAPPING_FILE))
    return {
        message_key(found[2])
        for found in extract_from_dir(str(PROJECT_ROOT), method_map, options_map)
    }


def catalogue(language: str) -> Catalog:
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as source:
        return read_po(source, locale=language)


@pytest.fixture(scope="module")
def extracted() -> set[str]:
    return extracted_messages()


@pytest.fixture(scope="module")
def renderer() -> MailRenderer:
    return MailRenderer()


# --- the catalogues ----------------------------------------------------------------


def test_extraction_finds_the_chrome(extracted: set[str]) -> None:
    """A guard for the guard: a broken mapping would make every catalogue look complete."""
    assert "Unsubscribe" in extracted  # templates
    assert "Matched {things}." in extracted  # Python
    assert "%(num)d article matches your interests." in extracted  # plural in a template
    assert len(extracted) > 100


@pytest.mark.parametrize("language", TRANSLATED)
def test_catalogue_translates_every_message_and_nothing_else(
    language: str, extracted: set[str]
) -> None:
    catalog = catalogue(language)
    messages = {message_key(m.id): m for m in catalog if m.id}
    missing = sorted(extracted - set(messages))
    assert not missing, f"{language}: not in the catalogue, run pybabel update: {missing}"
    obsolete = sorted(set(messages) - extracted) + sorted(map(message_key, catalog.obsolete))
    assert not obsolete, f"{language}: no longer used anywhere: {obsolete}"
    for key, message in messages.items():
        assert not message.fuzzy, f"{language}: fuzzy, check and unflag: {key!r}"
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"{language}: untranslated: {key!r}"
        if isinstance(message.id, tuple):
            assert len(strings) == catalog.num_plurals, f"{language}: plural forms of {key!r}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_their_placeholders(language: str) -> None:
    """Babel's checkers: every %(name)s of the msgid, and no other, in each msgstr."""
    problems = [
        (message.id, [str(error) for error in errors])
        for message, errors in catalogue(language).check()
    ]
    assert not problems
    for message in catalogue(language):
        if "python-brace-format" in message.flags:
            assert isinstance(message.string, str)
            assert fields(message.string) == fields(message_key(message.id)), message.id


def fields(text: str) -> set[str]:
    """The ``{name}`` fields of a str.format message (Babel checks only %-style ones)."""
    return {name for _, name, _, _ in Formatter().parse(text) if name is not None}


def test_the_template_file_is_current(extracted: set[str]) -> None:
    with TEMPLATE_FILE.open("rb") as source:
        template = read_po(source)
    assert {message_key(m.id) for m in template if m.id} == extracted


def test_inlining_css_leaves_every_message_as_extracted(renderer: MailRenderer) -> None:
    """The inliner rewrites markup; a message inside rewritten markup would miss its translation."""
    environment = renderer.environment
    assert environment.loader is not None
    for path in sorted(DEFAULT_TEMPLATES_DIR.rglob("*.html")):
        name = path.relative_to(DEFAULT_TEMPLATES_DIR).as_posix()
        inlined, _, _ = environment.loader.get_source(environment, name)
        written = path.read_text("utf-8")
        assert inlined != written  # the stylesheet went in
        assert list(_messages(inlined)) == list(_messages(written)), name


def _messages(source: str) -> Iterator[Any]:
    for _, _, message, _ in babel_extract(
        io.BytesIO(source.encode()), ("_", "gettext", "ngettext"), [], {"trimmed": "true"}
    ):
        yield message


# --- mail in every language ------------------------------------------------------------


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_mail_renders_in_every_language(renderer: MailRenderer, language: str) -> None:
    for name, context in contexts().items():
        mail = renderer.render(name, context, language)
        assert mail.subject
        assert "\n" not in mail.subject
        assert f'<html lang="{language}">' in mail.html
        assert LINKS["unsubscribe"] in mail.text
        assert f'href="{LINKS["unsubscribe"]}"' in mail.html
        assert 'style="' in mail.html
        if language == DEFAULT_LANGUAGE:
            assert "Manage your preferences" in mail.text
            continue
        for part in (mail.subject, mail.text, mail.html):
            leftovers = [phrase for phrase in ENGLISH_CHROME if phrase in part]
            assert not leftovers, f"{name} in {language}: {leftovers}"
        assert TRANSLATED_FOOTER[language] in mail.text
        assert TRANSLATED_FOOTER[language] in mail.html


def test_known_phrases_in_german_and_russian(renderer: MailRenderer) -> None:
    samples = contexts()
    german = renderer.render("digest", samples["digest"], "de")
    assert german.subject == "Daily digest, 3 May 2024: 3 Artikel zu Ihren Interessen"
    assert "2 weitere Artikel passten" in german.text
    assert "Warum: Matched" in german.text  # the chrome is German; the sample's "why" is data
    russian = renderer.render("digest", samples["digest"], "ru")
    assert "3 статьи соответствуют вашим интересам." in russian.html
    assert "Ещё 2 подходящие статьи не поместились" in russian.text
    confirmation = renderer.render("confirmation", samples["confirmation"], "ru")
    assert confirmation.subject == "Пожалуйста, подтвердите подписку на новостные оповещения"
    assert "Ссылка действует 48 часов." in confirmation.text
    assert "<strong>reader@example.org</strong>" in confirmation.html


def test_fragments_never_cross_languages(renderer: MailRenderer) -> None:
    """The same keyed entry rendered in English, then German, then English again."""
    context = contexts()["alert"]
    context["article"] = dict(context["article"], key="same-story")
    english = renderer.render("alert", context, "en")
    german = renderer.render("alert", context, "de")
    again = renderer.render("alert", context, "en")
    assert "Read it:" in english.text
    assert "Zum Artikel:" in german.text
    assert "Read it:" not in german.text
    assert again == english


def test_an_unknown_language_gets_english(renderer: MailRenderer) -> None:
    sample = contexts()["alert"]
    assert renderer.render("alert", sample, "fr") == renderer.render("alert", sample, "en")


# --- picking the language --------------------------------------------------------------


def test_the_subscriber_beats_the_page_which_beats_the_browser() -> None:
    assert pick_language("ru", "de", "en") == "ru"
    assert pick_language(None, "de", "ru") == "de"
    assert pick_language(None, "de-AT", None) == "de"
    assert pick_language("fr", "xx", "ru-RU,ru;q=0.9") == "ru"
    assert pick_language(None, None, None) == "en"
    assert pick_language(None, None, "fr-FR, es;q=0.8") == "en"


def test_accept_language_is_read_by_weight() -> None:
    assert accepted_languages("en;q=0.5, de-CH;q=0.9, ru;q=0") == ["de", "en"]
    assert accepted_languages("fr, ru;q=0.7, de;q=0.7") == ["ru", "de"]
    assert accepted_languages("de;q=nonsense, ru") == ["ru"]
    assert accepted_languages("") == []


def test_reader_locale_falls_back_for_unknown_values() -> None:
    assert ReaderLocale.of("xx", None) == ReaderLocale("en", "UTC")
    assert ReaderLocale.of("de", "Asia/Tbilisi") == ReaderLocale("de", "Asia/Tbilisi")


# --- dates and the "why" line ------------------------------------------------------------


def test_the_same_moment_reads_differently_by_language_and_zone() -> None:
    utc = {lang: format_moment(MOMENT, lang, "UTC") for lang in LANGUAGES}
    tbilisi = {lang: format_moment(MOMENT, lang, "Asia/Tbilisi") for lang in LANGUAGES}
    assert len(set(utc.values())) == len(LANGUAGES)
    assert utc["de"] == "26.11.2026, 21:05"
    assert tbilisi["de"] == "27.11.2026, 01:05"
    # CLDR puts a narrow no-break space before Russian "г." (and English "PM").
    assert utc["ru"] == f"26 нояб. 2026{NNBSP}г., 21:05"
    assert tbilisi["ru"] == f"27 нояб. 2026{NNBSP}г., 01:05"
    assert utc["en"].startswith("Nov 26, 2026, 9:05")
    assert tbilisi["en"].startswith("Nov 27, 2026, 1:05")
    assert all(utc[lang] != tbilisi[lang] for lang in LANGUAGES)


def test_days_are_local_too() -> None:
    assert format_day(MOMENT, "en", "UTC") == "November 26, 2026"
    assert format_day(MOMENT, "de", "Asia/Tbilisi") == "27. November 2026"
    assert format_day(MOMENT, "ru", "Asia/Tbilisi") == f"27 ноября 2026{NNBSP}г."
    assert format_day(MOMENT, "de", "Not/A_Zone") == "26. November 2026"  # UTC fallback


def test_why_speaks_the_readers_language() -> None:
    explanation = {
        "terms": [{"term": "referendum", "zones": ["title", "lead"]}],
        "regions": [{"region_id": "ge-so", "zones": ["body"]}],
    }
    region = default_gazetteer().resolve("ge-so").name
    assert why([explanation], default_gazetteer()) == (
        f"Matched “referendum” in the title and first paragraph and the region {region}."
    )
    assert why([explanation], default_gazetteer(), "de") == (
        f"Treffer: „referendum“ (Titel und erster Absatz) und Region {region}."
    )
    assert why([explanation], default_gazetteer(), "ru") == (
        f"Совпадения: «referendum» (заголовок и первый абзац) и регион {region}."
    )
    assert why([], default_gazetteer(), "ru") == translations("ru").gettext(
        "It matched one of your interests."
    )
