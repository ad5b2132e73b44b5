"""The page templates, with what every page needs in its context.

Reader pages are translated (``jinja2.ext.i18n``, new style). A reader page
sets its language once, at the top: ``{% set lang = reader_language() %}``;
``base.html`` puts it on ``<html lang>`` and every ``_()`` on the page (macros
imported ``with context`` included) looks it up. Pages that set no ``lang``
(the console, status, outbox) stay in English, whatever the browser asks for.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, pass_context
from jinja2.runtime import Context

from alerts.config import TEMPLATES_DIR, get_settings
from alerts.i18n import DEFAULT_LANGUAGE, LANGUAGES, is_supported, pick_language, translations
from alerts.links import LANGUAGE_PARAMETER
from alerts.web.security import CSRF_FIELD, csrf_token

# Context names the request hints travel under; no page handler uses them.
REQUESTED_LANGUAGE = "requested_language"
BROWSER_LANGUAGES = "browser_languages"
PAGE_LANGUAGE = "lang"
# Schemes a page may put into href from stored data (a feed's link, say).
WEB_LINK_SCHEMES = frozenset({"http", "https"})


def request_languages(request: Request) -> dict[str, Any]:
    """What the request says about its language: ``?lang=`` and Accept-Language."""
    return {
        REQUESTED_LANGUAGE: request.query_params.get(LANGUAGE_PARAMETER),
        BROWSER_LANGUAGES: request.headers.get("accept-language"),
    }


@pass_context
def reader_language(context: Context) -> str:
    """The page's language: the subscriber's, else ``?lang=`` or the posted
    form's choice, else the browser's preference (see ``alerts.i18n.pick_language``)."""
    subscriber = context.get("subscriber")
    subscriber_language = getattr(subscriber, "language", None)
    explicit = context.get(REQUESTED_LANGUAGE)
    request = context.get("request")
    form = context.get("form")
    if not explicit and request is not None and request.method == "POST":
        explicit = getattr(form, "language", None)
    return pick_language(subscriber_language, explicit, context.get(BROWSER_LANGUAGES))


def _page_language(context: Context) -> str:
    language = context.get(PAGE_LANGUAGE)
    return language if isinstance(language, str) and is_supported(language) else DEFAULT_LANGUAGE


@pass_context
def _gettext(context: Context, message: str) -> str:
    return translations(_page_language(context)).gettext(message)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, count: int) -> str:
    return translations(_page_language(context)).ngettext(singular, plural, count)


def web_link(url: object) -> str | None:
    """``url`` when it is an http(s) address, else None: a feed cannot plant a
    ``javascript:`` or ``data:`` link in our pages. The one check for links from data."""
    if not isinstance(url, str):
        return None
    value = url.strip()
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in value):
        return None  # browsers drop tabs and newlines inside schemes: "java\tscript:"
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme.lower() in WEB_LINK_SCHEMES and parts.netloc else None


def outbox_enabled() -> bool:
    return get_settings().outbox_enabled


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR / "web"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
    )
    environment.policies["ext.i18n.trimmed"] = True
    environment.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=_gettext, ngettext=_ngettext, newstyle=True
    )
    return environment


templates = Jinja2Templates(env=_environment(), context_processors=[request_languages])
templates.env.globals.update(
    csrf_token=csrf_token,
    csrf_field_name=CSRF_FIELD,
    reader_language=reader_language,
    page_languages=LANGUAGES,
    outbox_enabled=outbox_enabled,
)
templates.env.filters["web_link"] = web_link
