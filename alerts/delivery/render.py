"""Rendering named mail templates: ``templates/email/<name>/{subject.txt, body.txt, body.html}``.

Every template set is loaded and compiled once, when the renderer is built, and
the stylesheet is inlined into the HTML templates at that moment, never per send.

How CSS is inlined without breaking Jinja
-----------------------------------------
A CSS inliner parses HTML with a browser's rules, and those rules move or
mangle Jinja syntax: text inside ``<table>`` outside a cell is "foster
parented" out of the table, attribute-position tags become attributes. So the
source is inlined at the level of its static markup:

1. each Jinja construct (``{{ }}``, ``{% %}``, ``{# #}``) is swapped for a
   placeholder the HTML parser leaves in place: an HTML comment
   ``<!--jinja:N-->`` where it stands between elements (comments are kept even
   inside tables), a bare word ``xjinjaNx`` inside a tag (attribute values) or
   in ``<title>``/``<style>`` text;
2. the placeholder document is inlined with ``_styles.css`` (css-inline);
3. the placeholders are swapped back, and the loader checks that every one
   came back exactly once and in order, and that the parser added no
   ``<tbody>`` (which would end up inside a loop): a template that breaks these
   rules fails at load time, not in somebody's inbox.

Rules for templates that follow from this: Jinja inside a tag only within an
attribute value; classes used for styling are static; tables say ``<tbody>``
themselves; selectors do not reach across a ``{% block %}`` boundary (a child
template is inlined as a fragment, apart from its parent).

Languages
---------
Chrome strings are marked with ``{% trans %}`` or ``_()`` (``jinja2.ext.i18n``,
new style). Every supported language gets its own environment with its
catalogue installed, so each (template, language) is compiled once at load
and ``render(name, context, language)`` only picks one. Keep styled elements
out of ``{% trans %}`` blocks: the inliner would add ``style`` attributes to
them, and the message looked up would no longer be the one translated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    select_autoescape,
)
from markupsafe import Markup, escape

from alerts.config import TEMPLATES_DIR, Settings
from alerts.errors import AlertsError, NotFoundError
from alerts.i18n import DEFAULT_LANGUAGE, LANGUAGES, translations

DEFAULT_TEMPLATES_DIR = TEMPLATES_DIR / "email"
STYLESHEET_NAME = "_styles.css"
TEMPLATE_FILES = ("subject.txt", "body.txt", "body.html")
# RFC 5322 allows longer, but mail clients cut subjects near here and spam
# filters frown on very long ones.
MAX_SUBJECT_CHARS = 200
ELLIPSIS = "…"
SAFE_URL_SCHEMES = ("http://", "https://", "mailto:")
UNSAFE_URL_REPLACEMENT = "#"

_JINJA_CONSTRUCT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_RESTORE = re.compile(r"<!--jinja:(\d+)-->|xjinja(\d+)x")
_RAW_TEXT_ELEMENTS = frozenset({"title", "style"})
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


class UnknownTemplateError(NotFoundError):
    """No template set of that name was loaded."""


class TemplateLayoutError(AlertsError, TemplateError):
    """A template breaks the rules that let CSS be inlined safely (see module doc)."""


# --- filters ---------------------------------------------------------------


def _merged_spans(spans: Iterable[Any], length: int) -> list[tuple[int, int]]:
    """Spans clamped to the text, empty and malformed ones dropped, overlaps merged."""
    clean: list[tuple[int, int]] = []
    for span in spans or ():
        try:
            start, end = (int(value) for value in span)
        except (TypeError, ValueError):
            continue
        start, end = max(0, start), min(length, end)
        if start < end:
            clean.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(clean):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _wrap_spans(
    text: str, spans: Iterable[Any], wrap: Callable[[str], str], plain: Callable[[str], str]
) -> list[str]:
    pieces: list[str] = []
    position = 0
    for start, end in _merged_spans(spans, len(text)):
        pieces.append(plain(text[position:start]))
        pieces.append(wrap(text[start:end]))
        position = end
    pieces.append(plain(text[position:]))
    return pieces


def _flatten(text: Any) -> str:
    """Control characters (CR, LF, tab...) as spaces, one for one, so spans keep their offsets."""
    return _CONTROL_CHARS.sub(" ", "" if text is None else str(text))


def highlight(text: Any, spans: Iterable[Any] = ()) -> Markup:
    """HTML: the text escaped, the given character spans wrapped in ``<mark>``."""
    text = _flatten(text)
    pieces = _wrap_spans(
        text, spans, lambda part: Markup("<mark>{}</mark>").format(part), lambda part: escape(part)
    )
    return Markup("").join(pieces)


def highlight_text(text: Any, spans: Iterable[Any] = ()) -> str:
    """Plain text: the given character spans wrapped in ``*...*``."""
    text = _flatten(text)
    return "".join(_wrap_spans(text, spans, lambda part: f"*{part}*", lambda part: part))


def oneline(text: Any) -> str:
    """Line breaks and runs of whitespace collapsed: a title cannot break a layout."""
    return " ".join(_CONTROL_CHARS.sub(" ", "" if text is None else str(text)).split())


def safe_url(url: Any) -> str:
    """The URL if it is http(s) or mailto, else ``#``: a feed cannot plant ``javascript:``."""
    value = oneline(url)
    return value if value.lower().startswith(SAFE_URL_SCHEMES) else UNSAFE_URL_REPLACEMENT


