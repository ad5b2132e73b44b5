"""Prometheus metrics, counted in every process and read at ``/metrics``.

prometheus-client's multiprocess mode keeps each process's values in files
under one folder; the web app's ``/metrics`` adds them up, so the figures of
the workers and the clock on the same machine appear there too. A worker on
another machine serves its own machine's figures with ``alerts worker
--metrics-port``.
"""

from __future__ import annotations

import hmac
import os
import shutil
import sys
from http.server import ThreadingHTTPServer
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.exposition import MetricsHandler
from prometheus_client.parser import text_string_to_metric_families

from alerts.config import get_settings

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir() -> Path:
    return (get_settings().data_dir / "metrics").resolve()


# Handed to the library, not read back by us: settings stay the one reader. Set,
# not defaulted: a process started by another (alerts up, a test) inherits its
# environment, but keeps its metrics with its own data dir.
os.environ[MULTIPROCESS_ENV] = str(metrics_dir())
Path(os.environ[MULTIPROCESS_ENV]).mkdir(parents=True, exist_ok=True)
# The library chose its value store when it was first imported, perhaps before
# the folder was known: it chooses again, so the metrics below live in files.
values.ValueClass = values.get_value_class()

INGEST_ENTRIES = Counter(
    "alerts_ingest_entries_total", "Entries read from sources, by outcome.", ["source", "outcome"]
)
INGEST_FAILURES = Counter(
    "alerts_ingest_source_failures_total", "Sources that could not be read.", ["source"]
)
MATCH_SECONDS = Histogram(
    "alerts_match_seconds",
    "Time to analyse and match one article against every interest.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
MATCHES_PER_ARTICLE = Histogram(
    "alerts_matches_per_article",
    "Interests one article matched.",
    buckets=(0, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000),
)
INTERESTS_SKIPPED = Gauge(
    "alerts_interests_skipped",
    "Stored interests a matching worker cannot parse or file, and so skips.",
    multiprocess_mode="max",
)
PREVIEW_ARTICLES = Counter(
    "alerts_preview_articles_total", "Stored articles analysed to preview an interest."
)
DELIVERIES = Counter(
    "alerts_deliveries_total", "Delivery outcomes, by kind and state.", ["kind", "state"]
)
SMTP_RESPONSES = Counter(
    "alerts_smtp_responses_total", "Relay answers by class (2xx, 4xx, 5xx, none).", ["class"]
)
DIGEST_RUN_SECONDS = Histogram(
    "alerts_digest_run_seconds", "Time the clock spent planning due digests in one tick."
)
LEADER = Gauge(
    "alerts_scheduler_leader",
    "1 while this clock holds the leader lease.",
    multiprocess_mode="max",
)
QUEUE_DEPTH = Gauge(
    "alerts_queue_depth", "Tasks waiting in each broker queue.", ["queue"], multiprocess_mode="max"
)


def smtp_class(code: int | None) -> str:
    if not code:
        return "none"
    return f"{code // 100}xx"


def render_all() -> bytes:
    """Every process's figures on this machine, in the text exposition format."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=os.environ[MULTIPROCESS_ENV])
    return generate_latest(registry)


# Counters shown on the admin dashboard, summed over their labels but the listed one.
DASHBOARD_COUNTERS = {
    "alerts_ingest_entries_total": "outcome",
    "alerts_deliveries_total": "state",
    "alerts_smtp_responses_total": "class",
}


def totals() -> dict[str, float]:
    """A few headline figures from the same files ``/metrics`` reads, for the dashboard."""
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(render_all().decode()):
        for sample in family.samples:
            label = DASHBOARD_COUNTERS.get(sample.name)
            if label is None:
                continue
            key = f"{family.name.removeprefix('alerts_')}: {sample.labels.get(label, '')}"
            figures[key] = figures.get(key, 0.0) + sample.value
    return figures


def reset() -> None:
    """Start from zero (``alerts up`` at start): files of dead processes would linger."""
    folder = Path(os.environ[MULTIPROCESS_ENV])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def serve(port: int) -> None:
    """Serve this machine's figures on ``port`` (``alerts worker --metrics-port``).

    On ``ALERTS_METRICS_BIND`` (loopback unless the operator opens it), and,
    when ``ALERTS_METRICS_TOKEN`` is set, only to ``Authorization: Bearer <token>``.
    """
    settings = get_settings()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=os.environ[MULTIPROCESS_ENV])
    handler = MetricsHandler.factory(registry)
    if settings.metrics_token:
        handler = _token_guarded(handler, settings.metrics_token)
    ThreadingHTTPServer((settings.metrics_bind, port), handler).serve_forever()


def _token_guarded(handler: type[MetricsHandler], token: str) -> type[MetricsHandler]:
    """The library's handler, answering 401 unless the request carries the bearer token."""

    class TokenGuarded(handler):  # type: ignore[valid-type, misc]
        def do_GET(self) -> None:  # noqa: N802 - http.server's method name
            scheme, _, sent = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                sent.strip().encode(), token.encode()
            ):
                super().do_GET()
                return
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="metrics"')
            self.send_header("Content-Length", "0")
            self.end_headers()

    return TokenGuarded


if __name__ == "__main__":
    serve(int(sys.argv[1]))
