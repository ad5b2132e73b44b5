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
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret
# Mail and page templates ship beside the package, in the repository's templates/.
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
SECRET_KEY_BYTES = 32
# Names the app always answers to unless ALERTS_TRUSTED_HOSTS says otherwise.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _items(text: str) -> list[str]:
    """The entries of a comma-separated setting, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _networks(text: str) -> list[IPv4Network | IPv6Network]:
    networks = []
    for entry in _items(text):
        try:
            networks.append(ip_network(entry, strict=False))
        except ValueError as error:
            raise ValueError(f"ALERTS_TRUSTED_PROXIES: {entry!r} is not a network") from error
    return networks


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
    bounce_domain: str | None = Field(
        default=None,
        description="Domain whose mail comes back to this system (bounces, complaints, "
        "unsubscribe requests); unset: the From domain.",
    )
    bounce_local_part: str = Field(
        default="bounces",
        description="Local part of the return path; each delivery's address is "
        "<local>+<signed token>@<bounce domain> (VERP).",
    )
    bounce_score_threshold: float = Field(
        default=5.0, description="Bounce score at which a reader is marked bounced and suppressed."
    )
    bounce_soft_weight: float = Field(default=1.0, description="Score of one soft bounce.")
    bounce_unproven_hard_weight: float = Field(
        default=2.5,
        description="Score of a hard bounce that no VERP token proves (a proven one "
        "suppresses at once).",
    )
    bounce_window_days: int = Field(
        default=7, description="Days over which a bounce's score fades to nothing."
    )
    bounce_mailbox_url: str | None = Field(
        default=None,
        description="Mailbox the relay delivers returned mail to, read by the clock: "
        "imaps://user:password@host/INBOX, imap://, pop3s:// or pop3://; unset: none.",
    )
    bounce_poll_minutes: int = Field(
        default=5, description="How often the clock reads the bounce mailbox.", ge=1
    )
    ses_topic_arns: str | None = Field(
        default=None,
        description="Comma-separated SNS topic ARNs whose SES bounce and complaint "
        "notifications /hooks/bounces/ses accepts; unset: none.",
    )
    postmark_webhook_token: str | None = Field(
        default=None,
        description="Password Postmark sends (HTTP basic auth) to /hooks/bounces/postmark.",
    )
    mailgun_signing_key: str | None = Field(
        default=None, description="Mailgun's webhook signing key, for /hooks/bounces/mailgun."
    )
    sendgrid_verification_key: str | None = Field(
        default=None,
        description="SendGrid's event webhook verification key (ECDSA public key, base64 "
        "or PEM), for /hooks/bounces/sendgrid.",
    )
    postal_address: str | None = Field(
        default=None,
        description="The sender's postal address, printed in the footer of every mail "
        "(CAN-SPAM wants it in bulk mail); unset: no address line.",
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
        default=20.0,
        description="Seconds for a whole fetch (DNS, every redirect, headers and body).",
    )
    fetch_allowed_networks: str = Field(
        default="",
        description="Networks or hosts that sources and webhooks may reach although they are "
        "not on the public internet, comma-separated (10.1.0.0/16, cms.intranet). "
        "Default: none; loopback, private, link-local and metadata addresses are refused.",
    )
    source_default_poll_minutes: int = Field(
        default=15, description="Poll interval for sources registered without one."
    )

    # Query language limits (see alerts.matching.query).
    query_max_length: int = Field(default=500, description="Longest keyword query, in characters.")
    query_max_terms: int = Field(default=32, description="Most terms in one keyword query.")
    # At most 64 (alerts.matching.query.MAX_DEPTH_CEILING): deeper trees would
    # bring the parser's and evaluator's recursion near Python's limit.
    query_max_depth: int = Field(
        default=16,
        ge=1,
        le=64,
        description="Most levels of parentheses and negations in one keyword query.",
    )

    # The reader forms' helpers (/api/preview, /api/query-check) answer anyone.
    preview_per_minute: int = Field(
        default=30,
        ge=1,
        description="Calls per client per minute to each of /api/preview and /api/query-check.",
    )
    preview_max_articles: int = Field(
        default=500,
        ge=1,
        description="Newest stored articles a reader's preview looks through at most.",
    )

    # Subscriber CSV imports.
    import_batch_rows: int = Field(
        default=2000,
        ge=1,
        description="Rows per transaction of a CSV import; other writers get in between.",
    )

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
    match_requeue_after_seconds: int = Field(
        default=30,
        description="An article still unmatched this long after its match task was queued "
        "lost that task (a flushed broker, a failed send): the clock queues it again.",
    )
    confirmation_valid_hours: int = Field(
        default=48, description="How long a double opt-in confirmation link works."
    )

    # Retention (see alerts.retention): how long history is kept; 0 keeps it forever.
    retain_articles_days: int = Field(
        default=180, description="Days an article (and its matches) is kept after ingest."
    )
    retain_matches_days: int = Field(
        default=90, description="Days the matches of an article are kept (digests, previews)."
    )
    retain_deliveries_days: int = Field(
        default=90,
        description="Days a settled alert, digest, confirmation or test delivery row is kept.",
    )
    retain_webhook_deliveries_days: int = Field(
        default=30, description="Days a settled webhook delivery is kept."
    )
    retain_rate_events_days: int = Field(
        default=7, description="Days a rate-limit event is kept (every window is shorter)."
    )
    retain_audit_days: int = Field(default=0, description="Days the audit log is kept; 0: forever.")
    prune_batch_rows: int = Field(
        default=5000, description="Rows of each kind deleted per transaction when pruning."
    )
    prune_hour_utc: int = Field(
        default=3, description="Hour (UTC) of the clock's daily prune.", ge=0, le=23
    )
    # Exposure to the internet (see docs/operations.md, "before you expose it").
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated networks (CIDR) of reverse proxies whose X-Forwarded-For "
        "and X-Forwarded-Proto are believed. Default: none, the peer address is the client.",
    )
    trusted_hosts: str = Field(
        default="",
        description="Comma-separated Host header values the web app answers; others get 400 "
        "('*' answers any). Default: the host of base_url plus 127.0.0.1, localhost and ::1.",
    )
    session_max_age_hours: int = Field(
        default=12, description="A staff sign-in ends this many hours after it started."
    )
    require_2fa: Literal["off", "admins", "staff"] = Field(
        default="off",
        description="Who must sign in with a TOTP code: 'off' (whoever enrolled), 'admins', "
        "or 'staff' (admins and editors). One who must and has not enrolled is sent to "
        "enrolment right after the password and can do nothing else.",
    )
    preference_link_valid_days: int = Field(
        default=180,
        description="How long a preference-centre link in a mail works; every mail brings a "
        "fresh one, and 'sign out of all links' ends them at once.",
    )
    unsubscribe_link_valid_days: int = Field(
        default=365,
        description="How long an unsubscribe link in a mail works (well past the 60 days "
        "mailbox providers expect a List-Unsubscribe link to keep working).",
    )
    max_interests_per_reader: int = Field(
        default=25, description="Most interests one reader may hold."
    )
    preference_writes_per_hour: int = Field(
        default=30, description="Most preference-centre changes per reader per hour (then 429)."
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

    # Exposure: what the public may see (see docs/operations.md, "Before you expose it").
    metrics_token: str | None = Field(
        default=None,
        description="Bearer token for /metrics, /readyz details and the counts on /status "
        "(also the worker's --metrics-port). Unset: only a signed-in admin sees them.",
    )
    metrics_bind: str = Field(
        default="127.0.0.1",
        description="Address the worker's --metrics-port listens on (0.0.0.0: every interface).",
    )
    test_sends_per_hour: int = Field(
        default=20, description="Test mails one editor may send per hour from the web desk."
    )

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

    @field_validator("fetch_allowed_networks")
    @classmethod
    def _readable_allow_list(cls, value: str) -> str:
        from alerts.netguard import Policy  # the guard owns the syntax; it imports no settings

        Policy.parse(value)
        return value

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

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: str) -> str:
        """A typo here would silently trust nobody (or the wrong peer): refuse it at start."""
        _networks(value)
        return value

    @property
    def trusted_proxy_networks(self) -> list[IPv4Network | IPv6Network]:
        return _networks(self.trusted_proxies)

    @property
    def allowed_hosts(self) -> list[str]:
        """Host names the app answers to (without port), lower case.

        By default the host of ``base_url`` (what mail links point at) and the
        loopback names an operator uses on the machine itself: nothing else.
        """
        if self.trusted_hosts.strip():
            return [item.lower() for item in _items(self.trusted_hosts)]
        own = (urlsplit(self.base_url).hostname or "").lower()
        return [name for name in dict.fromkeys([own, *LOOPBACK_HOSTS]) if name]

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
    def outbox_enabled(self) -> bool:
        """The outbox is a development aid: mail goes there, and admins may read it,
        only while no SMTP relay is set."""
        return not self.smtp_url

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
