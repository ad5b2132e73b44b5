"""Settings: the one place that reads the environment.

Every setting is an ``ALERTS_*`` environment variable (or a line in ``.env``).
The defaults run the whole system on one machine with nothing installed:
SQLite in the data dir, Celery over kombu's filesystem transport, and mail
written as ``.eml`` files into an outbox folder.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret
# Mail and page templates ship beside the package, in the repository's templates/.
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
SECRET_KEY_BYTES = 32
# Slack above the longest a live send can keep a row in 'sending' (scheduling,
# a slow commit), so the sweeper never takes a row from a worker still at it.
STUCK_MARGIN_SECONDS = 30
# A requeue bound below this would re-queue tasks still on their way to a worker.
MIN_REQUEUE_AFTER_SECONDS = 10


class Settings(BaseSettings):
    """Typed settings; each field documents its default."""

    model_config = SettingsConfigDict(
        env_prefix="ALERTS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        default=Path("./var"),
        description="Folder for the embedded database, broker, outbox and secret key.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: sqlite:///<data_dir>/alerts.db. "
        "Production: postgresql+psycopg://user@host/db.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker URL. Default: filesystem://, kept under <data_dir>/broker "
        "(no server needed). Production: redis://host:6379/0.",
    )
    smtp_url: str | None = Field(
        default=None,
        description="smtp://user:pass@host:port (smtps:// for TLS, ?starttls=1 for STARTTLS). "
        "Unset: each message is written as an .eml file into outbox_dir.",
    )
    outbox_dir: Path | None = Field(
        default=None,
        description="Where mail goes when smtp_url is unset. Default: <data_dir>/outbox.",
    )
    base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Public URL of the web app, used in links inside mail.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Signs links and sessions. Unset: generated once and kept in "
        "<data_dir>/secret_key.",
    )
    mail_from: str = Field(
        default="Alerts <alerts@localhost>", description="From header of every mail."
    )
    dkim_selector: str | None = Field(default=None, description="DKIM selector; unset: no DKIM.")
    dkim_domain: str | None = Field(default=None, description="DKIM signing domain (d=).")
    dkim_private_key_file: Path | None = Field(
        default=None, description="PEM private key file used for DKIM signing."
    )

    # Ingest limits: over-limit input is rejected with a reason, never truncated.
    ingest_max_source_bytes: int = Field(
        default=20 * 1024 * 1024, description="Largest feed or page read, in bytes."
    )
    ingest_max_entries: int = Field(default=5000, description="Most entries taken from one source.")
    ingest_max_title_chars: int = Field(default=1000, description="Longest title accepted.")
    ingest_max_body_chars: int = Field(
        default=200_000, description="Longest article text accepted."
    )
    ingest_fetch_timeout: float = Field(
        default=20.0, description="Seconds before a fetch gives up."
    )
    source_default_poll_minutes: int = Field(
        default=15, description="Poll interval for sources registered without one."
    )

    # Query language limits (see alerts.matching.query).
    query_max_length: int = Field(default=500, description="Longest keyword query, in characters.")
    query_max_terms: int = Field(default=32, description="Most terms in one keyword query.")

    # Delivery.
    alert_max_per_hour: int = Field(
        default=6, description="Immediate alerts per subscriber per hour; the rest join the digest."
    )
    digest_max_articles: int = Field(default=30, description="Most articles in one digest.")
    digest_group_by: str = Field(
        default="region", description="Digest sections: 'region' or 'interest'."
    )
    send_batch_size: int = Field(
        default=200, description="Deliveries per send task (never fewer than 100 when there are)."
    )
    smtp_pool_size: int = Field(default=4, description="SMTP connections kept open per worker.")
    smtp_rate_per_second: float | None = Field(
        default=None,
        description="Most messages per second to the relay, per worker; unset: no cap.",
    )
    smtp_timeout_seconds: float = Field(
        default=30.0,
        description="Seconds an SMTP connect or reply may take before the send counts as a "
        "temporary failure; also what the sweeper's bounds are derived from.",
    )
    send_claim_size: int = Field(
        default=1,
        ge=1,
        description="Deliveries a send task claims ('sending') at once, right before handing "
        "them to SMTP; each outcome is recorded as its reply comes. A crash re-sends at most "
        "the one message in flight per connection; the rest of its claim waits for the sweeper.",
    )
    delivery_stuck_after_seconds: int | None = Field(
        default=None,
        description="A delivery 'sending' this long belonged to a dead worker and is re-queued. "
        "Unset: longer than one claim can take, "
        "send_claim_size x 2 x smtp_timeout_seconds + 30 (90 s with the defaults).",
    )
    delivery_requeue_after_seconds: int | None = Field(
        default=None,
        description="A queued delivery untouched this long lost its task and is queued again. "
        "Unset: clock_tick_seconds (60 s with the defaults), at least 10.",
    )
    confirmation_valid_hours: int = Field(
        default=48, description="How long a double opt-in confirmation link works."
    )

    # The clock.
    clock_tick_seconds: int = Field(
        default=60, description="How often the clock looks for due sources and digests."
    )
    leader_lock_ttl_seconds: int = Field(
        default=60,
        description="A clock that has not renewed its leader lease for this long loses it.",
    )

    # Queues: each kind of work has its own, so a flood of mail never delays
    # matching. Give two the same name to merge them.
    queue_ingest: str = Field(default="ingest", description="Queue of source polls.")
    queue_match: str = Field(default="match", description="Queue of matching new articles.")
    queue_send: str = Field(
        default="send", description="Queue of bulk mail: digests and newsletters."
    )
    queue_alerts: str = Field(
        default="alerts",
        description="Queue of mail a reader waits for: alerts, confirmations, test sends.",
    )
    queue_webhooks: str = Field(default="webhooks", description="Queue of outgoing webhooks.")

    # Logs.
    log_format: str = Field(
        default="auto", description="'json', 'text', or 'auto' (JSON unless on a terminal)."
    )
    log_level: str = Field(
        default="INFO", description="Lowest level logged by long-running processes."
    )

    # Processes started by `alerts up`.
    worker_concurrency: int = Field(default=2, description="Worker threads or processes.")
    require_services: bool = Field(
        default=False,
        description="Tests: fail instead of skip when PostgreSQL, Redis or SMTP is missing.",
    )

    @property
    def job_queues(self) -> dict[str, str]:
        """Which queue each job goes to (job name -> queue name)."""
        return {
            "poll_source": self.queue_ingest,
            "match_articles": self.queue_match,
            "send_deliveries": self.queue_send,
            "send_alerts": self.queue_alerts,
            "deliver_webhooks": self.queue_webhooks,
        }

    @property
    def stuck_after_seconds(self) -> float:
        """When a ``sending`` row is surely orphaned: a send that is still running
        has the fresh-connection retry and two timeouts at each stage at most."""
        if self.delivery_stuck_after_seconds is not None:
            return float(self.delivery_stuck_after_seconds)
        return self.send_claim_size * 2 * self.smtp_timeout_seconds + STUCK_MARGIN_SECONDS

    @property
    def requeue_after_seconds(self) -> float:
        """When a queued row's task counts as lost: a clock tick, so a lost task
        costs about one sweeper period; a spare task is a no-op (claims)."""
        if self.delivery_requeue_after_seconds is not None:
            return float(self.delivery_requeue_after_seconds)
        return float(max(self.clock_tick_seconds, MIN_REQUEUE_AFTER_SECONDS))

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'alerts.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_dir(self) -> Path:
        return (self.data_dir / "broker").resolve()

    @property
    def resolved_outbox_dir(self) -> Path:
        return (self.outbox_dir or self.data_dir / "outbox").resolve()

    @property
    def resolved_secret_key(self) -> str:
        """The configured key, or one generated once and kept in the data dir."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / SECRET_KEY_FILE
        if not path.exists():
            # Written aside then linked into place: web, worker and clock start at
            # once, and exactly one of them may create the key.
            self.data_dir.mkdir(parents=True, exist_ok=True)
            draft = path.with_suffix(f".{os.getpid()}")
            draft.write_text(secrets.token_urlsafe(SECRET_KEY_BYTES))
            draft.chmod(0o600)
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
            draft.unlink()
        return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
