"""`alerts up` runs web, worker and clock; a registered source gets polled end to end.

Run once on the embedded default (SQLite, filesystem broker) and once on the
production stack (PostgreSQL, Redis, a prefork worker).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import LOOPBACK_NETWORKS, REPO_ROOT, FeedServer, free_port, wait_until

STARTUP_SECONDS = 90
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
REDIS_TEST_DB = 7  # a database of its own, so the test's queue is private


@pytest.fixture(params=["embedded", "production"])
def stack_env(request: pytest.FixtureRequest, isolated_settings: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(
        ALERTS_DATA_DIR=str(isolated_settings),
        ALERTS_CLOCK_TICK_SECONDS="1",
        ALERTS_FETCH_ALLOWED_NETWORKS=LOOPBACK_NETWORKS,  # the feed server is on loopback
        PYTHONPATH=str(REPO_ROOT),
    )
    if request.param == "production":
        base_redis = request.getfixturevalue("redis_url").rsplit("/", 1)[0]
        broker = f"{base_redis}/{REDIS_TEST_DB}"
        redis.Redis.from_url(broker).flushdb()
        env.update(
            ALERTS_DATABASE_URL=request.getfixturevalue("postgres_url"),
            ALERTS_BROKER_URL=broker,
        )
    return env


def alerts(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alerts", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


@pytest.mark.slow
def test_up_serves_status_and_polls_sources(
    stack_env: dict[str, str], feed_server: FeedServer, tmp_path: Path
) -> None:
    feed_url = feed_server.serve("/briefs.xml", (REPO_ROOT / "sample" / "feed.xml").read_bytes())
    alerts(stack_env, "db", "upgrade")
    added = alerts(stack_env, "sources", "add", feed_url, "--name", "Briefs", "--every", "1")
    assert "source 1" in added.stdout

    port = free_port()
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen(
        [sys.executable, "-m", "alerts", "up", "--port", str(port)],
        env=stack_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(base + "/healthz") == "ok", STARTUP_SECONDS, "the web app")
        wait_until(
            lambda: "Batumi port reports record grain shipments" in _get(base + "/status"),
            STARTUP_SECONDS,
            "the clock and worker to poll the source",
        )
        page = _get(base + "/status")
        assert "Briefs" in page
        assert "ok" in page  # the source's last poll status
        listed = alerts(stack_env, "sources", "list", "--json").stdout
        assert '"last_status": "ok"' in listed
        _sign_up(base, "reader@example.org")
        wait_until(
            lambda: _confirmation_text(isolated_outbox(stack_env)) != "",
            STARTUP_SECONDS,
            "the worker to write the confirmation mail",
        )
        # ALERTS_BASE_URL is unset: the link follows --port, not the default 8000.
        assert f"{base}/confirm/" in _confirmation_text(isolated_outbox(stack_env))
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=40)
        finally:
            if up.poll() is None:
                os.killpg(up.pid, signal.SIGKILL)
            log.close()
    assert up.returncode == 0, (tmp_path / "up.log").read_text()[-3000:]


def isolated_outbox(env: dict[str, str]) -> Path:
    return Path(env["ALERTS_DATA_DIR"]) / "outbox"


def _sign_up(base: str, email: str) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        token = CSRF.search(client.get("/").text)
        assert token, "the sign-up form carries a CSRF token"
        form = {"email": email, "query": "grain", "csrf_token": token.group(1)}
        assert client.post("/signup", data=form).status_code == 303


def _confirmation_text(outbox: Path) -> str:
    """The text part of the first mail in the outbox, or "" while there is none."""
    for path in sorted(outbox.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        part = message.get_body(("plain",))
        return part.get_content() if part else ""
    return ""


def _get(url: str) -> str:
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return ""
    return response.text if response.status_code == 200 else ""
