"""An admin signs in, finds a subscriber and suspends them, in a real browser."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveSite

pytestmark = pytest.mark.browser

ADMIN = "chief@example.org"
PASSWORD = "a long admin password"


def test_admin_finds_and_suspends_a_subscriber(
    live_site: LiveSite, page: Page, tmp_path: Path
) -> None:
    live_site.alerts(
        "users", "add", ADMIN, "--role", "admin", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    live_site.alerts(
        "subscribers", "add", "reader@example.org", "--query", "referendum", "--confirmed"
    )
    live_site.alerts("subscribers", "add", "other@example.net", "--region", "Abkhazia")

    page.goto(f"{live_site.url}/admin/subscribers")
    expect(page).to_have_url(f"{live_site.url}/admin/login?next=/admin/subscribers")
    page.get_by_label("E-mail address").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Subscribers")).to_be_visible()

    page.get_by_label("Address contains").fill("reader")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="reader@example.org")).to_be_visible()
    expect(page.get_by_text("other@example.net")).to_have_count(0)

    page.get_by_role("link", name="reader@example.org").click()
    expect(page.locator("#subscriber-status")).to_have_text("confirmed")
    page.get_by_role("button", name="Suspend").click()
    expect(page.locator("#subscriber-status")).to_have_text("suspended")
    expect(page.get_by_role("status")).to_contain_text("Subscriber suspended")
    expect(page.get_by_role("button", name="Lift suspension")).to_be_visible()
    page.screenshot(path=str(tmp_path / "admin-subscriber.png"), full_page=True)

    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_text("subscriber.suspend")).to_be_visible()
    listed = live_site.alerts("subscribers", "list").stdout
    assert "reader@example.org  suspended" in listed
