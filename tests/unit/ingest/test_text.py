"""HTML cleanup, language detection and the content fingerprint."""

from __future__ import annotations

from alerts.ingest import content_fingerprint, detect_language, html_to_text
from alerts.ingest.text import html_to_line, plain_text_paragraphs


def test_html_to_text_keeps_paragraphs_and_drops_scripts() -> None:
    markup = (
        "<div><p>First   paragraph&nbsp;here.</p><script>alert('x')</script>"
        "<style>p{color:red}</style><p>Second<br>line &amp; more</p></div>"
    )
    assert html_to_text(markup) == "First paragraph here.\n\nSecond\n\nline & more"


def test_double_escaped_markup_leaves_no_tags() -> None:
    assert html_to_line("&lt;b&gt;Bold&lt;/b&gt; claim") == "Bold claim"


def test_plain_text_paragraphs_split_at_blank_lines() -> None:
    text = "One line\ncontinues here.\n\n\n  Second   paragraph. \r\n"
    assert plain_text_paragraphs(text) == "One line continues here.\n\nSecond paragraph."


def test_fingerprint_ignores_markup_whitespace_and_case() -> None:
    plain = content_fingerprint(
        "Dam repairs finished", "The dam is safe again.\n\nWork took a year."
    )
    marked_up = content_fingerprint(
        "  DAM repairs   finished ",
        "<p>The <b>dam</b> is safe again.</p>\n<p>Work took a&nbsp;year.</p>",
    )
    assert plain == marked_up
    assert len(plain) == 64


def test_fingerprint_differs_for_different_stories() -> None:
    assert content_fingerprint("Dam repairs finished", "Safe.") != content_fingerprint(
        "Dam repairs delayed", "Safe."
    )


def test_fingerprint_keeps_title_and_body_apart() -> None:
    assert content_fingerprint("a b", "c") != content_fingerprint("a", "b c")


def test_detect_language_en_de_ru() -> None:
    english = "The town council agreed on Monday to repair the old harbour wall."
    german = "Der Gemeinderat hat am Montag beschlossen, die alte Hafenmauer zu reparieren."
    russian = "Городской совет в понедельник решил отремонтировать старую стену гавани."
    assert detect_language(english) == "en"
    assert detect_language(german) == "de"
    assert detect_language(russian) == "ru"


def test_detect_language_refuses_short_text() -> None:
    assert detect_language("Tbilisi") is None
    assert detect_language("") is None
