"""Checks of the services the system needs, in words an operator can act on.

``/readyz`` runs the service checks; ``alerts doctor`` runs them all,
including settings, migrations, the DKIM key and a built test message.
"""

from __future__ import annotations

import ipaddress
import smtplib
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path
from urllib.parse import urlsplit

import redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from alerts.config import Settings
from alerts.db import make_engine, schema_is_current
from alerts.delivery.dkim import DkimConfigurationError, DkimSigner
from alerts.delivery.message import build_message, make_message_id, split_mailbox
from alerts.delivery.senders import SmtpUrl
from alerts.sender_checks import sender_problems
from alerts.storage import free_space

CHECK_TIMEOUT_SECONDS = 3
# Free space below the smaller of these is worth a warning: 1 GB is a day or
# two of outbox and WAL growth on a busy host; 5% keeps a small disk from warning
# forever.
LOW_SPACE_BYTES = 1_000_000_000
LOW_SPACE_FRACTION = 0.05
REDIS_SCHEMES = ("redis://", "rediss://", "redis+socket://")
REQUIRED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    # A warning passes (ok) but is shown: an unsafe setting, not a broken one.
    warning: bool = False


def _run(name: str, probe: Callable[[], str]) -> Check:
    """Run one probe; a failure becomes a sentence, never a traceback."""
    try:
        return Check(name, True, probe())
    except Exception as error:  # noqa: BLE001 - every failure is reported, none is fatal here
        return Check(name, False, f"{type(error).__name__}: {error}")


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def check_database(settings: Settings) -> Check:
    url = settings.resolved_database_url

    def probe() -> str:
        engine = make_engine(url)
        if engine.url.get_backend_name() == "sqlite" and engine.url.database:
            # The embedded database is created on first use; its folder may not be yet.
            Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as error:
            raise ConnectionError(
                f"cannot reach the database at {_redacted(url)}: {error.__cause__ or error}"
            ) from error
        finally:
            engine.dispose()
        return f"reachable at {_redacted(url)}"

    return _run("database", probe)


def check_migrations(settings: Settings) -> Check:
    def probe() -> str:
        engine = make_engine(settings.resolved_database_url)
        try:
            if not schema_is_current(engine):
                raise RuntimeError("the schema is behind the code: run `alerts db upgrade`")
        finally:
            engine.dispose()
        return "the schema is current"

    return _run("migrations", probe)


def check_broker(settings: Settings) -> Check:
    url = settings.resolved_broker_url

    def probe() -> str:
        if url.startswith("filesystem://"):
            folder = settings.broker_dir / "queue"
            folder.mkdir(parents=True, exist_ok=True)
            marker = folder / ".doctor"
            marker.write_text("ok")
            marker.unlink()
            return f"embedded broker folder {folder} is writable"
        if url.startswith(REDIS_SCHEMES):
            client = redis.Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS)
            try:
                client.ping()
            except redis.RedisError as error:
                raise ConnectionError(
                    f"Redis at {_redacted(url)} does not answer: {error}"
                ) from error
            finally:
                client.close()
            return f"Redis answers at {_redacted(url)}"
        return f"{url.split(':', 1)[0]} broker: not checked"

    return _run("broker", probe)


def check_smtp(settings: Settings) -> Check:
    def probe() -> str:
        if not settings.smtp_url:
            folder = settings.resolved_outbox_dir
            folder.mkdir(parents=True, exist_ok=True)
            return f"no SMTP relay set: mail goes to the outbox folder {folder}"
        relay = SmtpUrl.parse(settings.smtp_url)
        try:
            with smtplib.SMTP(relay.host, relay.port, timeout=CHECK_TIMEOUT_SECONDS) as smtp:
                code, _ = smtp.noop()
        except (OSError, smtplib.SMTPException) as error:
            raise ConnectionError(
                f"the SMTP relay at {relay.host}:{relay.port} does not answer: {error}"
            ) from error
        if code != 250:
            raise ConnectionError(f"the SMTP relay answered NOOP with {code}")
        return f"the SMTP relay at {relay.host}:{relay.port} answers"

    return _run("smtp", probe)


def check_settings(settings: Settings) -> Check:
    def probe() -> str:
        problems = []
        if not settings.base_url.startswith(("http://", "https://")):
            problems.append(f"ALERTS_BASE_URL {settings.base_url!r} is not an http(s) URL")
        try:
            split_mailbox(settings.mail_from)
        except ValueError as error:
            problems.append(f"ALERTS_MAIL_FROM: {error}")
        if settings.secret_key is not None and len(settings.secret_key) < 16:
            problems.append("ALERTS_SECRET_KEY is shorter than 16 characters")
        if problems:
            raise ValueError("; ".join(problems))
        return "settings are consistent"

    return _run("settings", probe)


