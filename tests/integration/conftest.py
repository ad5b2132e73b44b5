"""Fixtures of the integration tests: the real SMTP server every mail goes to,
and an empty database for migrations to start from."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from alerts.db import make_engine
from tests.conftest import POSTGRES_ADMIN_URL, service_missing
from tests.integration.smtp_server import SmtpTestServer


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    """aiosmtpd on loopback for this test; ``smtp_server.sender()`` speaks SMTP to
    it and ``smtp_server.received()`` reads back what it accepted."""
    server = SmtpTestServer().start()
    try:
        yield server
    finally:
        # Clients first: a server stopped under an open connection leaves it to the GC.
        server.close_senders()
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database with no schema at all."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        engine.dispose()
        return
    name = f"alerts_migrate_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        service_missing(f"PostgreSQL at {POSTGRES_ADMIN_URL}: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    engine = make_engine(f"{base}/{name}")
    yield engine
    engine.dispose()
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
