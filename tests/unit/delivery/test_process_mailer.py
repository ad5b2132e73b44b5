"""One mailer per process: built once, rebuilt for other settings, closed by the entry points."""

from __future__ import annotations

from alerts import mailer as mailers
from alerts.cli import main
from alerts.config import Settings, get_settings
from alerts.delivery.senders import RecordingSender


def recording(settings: Settings) -> RecordingSender:
    """Swap the process mailer's sender for one whose closing can be seen."""
    sender = RecordingSender()
    mailers.process_mailer(settings).sender = sender
    return sender


def test_the_process_keeps_one_mailer_and_one_renderer() -> None:
    settings = get_settings()
    first = mailers.process_mailer(settings)
    assert mailers.process_mailer(settings) is first
    assert first.renderer is mailers.process_renderer()
    assert mailers.build_mailer(settings).renderer is first.renderer


def test_other_settings_close_the_old_mailer() -> None:
    old = recording(get_settings())
    get_settings.cache_clear()
    new = mailers.process_mailer(get_settings())
    assert old.closed
    assert new.sender is not old


def test_the_command_line_closes_the_mailer_when_it_ends() -> None:
    sender = recording(get_settings())
    assert main(["regions", "resolve", "Georgia"]) == 0
    assert sender.closed
    assert mailers.process_mailer(get_settings()).sender is not sender


def test_the_web_app_closes_the_mailer_at_shutdown() -> None:
    from fastapi.testclient import TestClient

    from alerts.web.app import create_app

    sender = recording(get_settings())
    with TestClient(create_app()) as client:
        assert client.get("/healthz").status_code == 200
        assert not sender.closed
    assert sender.closed