def single_line_subject(subject: str) -> str:
    """One line, no control characters, at most MAX_SUBJECT_CHARS characters."""
    subject = oneline(subject)
    if len(subject) > MAX_SUBJECT_CHARS:
        subject = subject[: MAX_SUBJECT_CHARS - len(ELLIPSIS)].rstrip() + ELLIPSIS
    return subject


# --- inlining at load time -------------------------------------------------


def _placeholder_positions(static_parts: Sequence[str]) -> list[bool]:
    """For each gap between static parts: True when it sits between elements.

    A small scanner over the static markup only, enough for our own templates:
    it knows tags, quoted attribute values, comments and raw-text elements.
    """
    in_content: list[bool] = []
    state = "content"  # content | tag | raw | comment
    quote = ""
    tag_name = ""
    raw_element = ""
    for part in static_parts[:-1]:
        index = 0
        while index < len(part):
            char = part[index]
            if state == "content":
                if part.startswith("<!--", index):
                    state, index = "comment", index + 4
                    continue
                if (
                    char == "<"
                    and index + 1 < len(part)
                    and (part[index + 1].isalpha() or part[index + 1] == "/")
                ):
                    match = re.match(r"</?([a-zA-Z][a-zA-Z0-9]*)", part[index:])
                    closing = part[index + 1] == "/"
                    tag_name = "" if closing or match is None else match.group(1).lower()
                    state, quote = "tag", ""
            elif state == "comment":
                if part.startswith("-->", index):
                    state, index = "content", index + 3
                    continue
            elif state == "tag":
                if quote:
                    quote = "" if char == quote else quote
                elif char in "\"'":
                    quote = char
                elif char == ">":
                    raw_element = tag_name if tag_name in _RAW_TEXT_ELEMENTS else ""
                    state = "raw" if raw_element else "content"
            elif state == "raw" and part.lower().startswith(f"</{raw_element}", index):
                state, tag_name = "tag", ""
            index += 1
        if state == "comment":
            raise TemplateLayoutError("Jinja inside an HTML comment: use {# #} instead")
        in_content.append(state == "content")
    return in_content


def inline_css(source: str, stylesheet: str, template_name: str = "<string>") -> str:
    """The template source with the stylesheet inlined into its static markup."""
    static_parts = _JINJA_CONSTRUCT.split(source)
    constructs = _JINJA_CONSTRUCT.findall(source)
    positions = _placeholder_positions(static_parts)
    pieces = [static_parts[0]]
    for number, between_elements in enumerate(positions):
        pieces.append(f"<!--jinja:{number}-->" if between_elements else f"xjinja{number}x")
        pieces.append(static_parts[number + 1])
    placeholder_source = "".join(pieces)

    inliner = css_inline.CSSInliner(
        inline_style_tags=False,  # the <style> in the layout holds media queries for phones
        keep_style_tags=True,
        load_remote_stylesheets=False,
        extra_css=stylesheet,
    )
    if re.search(r"<html[\s>]", placeholder_source, re.IGNORECASE):
        inlined = inliner.inline(placeholder_source)
    else:
        inlined = inliner.inline_fragment(placeholder_source, stylesheet)

    if inlined.lower().count("<tbody") != placeholder_source.lower().count("<tbody"):
        raise TemplateLayoutError(f"{template_name}: write <tbody> explicitly in every table")
    restored_order: list[int] = []

    def restore(match: re.Match[str]) -> str:
        number = int(match.group(1) or match.group(2))
        restored_order.append(number)
        return str(constructs[number])

    result = _RESTORE.sub(restore, inlined)
    if restored_order != list(range(len(constructs))):
        raise TemplateLayoutError(
            f"{template_name}: the HTML parser moved or dropped Jinja syntax; "
            "keep Jinja between elements or inside attribute values"
        )
    return result


class _InliningLoader(BaseLoader):
    """Loads from a folder; HTML sources come back with the stylesheet inlined."""

    def __init__(self, folder: Path, stylesheet: str) -> None:
        self._files = FileSystemLoader(folder, encoding="utf-8")
        self._stylesheet = stylesheet
        # One environment per language loads the same sources: inline each once.
        self._inlined: dict[str, str] = {}

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        source, filename, uptodate = self._files.get_source(environment, template)
        if template.endswith(".html"):
            inlined = self._inlined.get(template)
            if inlined is None:
                inlined = self._inlined[template] = inline_css(source, self._stylesheet, template)
            source = inlined
        return source, filename, uptodate


