"""The site comes up and renders in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import LiveSite

pytestmark = pytest.mark.browser


def test_status_page_renders_in_chromium(live_site: LiveSite, page: Page) -> None:
    page.goto(f"{live_site.url}/status")
    assert page.title() == "Status · alerts"
    assert page.locator("h2").first.inner_text() == "System status"