def check_dkim(settings: Settings) -> Check:
    def probe() -> str:
        try:
            signer = DkimSigner.from_settings(settings)
        except DkimConfigurationError as error:
            raise ValueError(str(error)) from error
        if signer is None:
            return "no DKIM key set: mail goes out unsigned"
        return f"DKIM key loads (selector {settings.dkim_selector}, domain {settings.dkim_domain})"

    return _run("dkim", probe)


def check_mail_headers(settings: Settings) -> Check:
    """Build one message the way every mail is built and read its headers back."""

    def probe() -> str:
        _, sender = split_mailbox(settings.mail_from)
        domain = sender.rpartition("@")[2] or "localhost"
        raw = build_message(
            sender=settings.mail_from,
            to="doctor@example.org",
            subject="alerts doctor",
            text="test",
            html="<p>test</p>",
            message_id=make_message_id(domain, "doctor"),
            date=datetime.now(UTC),
            list_id=f"doctor.{domain}",
            unsubscribe_url=f"{settings.base_url.rstrip('/')}/unsubscribe/doctor",
            unsubscribe_mailto=f"unsubscribe@{domain}",
        )
        signer = DkimSigner.from_settings(settings)
        if signer:
            raw = signer.sign(raw)
        message = message_from_bytes(raw)
        missing = [name for name in REQUIRED_HEADERS if not message[name]]
        if missing:
            raise ValueError(f"built mail lacks {', '.join(missing)}")
        return "a built mail has every required header" + (
            " and a DKIM signature" if signer else ""
        )

    return _run("mail headers", probe)


# --- exposure: settings that are unsafe on a public server -----------------------------

