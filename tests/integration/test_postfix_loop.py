"""The whole bounce loop through Debian's Postfix, as an operator runs it.

The system sends real digests and alerts through a private Postfix on loopback
(its own configuration, queue and data folders; the machine's Postfix is never
touched). Postfix relays them to an aiosmtpd server playing the readers'
mail servers, which refuses some recipients for good (550 5.1.1) and some for
now (452 4.2.2). Postfix itself writes the delivery status notifications,
sends them to each message's VERP address, and its transport map hands that
domain to `alerts bounces serve`, run as a subprocess the way users run it.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.delivery.outbound import send_deliveries
from alerts.delivery.verp import delivery_from_address
from alerts.digest import plan_due_digests
from alerts.mailer import default_mailer
from alerts.models import (
    BounceEvent,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.conftest import REPO_ROOT, RecordedJobs, free_port, service_missing, wait_until
from tests.factories import alert_burst, readers_with_due_digests
from tests.integration.smtp_server import SmtpTestServer

pytestmark = pytest.mark.integration

POSTFIX = "/usr/sbin/postfix"
SECRET = "postfix-loop-secret"
BOUNCE_DOMAIN = "bounces.news.example.org"
RELAY_HOSTNAME = "relay.news.example.org"
HARD = "550 5.1.1 <{}>: no such mailbox here"
SOFT = "452 4.2.2 <{}>: mailbox over quota, try later"
# Postfix starts in about a second; a DSN needs one queue pass after the refusal.
LOOP_SECONDS = 60

# Only what this instance uses, none chrooted: the queue is a private temp folder.
MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
lmtp      unix  - - n -  - lmtp
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


@dataclass
class PrivatePostfix:
    root: Path
    port: int

    @property
    def config(self) -> Path:
        return self.root / "etc"

    def postfix(self, *command: str) -> None:
        # Postfix reports to syslog or its log file, not to a pipe: show the log on failure.
        done = subprocess.run(
            [POSTFIX, "-c", str(self.config), *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"postfix {' '.join(command)} failed:\n{self.log()}")

    def queued(self) -> int:
        """Messages still in Postfix's queue (being delivered, deferred or held)."""
        queue = self.root / "queue"
        folders = ("maildrop", "incoming", "active", "deferred", "hold")
        return sum(1 for f in folders for path in (queue / f).rglob("*") if path.is_file())

    def log(self) -> str:
        log = self.root / "postfix.log"
        return log.read_text(errors="replace") if log.exists() else "(no log)"


def postfix_settings(root: Path, relay_port: int) -> list[str]:
    """main.cf of the test's relay: the operator's routing from docs/operations.md, plus
    what a private instance and a fast test need (the listening port is in master.cf)."""
    return [
        # A private instance: its own folders, the system's users and binaries.
        f"queue_directory = {root}/queue",
        f"data_directory = {root}/data",
        "mail_owner = postfix",
        "setgid_group = postdrop",
        f"maillog_file = {root}/postfix.log",
        f"maillog_file_prefixes = {root}",
        "compatibility_level = 3.6",
        # Loopback only; nothing is delivered locally, everything goes to the relayhost.
        "inet_interfaces = 127.0.0.1",
        "inet_protocols = ipv4",
        f"myhostname = {RELAY_HOSTNAME}",
        "mydestination =",
        "mynetworks = 127.0.0.0/8",
        "alias_maps =",
        "alias_database =",
        "local_recipient_maps =",
        "notify_classes =",
        "smtp_dns_support_level = disabled",
        "lmtp_dns_support_level = disabled",
        f"relayhost = [127.0.0.1]:{relay_port}",
        # The routing docs/operations.md tells operators to set up.
        f"relay_domains = {BOUNCE_DOMAIN}",
        f"transport_maps = texthash:{root}/etc/transport",
        # A refusal is final: 5xx bounces, and a 4xx gives up at the first try
        # (maximal_queue_lifetime 0: "try once"), so Postfix writes both DSNs at once.
        "soft_bounce = no",
        "maximal_queue_lifetime = 0",
        "delay_warning_time = 0",
        # Postfix caps this at maximal_queue_lifetime anyway (and warns when it is larger).
        "bounce_queue_lifetime = 0",
    ]


