"""The sign-up form's helpers past their rate limit, in Chromium: the preview
says why it stopped, the query check gives no false verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveSite

pytestmark = pytest.mark.browser


@pytest.fixture
def one_call_a_minute(tmp_path: Path) -> None:
    """`alerts up` starts in this folder and reads its .env (listed before live_site)."""
    (tmp_path / ".env").write_text("ALERTS_PREVIEW_PER_MINUTE=1\n")


def test_the_preview_says_when_it_is_rate_limited(
    one_call_a_minute: None, live_site: LiveSite, page: Page
) -> None:
    page.goto(f"{live_site.url}/")
    query = page.get_by_label("Keywords")
    check = page.locator("#signup-query-check")
    status = page.locator("[data-preview-status]")

    query.fill("flood")
    expect(check).to_have_text("Looks good.")
    expect(status).to_have_text("Nothing matched in the last few days; new stories will.")

    query.fill("(flood")  # a verdict from the check would be "unbalanced '('"
    expect(status).to_have_text(
        "Too many preview requests from your network: wait a minute and try again."
    )
    expect(check).to_have_text("")
    expect(query).not_to_have_attribute("aria-invalid", "true")
