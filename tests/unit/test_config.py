"""Settings come from ALERTS_* variables, with defaults for the embedded system."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.config import Settings


def test_defaults_point_into_the_data_dir(isolated_settings: Path) -> None:
    settings = Settings()
    assert settings.data_dir == isolated_settings
    assert (
        settings.resolved_database_url == f"sqlite:///{(isolated_settings / 'alerts.db').resolve()}"
    )
    assert settings.resolved_broker_url == "filesystem://"
    assert settings.resolved_outbox_dir == (isolated_settings / "outbox").resolve()
    assert settings.smtp_url is None


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTS_DATABASE_URL", "postgresql+psycopg://db.test/alerts")
    monkeypatch.setenv("ALERTS_BROKER_URL", "redis://cache.test:6379/0")
    monkeypatch.setenv("ALERTS_INGEST_MAX_ENTRIES", "12")
    settings = Settings()
    assert settings.resolved_database_url == "postgresql+psycopg://db.test/alerts"
    assert settings.resolved_broker_url == "redis://cache.test:6379/0"
    assert settings.ingest_max_entries == 12


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ALERTS_BASE_URL=https://alerts.example.org\n")
    assert Settings().base_url == "https://alerts.example.org"


def test_secret_key_is_generated_once_and_kept(isolated_settings: Path) -> None:
    first = Settings().resolved_secret_key
    second = Settings().resolved_secret_key
    assert first == second
    assert len(first) >= 40
    assert (isolated_settings / "secret_key").stat().st_mode & 0o077 == 0


def test_configured_secret_key_wins(
    monkeypatch: pytest.MonkeyPatch, isolated_settings: Path
) -> None:
    monkeypatch.setenv("ALERTS_SECRET_KEY", "configured")
    assert Settings().resolved_secret_key == "configured"
    assert not (isolated_settings / "secret_key").exists()
