"""An admin turns on two-factor sign-in from their account page, signs out, and
signs in again with the password and a code from "their phone" (pyotp here),
in a real browser."""

from __future__ import annotations

import time
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveSite

pytestmark = pytest.mark.browser

ADMIN = "chief@example.org"
PASSWORD = "a long admin password"
STEP_SECONDS = 30


def test_enrol_from_the_account_page_and_sign_in_with_a_code(
    live_site: LiveSite, page: Page, tmp_path: Path
) -> None:
    live_site.alerts(
        "users", "add", ADMIN, "--role", "admin", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    page.goto(f"{live_site.url}/admin/login")
    page.get_by_label("E-mail address").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_site.url}/admin")

    page.get_by_role("link", name="Account").click()
    page.get_by_role("link", name="Set up two-factor sign-in").click()
    expect(page.get_by_role("heading", name="Set up two-factor sign-in")).to_be_visible()
    expect(page.locator(".two-factor__qr svg")).to_be_visible()
    # What a person would type into the app by hand, read off the page.
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    phone = pyotp.TOTP(secret)
    page.screenshot(path=str(tmp_path / "enrol.png"), full_page=True)
    page.get_by_label("Code from the app").fill(phone.now())
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.get_by_role("heading", name="Two-factor sign-in is on")).to_be_visible()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.get_by_role("link", name="I have kept them; continue").click()
    expect(page.locator("#two-factor")).to_contain_text("10 of 10 recovery codes left")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_site.url}/admin/login")
    page.get_by_label("E-mail address").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()
    # The code that confirmed enrolment is spent; the next step's code is in the window.
    page.get_by_label("Code").fill(phone.at(time.time() + STEP_SECONDS))
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(f"{live_site.url}/admin")
    expect(page.get_by_role("link", name="Audit log")).to_be_visible()

    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_text("user.2fa_enrol")).to_be_visible()
    page.screenshot(path=str(tmp_path / "signed-in.png"), full_page=True)
