"""Every mail template renders, stays safe with hostile input, and has a text part."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from markupsafe import Markup

from alerts.delivery.render import (
    DEFAULT_TEMPLATES_DIR,
    MAX_SUBJECT_CHARS,
    MailRenderer,
    TemplateLayoutError,
    UnknownTemplateError,
    highlight,
    highlight_text,
    inline_css,
    safe_url,
)

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "Subject\r\nBcc: evil@example.org",
]
LINKS = {
    "preferences": "https://news.example.org/preferences/tok",
    "unsubscribe": "https://news.example.org/unsubscribe/tok",
}


def entry(title: str, title_highlights: list[list[int]] | None = None) -> dict[str, Any]:
    return {
        "title": title,
        "url": "https://news.example.org/2024/05/referendum?x=1&y=2",
        "source": "Example Wire",
        "published": "3 May 2024, 09:15",
        "snippet": "The vote on the referendum was put off again.",
        "highlights": [[16, 26]],
        "title_highlights": title_highlights or [],
        "also_reported_by": ["Другая газета", "Zweite Zeitung"],
        "why": "Matched “referendum” in the title and the region South Ossetia",
    }


def contexts() -> dict[str, dict[str, Any]]:
    subscriber = {"email": "reader@example.org"}
    return {
        "confirmation": {
            "subscriber": subscriber,
            "confirm_url": "https://news.example.org/confirm/tok",
            "expires_hours": 48,
            "already_subscribed": False,
            "asked_for": "referendum · Tskhinvali",
            "links": LINKS,
        },
        "alert": {
            "subscriber": subscriber,
            "article": entry("Referendum date set in Tskhinvali", [[0, 10]]),
            "links": LINKS,
        },
        "digest": {
            "subscriber": subscriber,
            "period": "daily",
            "period_label": "Daily digest, 3 May 2024",
            "groups": [
                {
                    "title": "South Ossetia",
                    "entries": [entry("Referendum date set in Tskhinvali", [[0, 10]])],
                },
                {
                    "title": "Абхазия",
                    "entries": [
                        entry("Sukhumi port talks resume"),
                        entry("Ткварчели: новая шахта"),
                    ],
                },
            ],
            "total": 3,
            "more": 2,
            "links": LINKS,
        },
        "newsletter": {
            "subscriber": subscriber,
            "subject": "Caucasus Weekly",
            "preheader": "The week in the region",
            "intro_html": Markup("<p>Good morning from the <strong>desk</strong>.</p>"),
            "intro_text": "Good morning from the **desk**.",
            "groups": [{"title": "Politics", "entries": [entry("Sukhumi port talks resume")]}],
            "links": LINKS,
        },
    }


def hostile(value: Any, payload: str) -> Any:
    """Every string in the context replaced by (or prefixed with) the payload."""
    if isinstance(value, str):
        return payload + value
    if isinstance(value, dict):
        return {key: hostile(item, payload) for key, item in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], int):
        return value
    if isinstance(value, list):
        return [hostile(item, payload) for item in value]
    return value


@pytest.fixture(scope="module")
def renderer() -> MailRenderer:
    return MailRenderer()


def test_every_template_set_is_complete() -> None:
    folders = [p for p in DEFAULT_TEMPLATES_DIR.iterdir() if p.is_dir()]
    assert {p.name for p in folders} >= {"confirmation", "alert", "digest"}
    for folder in folders:
        for name in ("subject.txt", "body.txt", "body.html"):
            assert (folder / name).is_file(), f"{folder.name} lacks {name}"


def test_every_template_renders(renderer: MailRenderer) -> None:
    samples = contexts()
    assert set(renderer.names) == set(samples)
    for name, context in samples.items():
        mail = renderer.render(name, context)
        assert mail.subject
        assert "\n" not in mail.subject
        assert LINKS["unsubscribe"] in mail.text
        assert LINKS["preferences"] in mail.text
        assert f'href="{LINKS["unsubscribe"]}"' in mail.html
        assert "You get this" in mail.text
        assert "You get this" in mail.html
        assert 'style="' in mail.html  # the stylesheet was inlined
        assert "{{" not in mail.html
        assert "{%" not in mail.html


def test_entries_show_in_both_parts(renderer: MailRenderer) -> None:
    mail = renderer.render("digest", contexts()["digest"])
    for title in ("Tskhinvali", "Sukhumi port talks resume", "Ткварчели: новая шахта"):
        assert title in mail.text
        assert title in mail.html
    assert "*Referendum*" in mail.text
    assert "<mark>Referendum</mark>" in mail.html
    assert "x=1&amp;y=2" in mail.html
    assert "2 more articles" in mail.text
    assert "Другая газета" in mail.html


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_values_come_out_inert(renderer: MailRenderer, payload: str) -> None:
    for name, context in contexts().items():
        mail = renderer.render(name, hostile(copy.deepcopy(context), payload))
        assert "<script" not in mail.html
        assert "onerror=" not in mail.html.replace("onerror=alert(1)&gt;", "")
        assert "<img" not in mail.html
        assert "\r" not in mail.subject
        assert "\n" not in mail.subject
        if name != "confirmation":
            assert "Tskhinvali" in mail.text or "Sukhumi" in mail.text


def test_hostile_urls_are_neutralised(renderer: MailRenderer) -> None:
    context = contexts()["alert"]
    context["article"]["url"] = "javascript:alert(1)"
    mail = renderer.render("alert", context)
    assert "javascript:" not in mail.html
    assert "javascript:" not in mail.text


def test_subject_is_one_line_and_capped(renderer: MailRenderer) -> None:
    context = contexts()["alert"]
    context["article"]["title"] = "Long\r\n\ttitle " + "x" * 500
    subject = renderer.render("alert", context).subject
    assert len(subject) <= MAX_SUBJECT_CHARS
    assert subject.startswith("Alert: Long title x")
    assert subject.endswith("…")


def test_unknown_template_and_missing_values_fail_loudly(renderer: MailRenderer) -> None:
    with pytest.raises(UnknownTemplateError):
        renderer.render("nope", {})
    context = contexts()["alert"]
    del context["article"]["why"]
    with pytest.raises(Exception, match="why"):
        renderer.render("alert", context)


def test_highlight_wraps_and_escapes() -> None:
    assert highlight("a <b> c", [[2, 5]]) == "a <mark>&lt;b&gt;</mark> c"
    assert highlight("abcdef", [[1, 3], [2, 5]]) == "a<mark>bcde</mark>f"  # overlapping
    assert highlight("abc", [[-4, 1], [2, 99], [5, 9], [2, 2]]) == "<mark>a</mark>b<mark>c</mark>"
    assert highlight("abc", [["x", 1], [1], None]) == "abc"  # malformed spans ignored
    assert highlight("a\r\nb", [[3, 4]]) == "a  <mark>b</mark>"  # line breaks kept as offsets
    assert highlight_text("vote on referendum", [[8, 18]]) == "vote on *referendum*"
    assert highlight_text("<x>", []) == "<x>"


def test_safe_url() -> None:
    assert safe_url("https://a.example/x") == "https://a.example/x"
    assert safe_url(" JavaScript:alert(1)") == "#"
    assert safe_url("data:text/html,x") == "#"


def test_inlining_keeps_jinja_in_tables_and_attributes() -> None:
    source = (
        '<table class="t"><tbody>{% for row in rows %}<tr><td class="c">'
        '<a href="{{ row.url }}">{{ row.name }}</a></td></tr>{% endfor %}</tbody></table>'
    )
    inlined = inline_css(source, ".c { color: red; }")
    assert "{% for row in rows %}<tr>" in inlined
    assert '<td class="c" style="color: red;">' in inlined
    assert 'href="{{ row.url }}"' in inlined


def test_inlining_refuses_markup_the_parser_would_rearrange() -> None:
    with pytest.raises(TemplateLayoutError, match="tbody"):
        inline_css("<table>{% for r in rows %}<tr><td>x</td></tr>{% endfor %}</table>", "")
    with pytest.raises(TemplateLayoutError, match="moved or dropped"):
        inline_css('<div></div class="{{ dropped }}">', "")


def test_a_set_without_text_part_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "subject.txt").write_text("Hi")
    (tmp_path / "broken" / "body.html").write_text("<p>Hi</p>")
    with pytest.raises(TemplateLayoutError, match=r"body\.txt"):
        MailRenderer(tmp_path)


def test_the_postal_address_is_in_every_mail_when_set(renderer: MailRenderer) -> None:
    address = "Newsroom & Co, 1 Press Row, Springfield"
    for name, context in contexts().items():
        with_address = renderer.render(name, {**context, "postal_address": address})
        assert address in with_address.text, name
        assert "Newsroom &amp; Co, 1 Press Row, Springfield" in with_address.html, name
        without = renderer.render(name, context)
        assert "postal-address" not in without.html, name
        assert "Press Row" not in without.text, name


def visible_text(html: str) -> str:
    """The words a reader sees in the HTML part: no tags, so no href values."""
    return re.sub(r"<[^>]+>", " ", html)


@pytest.mark.parametrize("already_subscribed", [False, True])
def test_a_confirmation_names_the_address_once_in_each_part(
    renderer: MailRenderer, already_subscribed: bool
) -> None:
    """Its lead names the reader's address, so the footer does not repeat it;
    the button is the HTML part's one link to confirm, the text part shows the URL once."""
    context = {**contexts()["confirmation"], "already_subscribed": already_subscribed}
    mail = renderer.render("confirmation", context)
    address, confirm_url = "reader@example.org", context["confirm_url"]
    assert mail.text.count(address) == 1
    assert visible_text(mail.html).count(address) == 1
    assert "This mail went to" not in mail.text + mail.html
    assert mail.text.count(confirm_url) == 1
    assert confirm_url not in visible_text(mail.html)
    assert mail.html.count(f'href="{confirm_url}"') == 1


def test_other_mail_still_says_which_address_it_went_to(renderer: MailRenderer) -> None:
    for name, context in contexts().items():
        if name != "confirmation":
            mail = renderer.render(name, context)
            assert "This mail went to reader@example.org." in mail.text, name
            assert "This mail went to reader@example.org." in mail.html, name
