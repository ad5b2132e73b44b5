"""A reader signs up, confirms from the mail, changes a preference and leaves, in Chromium."""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveSite
from tests.conftest import wait_until

pytestmark = pytest.mark.browser

READER = "browser.reader@example.org"
MAIL_WAIT_SECONDS = 60
CONFIRM_LINK = re.compile(r"https?://\S+/confirm/\S+")


def subscriber_row(site: LiveSite) -> dict[str, str]:
    rows = json.loads(site.alerts("subscribers", "list", "--json").stdout)
    [row] = [r for r in rows if r["email"] == READER]
    return dict(row)


def mail_to(site: LiveSite, address: str) -> list[EmailMessage]:
    return [m for m in site.outbox() if m["To"] == address]


def test_sign_up_confirm_change_frequency_and_unsubscribe(
    live_site: LiveSite, page: Page, tmp_path: Path
) -> None:
    page.goto(f"{live_site.url}/")
    expect(page).to_have_title("Sign up for news alerts")
    page.get_by_label("E-mail address").fill(READER)

    query = page.get_by_label("Keywords")
    query.press_sequentially("(referendum")
    check = page.locator("#signup-query-check")
    expect(check).to_contain_text("unbalanced '('")
    expect(query).to_have_attribute("aria-invalid", "true")
    query.fill("")
    query.press_sequentially("referendum")
    expect(check).to_have_text("Looks good.")
    expect(query).not_to_have_attribute("aria-invalid", "true")

    region = page.get_by_label("Region 1")
    region.press_sequentially("Tskhin")
    expect(page.locator('#region-suggestions option[value="Tskhinvali"]')).to_have_count(1)
    region.fill("Tskhinvali")
    page.get_by_label("Daily digest").check()
    browser_zone = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    if page.locator(f'#signup-timezone option[value="{browser_zone}"]').count():
        expect(page.get_by_label("Time zone")).to_have_value(browser_zone)
    page.screenshot(path=str(tmp_path / "signup.png"), full_page=True)

    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    assert subscriber_row(live_site)["status"] == "pending"

    wait_until(lambda: bool(mail_to(live_site, READER)), MAIL_WAIT_SECONDS, "the confirmation")
    [mail] = mail_to(live_site, READER)
    text = mail.get_body(("plain",))
    assert text is not None
    link = CONFIRM_LINK.search(text.get_content())
    assert link, text.get_content()

    page.goto(link.group(0))
    assert subscriber_row(live_site)["status"] == "pending"  # opening the link is not enough
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
    assert subscriber_row(live_site)["status"] == "confirmed"

    page.get_by_role("link", name="Manage my preferences").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your preferences")
    expect(page.get_by_label("Keywords").first).to_have_value("referendum")
    page.get_by_label("Weekly digest").check()
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_contain_text("settings are saved")
    assert subscriber_row(live_site)["frequency"] == "weekly"

    page.get_by_role("button", name="Unsubscribe from everything").click()
    # Leaving ends every link sent so far, so the answer is a page of its own.
    expect(page.get_by_role("heading", level=2)).to_have_text("You are unsubscribed")
    assert subscriber_row(live_site)["status"] == "unsubscribed"
    assert len(mail_to(live_site, READER)) == 1  # the confirmation, and nothing else
