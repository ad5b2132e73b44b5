"""What operators see: metrics, health, doctor, logs, queues."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from alerts.alerting import process_new_articles
from alerts.cli import main
from alerts.cli.processes import worker_command
from alerts.config import Settings, get_settings
from alerts.db import Database, utcnow
from alerts.logs import configure_logging, current_task_id
from alerts.matching.service import IndexCache
from alerts.metrics import render_all
from alerts.regions import default_gazetteer
from alerts.web.app import create_app
from tests.conftest import REPO_ROOT, RecordedJobs, wait_until
from workers.celery_app import create_app as create_celery_app

SAMPLE = REPO_ROOT / "sample"


def sample_value(name: str, **labels: str) -> float:
    """The current value of one sample (0 when it was never counted)."""
    for family in text_string_to_metric_families(render_all().decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_metrics_move_when_articles_are_ingested_and_matched(
    database: Database, recorded_jobs: RecordedJobs, capsys: pytest.CaptureFixture[str]
) -> None:
    before_new = sample_value("alerts_ingest_entries_total", outcome="new", source="command line")
    before_dup = sample_value(
        "alerts_ingest_entries_total", outcome="duplicate", source="command line"
    )
    before_matched = sample_value("alerts_match_seconds_count")
    assert main(["subscribers", "add", "r@example.org", "--query", "tram", "--confirmed"]) == 0
    assert main(["ingest", str(SAMPLE / "articles.jsonl")]) == 0
    assert main(["ingest", str(SAMPLE / "articles.jsonl")]) == 0
    after_new = sample_value("alerts_ingest_entries_total", outcome="new", source="command line")
    after_dup = sample_value(
        "alerts_ingest_entries_total", outcome="duplicate", source="command line"
    )
    assert (after_new - before_new, after_dup - before_dup) == (4, 4)

    ids = [i for job in recorded_jobs.named("match_articles") for i in job["article_ids"]]
    with database.session_scope() as session:
        cache = IndexCache(default_gazetteer(), get_settings())
        process_new_articles(session, ids, cache, get_settings(), utcnow())
    assert sample_value("alerts_match_seconds_count") - before_matched == 4


METRICS_TOKEN = "scrape-token-for-the-tests-0123456789"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def test_metrics_endpoint_and_readiness_on_the_embedded_default(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_METRICS_TOKEN", METRICS_TOKEN)
    get_settings.cache_clear()
    client = TestClient(create_app())
    page = client.get("/metrics", headers=SCRAPER)
    assert page.status_code == 200
    names = {family.name for family in text_string_to_metric_families(page.text)}
    assert "alerts_queue_depth" in names
    ready = client.get("/readyz", headers=SCRAPER)
    assert ready.status_code == 200
    assert set(ready.json()) == {"database", "broker", "smtp"}
    assert client.get("/healthz").text == "ok"


def test_readiness_fails_when_the_broker_is_down(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("ALERTS_METRICS_TOKEN", METRICS_TOKEN)
    get_settings.cache_clear()
    client = TestClient(create_app())
    ready = client.get("/readyz", headers=SCRAPER)
    assert ready.status_code == 503
    assert ready.json()["broker"]["ok"] is False
    assert ready.json()["database"]["ok"] is True
    # A stranger learns that it is not ready, not which service or why.
    anonymous = client.get("/readyz")
    assert anonymous.status_code == 503
    assert anonymous.json() == {"status": "unavailable"}


def test_doctor_names_a_stopped_redis_and_a_wrong_database_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor"]) == 1
    assert (
        "FAIL  migrations: RuntimeError: the schema is behind the code: run `alerts db upgrade`"
        in capsys.readouterr().out
    )
    assert main(["db", "upgrade"]) == 0
    assert main(["doctor"]) == 0
    assert "all good" in capsys.readouterr().out

    monkeypatch.setenv("ALERTS_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("ALERTS_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    monkeypatch.setenv("ALERTS_SMTP_URL", "smtp://127.0.0.1:1")
    get_settings.cache_clear()
    assert main(["doctor"]) == 1
    report = capsys.readouterr().out
    assert "FAIL  database: ConnectionError: cannot reach the database at" in report
    assert "FAIL  broker: ConnectionError: Redis at redis://127.0.0.1:1/0 does not answer" in report
    assert "FAIL  smtp: ConnectionError: the SMTP relay at 127.0.0.1:1 does not answer" in report
    # A relay makes the development defaults (http, alerts@localhost) errors too.
    assert "FAIL  sender: ALERTS_BASE_URL 'http://127.0.0.1:8000' is plain http" in report
    assert "FAIL  sender: ALERTS_MAIL_FROM 'Alerts <alerts@localhost>' has the domain" in report
    assert "5 problem(s): database, broker, smtp, sender" in report
    assert "DNS records to publish" in report
    assert '_dmarc.localhost. IN TXT "v=DMARC1; p=none;' in report


def test_json_logs_carry_ids_and_never_an_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(log_format="json"), "worker")
    token = current_task_id.set("task-123")
    try:
        logging.getLogger("alerts.test").info(
            "bounced for reader@example.org", extra={"subscriber_id": 7, "delivery_id": 9}
        )
    finally:
        current_task_id.reset(token)
        logging.getLogger().handlers.clear()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["task_id"] == "task-123"
    assert (line["subscriber_id"], line["delivery_id"]) == (7, 9)
    assert line["process"] == "worker"
    assert "reader@example.org" not in line["message"]
    assert line["message"].startswith("bounced for <email:")


def test_each_kind_of_work_has_its_own_queue_and_workers_take_all_by_default() -> None:
    routes = create_celery_app(get_settings()).conf.task_routes
    assert routes["alerts.send_deliveries"] == {"queue": "send"}
    assert routes["alerts.send_alerts"] == {"queue": "alerts"}
    assert routes["alerts.match_articles"] == {"queue": "match"}
    assert routes["alerts.poll_source"] == {"queue": "ingest"}
    command = worker_command(
        argparse.Namespace(pool=None, concurrency=None, queues=None, max_memory_per_child=None)
    )
    assert command[command.index("--queues") + 1] == "alerts,ingest,match,send,webhooks"
    only_send = worker_command(
        argparse.Namespace(pool=None, concurrency=None, queues="send", max_memory_per_child=300)
    )
    assert only_send[only_send.index("--queues") + 1] == "send"
    assert only_send[only_send.index("--max-memory-per-child") + 1] == str(300 * 1024)


def test_a_threaded_worker_runs_with_few_malloc_arenas(isolated_settings: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    command = [sys.executable, "-m", "alerts", "worker", "--pool", "threads", "--queues", "send"]
    worker = subprocess.Popen(command, env=environment, cwd=REPO_ROOT)
    try:
        cmdline = Path(f"/proc/{worker.pid}/cmdline")
        wait_until(lambda: b"celery" in cmdline.read_bytes(), 30, "the worker to exec Celery")
        variables = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
        assert b"MALLOC_ARENA_MAX=2" in variables
    finally:
        worker.terminate()
        worker.wait(timeout=30)