# A secret key shorter than this is guessable offline from one signed link.
STRONG_SECRET_CHARS = 32
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a name or an address, perhaps in brackets) is this machine only."""
    if not host:
        return False
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_warnings(settings: Settings) -> list[str]:
    """Each unsafe production setting the doctor can see, in words an operator can act on.

    Production is recognised by an SMTP relay being set (mail reaches real
    readers); the outbox and a generated key are fine on a developer's machine.
    """
    warnings: list[str] = []
    base = urlsplit(settings.base_url)
    public_base = not is_loopback(base.hostname)
    # Plain http with a relay set is an error of the sender checks (alerts.sender_checks).
    if settings.outbox_enabled and public_base:
        warnings.append(
            f"ALERTS_SMTP_URL is unset while ALERTS_BASE_URL names the public host "
            f"{base.hostname!r}: mail piles up in the outbox (a development aid) and readers "
            "get nothing; set ALERTS_SMTP_URL"
        )
    if settings.secret_key is None and (settings.smtp_url or public_base):
        warnings.append(
            "ALERTS_SECRET_KEY is unset: each machine generates its own key in its data dir, "
            "so links signed on one host fail on another; set one long random key everywhere"
        )
    elif settings.secret_key is not None and len(settings.secret_key) < STRONG_SECRET_CHARS:
        warnings.append(
            f"ALERTS_SECRET_KEY has {len(settings.secret_key)} characters; use at least "
            f"{STRONG_SECRET_CHARS} random ones (python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )
    if not is_loopback(settings.metrics_bind) and not settings.metrics_token:
        warnings.append(
            f"ALERTS_METRICS_BIND is {settings.metrics_bind!r} but ALERTS_METRICS_TOKEN is "
            "unset: anyone who reaches the worker's --metrics-port reads the metrics; "
            "set a token, or bind 127.0.0.1"
        )
    if settings.metrics_token is not None and len(settings.metrics_token) < STRONG_SECRET_CHARS:
        warnings.append(
            f"ALERTS_METRICS_TOKEN has {len(settings.metrics_token)} characters; use at least "
            f"{STRONG_SECRET_CHARS} random ones"
        )
    key_file = settings.dkim_private_key_file
    if key_file is not None and key_file.is_file():
        mode = key_file.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(
                f"the DKIM key {key_file} can be read by other users (mode "
                f"{stat.S_IMODE(mode):o}); chmod 600 it, owned by the user alerts runs as"
            )
    warnings += network_exposure_warnings(settings)
    return warnings


def network_exposure_warnings(settings: Settings) -> list[str]:
    """Warnings about trusted proxies, trusted hosts and the fetch allow-list."""
    warnings: list[str] = []
    if "*" in [item.strip() for item in settings.trusted_hosts.split(",")]:
        warnings.append(
            "ALERTS_TRUSTED_HOSTS contains '*': any Host header is answered; name the hosts"
        )
    for network in settings.trusted_proxy_networks:
        if network.prefixlen == 0:
            warnings.append(
                f"ALERTS_TRUSTED_PROXIES contains {network}: every client can forge "
                "X-Forwarded-For (its address for rate limits and logs); name only the proxies"
            )
    allowed = [item.strip() for item in settings.fetch_allowed_networks.split(",") if item.strip()]
    for entry in allowed:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if is_loopback(entry):
                warnings.append(_fetch_warning(entry, "this machine"))
            continue
        metadata = ipaddress.ip_address("169.254.169.254")
        if network.version == 4 and metadata in network:
            warnings.append(_fetch_warning(entry, "the cloud metadata service"))
        elif network.prefixlen == 0 or any(
            address.is_loopback for address in (network.network_address, network.broadcast_address)
        ):
            warnings.append(_fetch_warning(entry, "this machine"))
    return warnings


def _fetch_warning(entry: str, what: str) -> str:
    return (
        f"ALERTS_FETCH_ALLOWED_NETWORKS allows {entry}, which reaches {what}: an editor's "
        "source or webhook URL could read it; allow only the intranet hosts you mean"
    )


def check_exposure(settings: Settings) -> list[Check]:
    """One passing, shown warning per unsafe setting; one ok line when there is none."""
    warnings = exposure_warnings(settings)
    if not warnings:
        return [Check("exposure", True, "no unsafe setting for a public server seen")]
    return [Check("exposure", True, warning, warning=True) for warning in warnings]


def check_sender(settings: Settings) -> list[Check]:
    """The sending identity as inboxes judge it; one ok line when nothing is wrong."""
    problems = sender_problems(settings)
    if not problems:
        return [Check("sender", True, "From, DKIM, bounce domain and links fit together")]
    return [
        Check("sender", not problem.error, problem.text, warning=not problem.error)
        for problem in problems
    ]


def check_free_space(settings: Settings) -> Check:
    """Free space of the data dir, outbox and database folder, one part per disk."""
    try:
        disks = free_space(settings)
    except OSError as error:
        return Check("disk space", False, f"cannot tell the free space: {error}")
    parts, low = [], False
    for disk in disks:
        short = disk.free_bytes < min(LOW_SPACE_BYTES, LOW_SPACE_FRACTION * disk.total_bytes)
        low = low or short
        share = disk.free_bytes / disk.total_bytes if disk.total_bytes else 0.0
        parts.append(
            f"{'only ' if short else ''}{disk.free_bytes / 1e9:.2f} GB free ({share:.0%}) "
            f"in {disk.path} ({', '.join(disk.holds)})"
        )
    detail = "; ".join(parts) + (": free some space soon" if low else "")
    return Check("disk space", True, detail, warning=low)


def service_checks(settings: Settings) -> list[Check]:
    return [check_database(settings), check_broker(settings), check_smtp(settings)]


def all_checks(settings: Settings) -> list[Check]:
    checks = [check_settings(settings), check_database(settings)]
    if checks[-1].ok:
        checks.append(check_migrations(settings))
    checks += [check_broker(settings), check_smtp(settings), check_dkim(settings)]
    checks.append(check_mail_headers(settings))
    checks += check_sender(settings)
    checks += check_exposure(settings)
    checks.append(check_free_space(settings))
    return checks


def queue_depths(settings: Settings) -> dict[str, int]:
    """Tasks waiting in each queue; empty when the broker cannot say."""
    queues = sorted(set(settings.job_queues.values()))
    url = settings.resolved_broker_url
    if url.startswith("filesystem://"):
        folder: Path = settings.broker_dir / "queue"
        counts = dict.fromkeys(queues, 0)
        for path in folder.glob("*.msg") if folder.exists() else []:
            # kombu names each message file <time>_<id>.<queue>.msg
            queue = path.name.rsplit(".", 2)[-2]
            if queue in counts:
                counts[queue] += 1
        return counts
    if url.startswith(REDIS_SCHEMES):
        client = redis.Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS)
        try:
            return {queue: int(client.llen(queue)) for queue in queues}
        except (TimeoutError, redis.RedisError):
            return {}
        finally:
            client.close()
    return {}
