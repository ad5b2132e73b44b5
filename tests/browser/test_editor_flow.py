"""An editor composes an issue, previews it, sends it now and watches it go, in Chromium."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from alerts.newsletters import SAMPLE_ADDRESS
from tests.browser.conftest import LiveSite
from tests.conftest import wait_until

pytestmark = pytest.mark.browser

EDITOR = "desk.editor@example.org"
PASSWORD = "a long editor password"
SUBJECT = "Transport briefing"
CONFIRMED = ("first.reader@example.org", "second.reader@example.net")
PENDING = "not.yet@example.org"
# The clock ticks every second on the live site; the worker then sends.
SEND_WAIT_MS = 60_000
ARTICLES = (
    ("Tram depot opens in Kutaisi", "A new tram depot opened on the city's east side."),
    ("Night trams return to Tbilisi", "The night tram service runs again from Friday."),
)


def write_articles(folder: Path) -> Path:
    path = folder / "articles.jsonl"
    now = datetime.now(UTC).isoformat()
    rows = [
        {
            "title": title,
            "body": body,
            "url": f"https://news.example/{n}",
            "published": now,
            "language": "en",
            "source": "Browser desk",
        }
        for n, (title, body) in enumerate(ARTICLES)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_editor_composes_previews_sends_and_watches_progress(
    live_site: LiveSite, page: Page, tmp_path: Path
) -> None:
    live_site.alerts(
        "users", "add", EDITOR, "--role", "editor", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    for address in CONFIRMED:
        live_site.alerts("subscribers", "add", address, "--query", "tram", "--confirmed")
    live_site.alerts("subscribers", "add", PENDING, "--query", "tram")
    live_site.alerts("ingest", str(write_articles(tmp_path)))

    page.goto(f"{live_site.url}/editor")
    expect(page).to_have_url(f"{live_site.url}/admin/login?next=/editor")
    page.get_by_label("E-mail address").fill(EDITOR)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Newsletters and sources").click()
    expect(page.get_by_role("heading", name="Newsletter issues")).to_be_visible()

    page.get_by_role("link", name="Compose a new issue").click()
    page.get_by_label("Subject", exact=True).fill(SUBJECT)
    page.get_by_label("Introduction (Markdown)").fill("Good morning, **{email}**.")
    page.locator("#section-0-title").fill("Trams")
    page.locator("#section-0-query").fill("tram")
    expect(page.locator("#placeholders")).to_contain_text("{unsubscribe_url}")
    page.locator("#section-1-kind").select_option("picked")
    page.locator("#section-1-search").fill("Kutaisi")
    expect(page.get_by_role("button", name="Add #1")).to_be_visible()
    page.locator("#section-1-kind").select_option("query")
    page.screenshot(path=str(tmp_path / "editor-compose.png"), full_page=True)
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status")).to_contain_text("Draft saved.")
    expect(page.locator("#issue-status")).to_have_text("draft")

    page.get_by_role("link", name="Preview", exact=True).click()
    # Editors never see a reader's address: {email} shows a stand-in, links are disabled.
    expect(page.locator("#preview-text")).to_contain_text(f"Good morning, **{SAMPLE_ADDRESS}**.")
    expect(page.locator("#preview-notice")).to_contain_text("Links are disabled in previews")
    for address in CONFIRMED:
        expect(page.locator("body")).not_to_contain_text(address)
    frame = page.frame_locator("iframe.preview__html")
    expect(frame.get_by_text(ARTICLES[0][0])).to_be_visible()
    expect(frame.locator("strong", has_text=SAMPLE_ADDRESS)).to_be_visible()
    page.screenshot(path=str(tmp_path / "editor-preview.png"), full_page=True)

    page.get_by_role("link", name="← Issue").click()
    page.get_by_role("button", name="Send now").click()
    expect(page.get_by_role("heading", name=f"Progress: {SUBJECT}")).to_be_visible()
    expect(page.locator("#count-sent")).to_have_text(str(len(CONFIRMED)), timeout=SEND_WAIT_MS)
    expect(page.locator("#issue-status")).to_have_text("sent", timeout=SEND_WAIT_MS)
    page.screenshot(path=str(tmp_path / "editor-progress.png"), full_page=True)

    def issues_in_outbox() -> list[str]:
        return sorted(str(m["To"]) for m in live_site.outbox() if m["Subject"] == SUBJECT)

    wait_until(lambda: len(issues_in_outbox()) >= len(CONFIRMED), 10, "the issue in the outbox")
    assert issues_in_outbox() == sorted(CONFIRMED)
