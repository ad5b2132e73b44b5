"""Browser tests: the real app served on loopback, driven by Debian's Chromium.

Playwright's own browser download needs the internet, so the test launches
/usr/bin/chromium (installed by `make test`); without it the tests skip, or
fail under ALERTS_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import REPO_ROOT, free_port, service_missing, wait_until

CHROMIUM = Path("/usr/lib/chromium/chromium")  # /usr/bin/chromium is a wrapper script
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
STARTUP_SECONDS = 60


@dataclass
class LiveSite:
    """The web app in its own process, on the embedded defaults of a fresh data dir."""

    url: str
    data_dir: Path
    env: dict[str, str]

    def alerts(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run an ``alerts`` command against the same data dir."""
        return subprocess.run(
            [sys.executable, "-m", "alerts", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )

    def outbox(self) -> list[EmailMessage]:
        """Mail written to the outbox, oldest first."""
        folder = self.data_dir / "outbox"
        files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime)
        messages = []
        for path in files:
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(message, EmailMessage)
            messages.append(message)
        return messages


@pytest.fixture
def live_site(tmp_path: Path) -> Iterator[LiveSite]:
    """`alerts up` (web, worker, clock) on a free port with its own data dir."""
    port = free_port()
    data_dir = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(
        ALERTS_DATA_DIR=str(data_dir),
        ALERTS_BASE_URL=f"http://127.0.0.1:{port}",
        ALERTS_CLOCK_TICK_SECONDS="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    with (tmp_path / "site.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "alerts", "up", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    site = LiveSite(f"http://127.0.0.1:{port}", data_dir, env)

    def up() -> bool:
        try:
            return httpx.get(f"{site.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, STARTUP_SECONDS, "the site to start")
        yield site
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        service_missing(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    home = tmp_path_factory.mktemp("chromium-home")
    os.environ["HOME"] = str(home)  # Chromium writes its profile under $HOME/.config
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    yield page
    page.screenshot(path=str(tmp_path / "last-page.png"))
    context.close()