# --- the renderer ----------------------------------------------------------

# Distinct rendered fragments kept per renderer; one batch of digests needs a
# few hundred (stories times highlight sets), so this bounds memory, not hits.
FRAGMENT_CACHE_SIZE = 8192


class FragmentCache:
    """Renders a macro once per distinct item and reuses the output.

    A digest batch shows the same story with the same highlights to many
    readers; rendering each entry once per batch instead of once per reader
    is most of the rendering time saved. Templates call ``memo(macro, item)``;
    an item with a ``key`` (the compose step sets one that covers everything
    the entry shows) is cached, any other is rendered every time.
    """

    def __init__(self, size: int = FRAGMENT_CACHE_SIZE) -> None:
        self.size = size
        self._rendered: dict[tuple[str, int, str], str] = {}

    def render(self, macro: Any, item: Mapping[str, Any], *, language: str) -> str:
        key = item.get("key")
        if key is None:
            return macro(item)
        # A macro object is made per render call; its code object lives as long
        # as the compiled template, so it tells the HTML and text macros apart.
        # The language keeps a German fragment out of an English mail.
        slot = (language, id(macro._func.__code__), key)
        cached = self._rendered.get(slot)
        if cached is None:
            if len(self._rendered) >= self.size:
                self._rendered.clear()
            cached = self._rendered[slot] = macro(item)
        return cached  # Markup from an HTML macro, text from a text one


class MailRenderer:
    """Every template set under ``templates_dir``, compiled once per language;
    ``render`` only runs them."""

    def __init__(self, templates_dir: Path = DEFAULT_TEMPLATES_DIR) -> None:
        stylesheet_path = templates_dir / STYLESHEET_NAME
        stylesheet = stylesheet_path.read_text("utf-8") if stylesheet_path.exists() else ""
        loader = _InliningLoader(templates_dir, stylesheet)
        self._fragments = FragmentCache()
        self.environments = {
            language: self._environment(loader, language) for language in LANGUAGES
        }
        self.environment = self.environments[DEFAULT_LANGUAGE]
        folders = [
            folder
            for folder in sorted(templates_dir.iterdir())
            if folder.is_dir() and not folder.name.startswith(("_", "."))
        ]
        for folder in folders:
            missing = [name for name in TEMPLATE_FILES if not (folder / name).is_file()]
            if missing:
                raise TemplateLayoutError(f"email template {folder.name!r} lacks {missing}")
        self._sets: dict[tuple[str, str], tuple[Template, Template, Template]] = {}
        for language, environment in self.environments.items():
            for folder in folders:
                subject, text, html = (
                    environment.get_template(f"{folder.name}/{name}") for name in TEMPLATE_FILES
                )
                self._sets[folder.name, language] = (subject, text, html)
        self._names = sorted(folder.name for folder in folders)

    def _environment(self, loader: BaseLoader, language: str) -> Environment:
        environment = Environment(
            loader=loader,
            autoescape=select_autoescape(
                enabled_extensions=("html",), default_for_string=False, default=False
            ),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
            extensions=["jinja2.ext.i18n"],
        )
        # Messages are one line whatever the template's line breaks (babel.cfg agrees).
        environment.policies["ext.i18n.trimmed"] = True
        environment.install_gettext_translations(  # type: ignore[attr-defined]
            translations(language), newstyle=True
        )
        environment.filters.update(
            highlight=highlight, highlight_text=highlight_text, oneline=oneline, safe_url=safe_url
        )
        environment.globals["memo"] = partial(self._fragments.render, language=language)
        environment.globals["mail_language"] = language
        # The sender's postal address (CAN-SPAM); the send path passes the setting.
        environment.globals["postal_address"] = ""
        return environment

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def render(
        self, name: str, context: Mapping[str, Any], language: str = DEFAULT_LANGUAGE
    ) -> RenderedMail:
        """The mail in ``language`` (English when it is not one we translate)."""
        if language not in LANGUAGES:
            language = DEFAULT_LANGUAGE
        try:
            subject, text, html = self._sets[name, language]
        except KeyError:
            raise UnknownTemplateError(f"no email template set {name!r}") from None
        return RenderedMail(
            subject=single_line_subject(subject.render(context)),
            text=text.render(context),
            html=html.render(context),
        )


def postal_address(settings: Settings) -> str:
    """ALERTS_POSTAL_ADDRESS as one footer line ('' when unset)."""
    return " ".join((settings.postal_address or "").split())