@pytest.fixture
def relay() -> Iterator[SmtpTestServer]:
    """The readers' mail servers: Postfix's relayhost."""
    server = SmtpTestServer().start()
    yield server
    server.stop()


@pytest.fixture
def receiver(postgres_database: Database, isolated_settings: Path) -> Iterator[int]:
    """`alerts bounces serve` on a free port, with the test's database and secret."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(
        ALERTS_DATA_DIR=str(isolated_settings),
        ALERTS_DATABASE_URL=postgres_database.url,
        ALERTS_SECRET_KEY=SECRET,
        ALERTS_BOUNCE_DOMAIN=BOUNCE_DOMAIN,
        PYTHONPATH=str(REPO_ROOT),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "alerts", "bounces", "serve", "--port", str(port)], env=env
    )

    def listening() -> bool:
        try:
            smtplib.LMTP("127.0.0.1", port, timeout=2).quit()
        except OSError:
            return False
        return True

    try:
        wait_until(listening, 60, "alerts bounces serve")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def postfix(relay: SmtpTestServer, receiver: int) -> Iterator[PrivatePostfix]:
    """A private Postfix on a free loopback port, stopped and removed afterwards."""
    if not os.path.exists(POSTFIX):
        service_missing(f"Postfix at {POSTFIX} (Debian: postfix)")
    # Postfix's own user works in the queue: not pytest's 0700 tmp folder.
    root = Path(tempfile.mkdtemp(prefix="alerts-postfix-"))
    root.chmod(0o755)
    instance = PrivatePostfix(root, free_port())
    for folder in ("etc", "queue", "data"):
        (root / folder).mkdir()
    shutil.chown(root / "data", "postfix")
    listen = f"127.0.0.1:{instance.port}"
    (instance.config / "master.cf").write_text(MASTER_CF.format(listen=listen))
    (instance.config / "main.cf").write_text("\n".join(postfix_settings(root, relay.port)) + "\n")
    (instance.config / "transport").write_text(f"{BOUNCE_DOMAIN} lmtp:inet:127.0.0.1:{receiver}\n")
    started = False
    try:
        instance.postfix("check")  # creates the queue folders with their owners
        instance.postfix("start")
        started = True

        def answers() -> bool:
            try:
                smtplib.SMTP("127.0.0.1", instance.port, timeout=2).quit()
            except OSError:
                return False
            return True

        wait_until(answers, 30, "the private Postfix")
        yield instance
    finally:
        if started:
            instance.postfix("stop")
            pid_file = root / "queue" / "pid" / "master.pid"
            wait_until(lambda: not _running(pid_file), 30, "Postfix to stop")
        shutil.rmtree(root, ignore_errors=True)


def _running(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    return True


def test_postfix_returns_refusals_to_the_verp_address_and_the_policy_applies(
    postgres_database: Database,
    postfix: PrivatePostfix,
    relay: SmtpTestServer,
    recorded_jobs: RecordedJobs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = postgres_database
    monkeypatch.setenv("ALERTS_SMTP_URL", f"smtp://127.0.0.1:{postfix.port}")
    monkeypatch.setenv("ALERTS_SECRET_KEY", SECRET)
    monkeypatch.setenv("ALERTS_BOUNCE_DOMAIN", BOUNCE_DOMAIN)
    monkeypatch.setenv("ALERTS_MAIL_FROM", "Desk Alerts <alerts@news.example.org>")
    monkeypatch.setenv("ALERTS_BASE_URL", "https://news.example.org")
    get_settings.cache_clear()
    settings = get_settings()

    digest_readers = readers_with_due_digests(database, 6, prefix="digest")
    with database.session_scope() as session:
        digest_ids = plan_due_digests(session, settings, utcnow())
    assert len(digest_ids) == len(digest_readers)
    alert_readers, alert_ids = alert_burst(database, 3, prefix="alert")
    hard = [digest_readers[0], digest_readers[1], alert_readers[0]]
    soft = [digest_readers[2], digest_readers[3], alert_readers[1]]
    accepted = [digest_readers[4], digest_readers[5], alert_readers[2]]
    for address in hard:
        relay.rcpt_replies[address] = HARD.format(address)
    for address in soft:
        relay.rcpt_replies[address] = SOFT.format(address)
    with database.session_scope() as session:
        session.add(
            WebhookEndpoint(
                url="https://hooks.example.org/bounced", events=["delivery.bounced"], secret="s"
            )
        )

    mailer = default_mailer(settings)
    try:
        report = send_deliveries(database, digest_ids + alert_ids, mailer, utcnow)
    finally:
        mailer.sender.close()
    # Postfix accepts everything at once; the refusals come later, as mail.
    assert (report.sent, report.bounced, report.deferred) == (9, 0, 0)

    def returned() -> int:
        with database.session_scope() as session:
            return session.scalar(select(func.count()).select_from(BounceEvent)) or 0

    try:
        wait_until(lambda: returned() >= len(hard + soft), LOOP_SECONDS, "the DSNs Postfix sends")
        wait_until(lambda: len(relay.messages) == len(accepted), LOOP_SECONDS, "accepted mail")
        wait_until(lambda: postfix.queued() == 0, LOOP_SECONDS, "Postfix's queue to empty")
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- postfix log ---\n{postfix.log()}") from error

    with database.session_scope() as session:
        deliveries = {d.recipient: d for d in session.scalars(select(Delivery))}
        returned_rows = session.scalars(select(BounceEvent)).all()
        events = {e.email: e for e in returned_rows}
        suppressed = dict(session.execute(select(Suppression.email, Suppression.reason)).all())
        status = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
        webhooks = session.scalars(select(WebhookDelivery)).all()
        kinds = {d.kind for d in deliveries.values()}

    assert kinds == {DeliveryKind.DIGEST, DeliveryKind.ALERT}
    assert sorted(e.email for e in returned_rows) == sorted(hard + soft), "one DSN each"

    # Each DSN came back to its delivery's own VERP address, so each one is proven.
    for address in hard + soft:
        event = events[address]
        assert event.delivery_id == deliveries[address].id
        assert event.verified
    # 550: suppressed at once, the reader bounced, the delivery marked, webhooks told.
    for address in hard:
        assert (events[address].kind, events[address].status) == ("hard", "5.1.1")
        assert events[address].action == "suppressed"
        assert suppressed[address] is SuppressionReason.HARD_BOUNCE
        assert status[address] is SubscriberStatus.BOUNCED
        assert deliveries[address].state is DeliveryState.BOUNCED
    bounced_webhooks = {w.payload["data"]["delivery_id"] for w in webhooks}
    assert [w.event for w in webhooks] == ["delivery.bounced"] * len(hard)
    assert bounced_webhooks == {deliveries[address].id for address in hard}
    # 452 until Postfix gave up: a soft bounce, one soft weight on the score, nothing more.
    for address in soft:
        assert (events[address].kind, events[address].status) == ("soft", "4.2.2")
        assert events[address].action == "scored"
        assert events[address].weight == settings.bounce_soft_weight
        assert address not in suppressed
        assert status[address] is SubscriberStatus.CONFIRMED
        assert deliveries[address].state is DeliveryState.SENT
    # Accepted mail reached the readers' server once, with its VERP return path, untouched.
    received = {rcpt: mail_from for mail_from, rcpts, _ in relay.messages for rcpt in rcpts}
    assert set(received) == set(accepted)
    for address in accepted:
        assert delivery_from_address(received[address], SECRET) == deliveries[address].id
        assert received[address].endswith("@" + BOUNCE_DOMAIN)
        assert address not in events
        assert address not in suppressed
        assert status[address] is SubscriberStatus.CONFIRMED
        assert deliveries[address].state is DeliveryState.SENT
