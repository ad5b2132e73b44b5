"""An admin reads the outbox in Chromium: the mail framed, its text links live; strangers
are sent to the login page."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveSite
from tests.conftest import wait_until

pytestmark = pytest.mark.browser

ADMIN = "chief@example.org"
PASSWORD = "a long admin password"
READER = "outbox.reader@example.org"
MAIL_WAIT_SECONDS = 60


def test_only_a_signed_in_admin_reads_the_outbox(
    live_site: LiveSite, page: Page, tmp_path: Path
) -> None:
    live_site.alerts(
        "users", "add", ADMIN, "--role", "admin", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    page.goto(f"{live_site.url}/")
    expect(page.get_by_role("link", name="Outbox")).to_have_count(0)  # not in the navigation
    page.get_by_label("E-mail address").fill(READER)
    page.get_by_label("Keywords").fill("referendum")
    page.get_by_role("button", name="Subscribe").click()
    wait_until(
        lambda: any(m["To"] == READER for m in live_site.outbox()),
        MAIL_WAIT_SECONDS,
        "the confirmation mail in the outbox",
    )

    page.goto(f"{live_site.url}/outbox")
    expect(page).to_have_url(f"{live_site.url}/admin/login?next=/outbox")
    expect(page.get_by_text(READER)).to_have_count(0)
    page.get_by_label("E-mail address").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.get_by_role("link", name="Outbox").click()
    expect(page.get_by_role("heading", name="Outbox")).to_be_visible()
    page.get_by_role("link", name="Please confirm your news alerts subscription").click()
    frame = page.frame_locator("iframe.preview__html")
    expect(frame.get_by_role("link", name="Confirm my subscription")).to_be_visible()
    link = page.locator("#mail-text a[href*='/confirm/']")
    expect(link).to_have_count(1)
    href = link.get_attribute("href")
    assert href is not None
    assert href.startswith(f"{live_site.url}/confirm/")
    page.screenshot(path=str(tmp_path / "outbox-message.png"), full_page=True)

    page.goto(href)
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()
