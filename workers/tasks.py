"""Thin tasks: load by id, call one domain function. The base task commits."""

from __future__ import annotations

from alerts.config import get_settings
from alerts.db import utcnow
from alerts.ingest.service import limits_from, poll_source
from workers.base import DatabaseTask
from workers.celery_app import app


@app.task(name="alerts.poll_source", base=DatabaseTask, bind=True)
def poll_source_task(self: DatabaseTask, source_id: int) -> None:
    with self.session() as session:
        poll_source(session, source_id, utcnow(), limits_from(get_settings()))
