"""Readers' languages: catalogues, picking a reader's language, dates in their locale and zone.

Only the chrome is translated (headings, buttons, footers, the "why you got
this" line); articles, their titles and editors' text stay as written.

Catalogues are ``alerts/locale/<lang>/LC_MESSAGES/messages.po``, compiled in
memory when first used: there is no build step and no ``.mo`` file to forget.
English is the source language and needs no catalogue.

To re-extract the messages after changing templates or marked strings, then
merge them into the catalogues (translate what ``update`` marks new or fuzzy;
``tests/unit/test_i18n.py`` fails until every message is translated)::

    .venv/bin/pybabel extract -F alerts/locale/babel.cfg -o alerts/locale/messages.pot \
        --no-location --omit-header -w 100 .
    .venv/bin/pybabel update -i alerts/locale/messages.pot -d alerts/locale \
        --ignore-obsolete -w 100

A new language: add it to ``LANGUAGES``, then
``pybabel init -i alerts/locale/messages.pot -d alerts/locale -l <code>``.
"""

from __future__ import annotations

import gettext
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_time, get_datetime_format
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DEFAULT_LANGUAGE = "en"
# Language code -> its name in that language (what a reader looks for in a list).
LANGUAGES: Mapping[str, str] = {"en": "English", "de": "Deutsch", "ru": "Русский"}
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
DEFAULT_ZONE = "UTC"
# Babel pattern names: a day as a heading ("26. November 2026"), and the
# date and time of an article (the date as "medium", the time without seconds).
DAY_FORMAT: Final = "long"
MOMENT_DATE_FORMAT: Final = "medium"
MOMENT_TIME_FORMAT: Final = "short"
# Accept-Language entries looked at, so a hostile header costs little.
MAX_ACCEPT_LANGUAGE_ENTRIES = 20


@dataclass(frozen=True, slots=True)
class ReaderLocale:
    """What a mail needs to know about its reader to speak their language and time."""

    language: str = DEFAULT_LANGUAGE
    timezone: str = DEFAULT_ZONE

    @classmethod
    def of(cls, language: str | None, timezone: str | None) -> ReaderLocale:
        """From stored values; unknown languages fall back to English, zones to UTC."""
        return cls(
            language if language and is_supported(language) else DEFAULT_LANGUAGE,
            timezone or DEFAULT_ZONE,
        )


ENGLISH_UTC = ReaderLocale()


def N_(message: str) -> str:  # noqa: N802 - the conventional name extractors look for
    """Mark a string for extraction; it is translated where it is shown, not here."""
    return message


def is_supported(language: str | None) -> bool:
    return language in LANGUAGES


@lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of ``language``, compiled once per process; English for others.

    Fuzzy entries are left out: a guess by ``pybabel update`` is not a translation.
    """
    if language == DEFAULT_LANGUAGE or not is_supported(language):
        return gettext.NullTranslations()
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as source:
        catalog = read_po(source, locale=language, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def normalize_language(value: str | None) -> str | None:
    """A supported language code from ``de``, ``de-AT``, ``RU_ru``...; None otherwise."""
    if not value:
        return None
    primary = value.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if is_supported(primary) else None


def accepted_languages(header: str | None) -> list[str]:
    """Supported languages in an Accept-Language header, most wanted first (RFC 9110)."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((header or "").split(",")[:MAX_ACCEPT_LANGUAGE_ENTRIES]):
        tag, _, params = item.partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        language = normalize_language(tag)
        if language is not None and weight > 0:
            ranked.append((-weight, position, language))
    return list(dict.fromkeys(language for _, _, language in sorted(ranked)))


def pick_language(
    subscriber_language: str | None = None,
    explicit: str | None = None,
    accept_language: str | None = None,
) -> str:
    """The reader's language: theirs if known, else what the page was asked in
    (``?lang=`` or a form value), else what the browser prefers, else English."""
    for candidate in (subscriber_language, explicit):
        language = normalize_language(candidate)
        if language is not None:
            return language
    preferred = accepted_languages(accept_language)
    return preferred[0] if preferred else DEFAULT_LANGUAGE


def reader_zone(name: str | None) -> ZoneInfo:
    """The reader's time zone; UTC when the stored name is unknown to this system."""
    try:
        return ZoneInfo(name or DEFAULT_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_ZONE)


def format_day(value: datetime, language: str, timezone: str | None) -> str:
    """The calendar day of ``value`` where the reader lives, as their locale writes it."""
    local = value.astimezone(reader_zone(timezone))
    return format_date(local, DAY_FORMAT, locale=_locale(language))


def format_moment(value: datetime, language: str, timezone: str | None) -> str:
    """Date and time (to the minute) of ``value`` in the reader's zone and locale.

    Babel's "medium" date-time shows seconds, which mean nothing for a news
    story; so the date and the time are formatted apart and joined by the
    locale's own pattern, as Babel's ``format_datetime`` does.
    """
    locale = _locale(language)
    zone = reader_zone(timezone)
    date_part = format_date(value.astimezone(zone), MOMENT_DATE_FORMAT, locale=locale)
    time_part = format_time(value, MOMENT_TIME_FORMAT, tzinfo=zone, locale=locale)
    pattern = str(get_datetime_format(MOMENT_DATE_FORMAT, locale=locale)).replace("'", "")
    return pattern.replace("{0}", time_part).replace("{1}", date_part)


def _locale(language: str) -> str:
    return language if is_supported(language) else DEFAULT_LANGUAGE
