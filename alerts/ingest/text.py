"""Plain-text helpers shared by every format: HTML to text, language, fingerprint.

Every parser funnels its titles and bodies through these functions so that
the same story arriving as RSS, JSON or a web page ends up as the same text.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from functools import lru_cache
from html.parser import HTMLParser
from typing import Any

from alerts.text.analysis import normalise_language

PARAGRAPH_SEPARATOR = "\n\n"

# Tags whose start or end always ends the current paragraph.
BLOCK_TAGS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "caption",
        "dd",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "ul",
    }
)
# Cells sit side by side; a space keeps their words apart without a paragraph break.
INLINE_SEPARATOR_TAGS = frozenset({"td", "th"})
# Their content is never reader-visible article text.
SKIPPED_TAGS = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "head",
        "title",
        "iframe",
        "object",
        "svg",
        "math",
        "select",
        "button",
    }
)

TAG_PATTERN = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>")
ENTITY_PATTERN = re.compile(r"&(?:#\d+|#x[0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")
WHITESPACE = re.compile(r"\s+")
BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
# Feeds that escape their HTML twice need a second pass; more is never seen.
MAX_UNESCAPE_PASSES = 2

# Below this many letters py3langid guesses more than it knows.
MIN_LETTERS_FOR_DETECTION = 20
# Softmax confidence under which a detected language is not trusted.
MIN_DETECTION_CONFIDENCE = 0.5
# Language detection gains nothing from more than a few thousand characters.
DETECTION_SAMPLE_CHARS = 5000

FINGERPRINT_WORD = re.compile(r"\w+")
FINGERPRINT_FIELD_SEPARATOR = "\x1f"


class _TextExtractor(HTMLParser):
    """Collects visible text, starting a new paragraph at every block boundary."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._current: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED_TAGS:
            self._skip_depth += 1
        elif tag in BLOCK_TAGS:
            self._flush()
        elif tag in INLINE_SEPARATOR_TAGS:
            self._current.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # A self-closed <script/> opens nothing, so it must not raise the skip depth.
        if tag in BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._current.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        paragraph = collapse_whitespace("".join(self._current))
        if paragraph:
            self.paragraphs.append(paragraph)
        self._current = []


def collapse_whitespace(text: str) -> str:
    """One space between words, none at the ends; non-breaking spaces count as spaces."""
    return WHITESPACE.sub(" ", text.replace("\u00a0", " ")).strip()


def looks_like_html(text: str) -> bool:
    """True when the string carries tags or entities that need decoding."""
    return bool(TAG_PATTERN.search(text) or ENTITY_PATTERN.search(text))


def _extract_paragraphs(markup: str) -> list[str]:
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    return parser.paragraphs


def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment or page, paragraphs separated by a blank line.

    Scripts, styles and other invisible content are dropped. A second pass
    handles feeds that escape their HTML twice (``&lt;p&gt;``), which would
    otherwise leave literal tags in the text.
    """
    paragraphs = _extract_paragraphs(markup)
    for _ in range(MAX_UNESCAPE_PASSES - 1):
        joined = PARAGRAPH_SEPARATOR.join(paragraphs)
        if not looks_like_html(joined):
            break
        paragraphs = _extract_paragraphs(joined)
    return PARAGRAPH_SEPARATOR.join(paragraphs)


def html_to_line(markup: str) -> str:
    """A title, author or tag as one plain line: tags stripped, entities decoded."""
    return collapse_whitespace(html_to_text(markup).replace(PARAGRAPH_SEPARATOR, " "))


def plain_text_paragraphs(text: str) -> str:
    """Normalise plain text: paragraphs split at blank lines, whitespace collapsed inside."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = (collapse_whitespace(chunk) for chunk in BLANK_LINE.split(text))
    return PARAGRAPH_SEPARATOR.join(p for p in paragraphs if p)


def body_to_text(value: str, *, is_html: bool | None = None) -> str:
    """Body text from either HTML or plain text; sniffs when the caller cannot tell."""
    if is_html is None:
        is_html = looks_like_html(value)
    return html_to_text(value) if is_html else plain_text_paragraphs(value)


@lru_cache(maxsize=1)
def _identifier() -> Any:
    """The py3langid model, loaded once per process (it takes a moment to unpack)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language, or None when the text is too short or unclear."""
    sample = text[:DETECTION_SAMPLE_CHARS]
    if sum(ch.isalpha() for ch in sample) < MIN_LETTERS_FOR_DETECTION:
        return None
    language, confidence = _identifier().classify(sample)
    if confidence < MIN_DETECTION_CONFIDENCE:
        return None
    return normalise_language(str(language))


def _fold(text: str) -> str:
    """Words only, case- and accent-folded, so markup, spacing and quotes do not matter."""
    if looks_like_html(text):
        text = html_to_text(text)
    text = html.unescape(text)
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(FINGERPRINT_WORD.findall(stripped))


def content_fingerprint(title: str, body: str) -> str:
    """Stable SHA-256 hex digest of the folded title and body.

    The same story syndicated through two feeds hashes the same even when one
    wraps it in different markup, whitespace, letter case or typographic quotes.
    """
    folded = _fold(title) + FINGERPRINT_FIELD_SEPARATOR + _fold(body)
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()
