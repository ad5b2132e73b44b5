"""Every kind of mail the product sends, in every language it speaks, scores as ham.

The mails are made the way the product makes them for an operator: a reader
signs up (the confirmation, new and already subscribed), an article arrives (an
immediate alert), a daily digest falls due, an editor sends a newsletter issue
and a test of it; the configured mailer renders, DKIM-signs and writes each to
the outbox. SpamAssassin then scores each one offline (``-L``: no network
tests), as ``nobody`` with a home of its own when the test runs as root.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from alerts.alerting import process_new_articles
from alerts.config import Settings, get_settings
from alerts.db import get_database
from alerts.delivery.outbound import send_deliveries
from alerts.digest import plan_due_digests
from alerts.mailer import build_mailer
from alerts.matching.service import IndexCache
from alerts.models import Article, Delivery, DeliveryKind, DeliveryState
from alerts.newsletters import create_newsletter, send_now, send_test, start_due_issues
from alerts.regions import default_gazetteer
from alerts.signup import SignupForm, sign_up
from alerts.subscribers import NewSubscriber, add_subscriber
from tests.conftest import RecordedJobs, service_missing

pytestmark = pytest.mark.integration

SPAMASSASSIN = "/usr/bin/spamassassin"
# SpamAssassin's own threshold is 5; a mail that gets anywhere near 1 is one
# content change away from the junk folder at stricter receivers.
MAX_SCORE = 0.5
# MIXED_ES (72_active.cf) hunts Latin text whose e's were swapped for Cyrillic
# look-alikes: it fires when the Subject plus the text part plus the HTML part's
# visible text hold over 20 Latin "e" and 1.4 to 10 times as many e-like letters
# (the Latin e's themselves, Cyrillic е ё є ..., accented e's). A Russian mail
# meets that mix by nature, from what it must show in Latin letters in each part:
# the reader's address, the postal address, the links. The Russian confirmation
# alone carries 25 that way (address and postal address in both parts, the
# confirm link) before any footer link, so no honest wording brings it under 21.
# It is the one rule let through, in Russian mail only and at no more than its
# stock points; everything else still counts against MAX_SCORE.
RUSSIAN_ALLOWANCE = {"MIXED_ES": 1.0}
SCORING_THREADS = 3  # each run is one Perl process of about 0.8 s
NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
# The digests fall due, the issue starts and everything is sent a day later.
SENT_AT = NOW + timedelta(days=1)
LANGUAGES = ("en", "de", "ru")


@dataclass(frozen=True)
class Story:
    query: str
    title: str
    body: str


# The desk's own wording: one story per language, and the word readers follow.
STORIES = {
    "en": Story(
        "flood",
        "Flood closes the Georgian Military Road",
        "Heavy rain brought a flood to the Aragvi valley near Pasanauri on Tuesday.\n\n"
        "The road north to Stepantsminda stays closed overnight while crews clear the mud.",
    ),
    "de": Story(
        "Hochwasser",
        "Hochwasser sperrt die Georgische Heerstraße",
        "Nach tagelangem Regen führt der Aragwi bei Pasanauri Hochwasser.\n\n"
        "Die Straße nach Stepanzminda bleibt über Nacht gesperrt, bis der Schlamm geräumt ist.",
    ),
    "ru": Story(
        "наводнение",
        "Наводнение перекрыло Военно-Грузинскую дорогу",
        "После сильных дождей в долине Арагви у Пасанаури началось наводнение.\n\n"
        "Дорога на Степанцминду закрыта до утра, пока рабочие расчищают грязь.",
    ),
}


@dataclass(frozen=True)
class Scored:
    name: str
    score: float
    rules: str  # SpamAssassin's table of the rules that fired, with their points

    @property
    def points(self) -> dict[str, float]:
        return {rule: float(points) for points, rule in RULE_LINE.findall(self.rules)}

    @property
    def counted(self) -> float:
        """The score with the Russian allowance taken out (for Russian mail only)."""
        if ".ru@" not in self.name:
            return self.score
        allowed = sum(
            points
            for rule, points in self.points.items()
            if points <= RUSSIAN_ALLOWANCE.get(rule, float("-inf"))
        )
        return round(self.score - allowed, 1)


RULE_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z][A-Z0-9_]+)\s", re.MULTILINE)


def dkim_key_file(folder: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture
def spamassassin_home() -> Iterator[Path]:
    """A home of SpamAssassin's own (it writes ~/.spamassassin), readable by nobody."""
    if not os.path.exists(SPAMASSASSIN):
        service_missing(f"SpamAssassin at {SPAMASSASSIN} (Debian: spamassassin)")
    home = Path(tempfile.mkdtemp(prefix="alerts-spamassassin-"))
    if os.geteuid() == 0:
        shutil.chown(home, "nobody", "nogroup")
    yield home
    shutil.rmtree(home, ignore_errors=True)


def score(name: str, message: bytes, home: Path) -> Scored:
    """``spamassassin -L -t``: local tests only, with the report of rules that fired."""
    as_nobody = {"user": "nobody", "group": "nogroup", "extra_groups": []}
    done = subprocess.run(
        [SPAMASSASSIN, "-L", "-t"],
        input=message,
        capture_output=True,
        timeout=120,
        check=True,
        cwd=home,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        **(as_nobody if os.geteuid() == 0 else {}),  # type: ignore[arg-type]
    )
    scored = email.message_from_bytes(done.stdout, policy=email.policy.compat32)
    status = " ".join(str(scored["X-Spam-Status"]).split())
    found = re.search(r"score=(-?\d+(?:\.\d+)?)", status)
    assert found, f"{name}: no score in {status!r}"
    report = done.stdout.decode(errors="replace")
    table = report.split("Content analysis details:", 1)[-1].split("\n\n", 2)
    return Scored(name, float(found[1]), "\n".join(table[:2]).strip())


def every_kind_of_mail(settings: Settings) -> list[int]:
    """The deliveries of each kind in each language, made by the domain's own steps."""
    database = get_database(settings)
    cache = IndexCache(default_gazetteer(), settings)
    with database.session_scope() as session:
        for language in LANGUAGES:
            story = STORIES[language]
            for frequency in ("immediate", "daily"):
                add_subscriber(
                    session,
                    NewSubscriber(
                        email=f"{frequency}.{language}@reader.example.net",
                        query=story.query,
                        frequency=frequency,
                        language=language,
                        confirmed=True,
                        consent_source="sign-up form",
                    ),
                    settings,
                    NOW - timedelta(days=1, hours=1),
                )
    with database.session_scope() as session:
        articles = []
        for n, language in enumerate(LANGUAGES):
            story = STORIES[language]
            article = Article(
                title=story.title,
                lead=story.body.split("\n\n")[0],
                body=story.body,
                url=f"https://news.example.org/{language}/2026/12/aragvi-{n}",
                fingerprint=f"spam-score-{language}",
                title_key=f"spam-score-{language}",
                language=language,
                source_name="Caucasus Desk",
                ingested_at=NOW - timedelta(hours=2),
                published_at=NOW - timedelta(hours=2),
            )
            session.add(article)
            articles.append(article)
        session.flush()
        article_ids = [article.id for article in articles]
    with database.session_scope() as session:
        process_new_articles(session, article_ids, cache, settings, NOW - timedelta(hours=2))
    with database.session_scope() as session:
        plan_due_digests(session, settings, SENT_AT)
        for language in LANGUAGES:
            # A new reader, and a subscribed one asking for more (the mail says so).
            for n, who in enumerate(("new", "daily")):
                sign_up(
                    session,
                    SignupForm(
                        email=f"{who}.{language}@reader.example.net",
                        query=STORIES[language].query,
                        language=language,
                    ),
                    f"203.0.113.{10 * n + LANGUAGES.index(language)}",
                    settings,
                    NOW,
                )
        issue = create_newsletter(
            session,
            "system",
            subject="Caucasus Weekly: roads, rivers and the week ahead",
            preheader="The Aragvi valley after the rain, and what comes next.",
            intro_markdown=(
                "Good morning. This week the weather set the agenda in the mountains.\n\n"
                "Below are the stories our desk followed most closely."
            ),
            sections=[{"title": "In the mountains", "query": "flood OR Hochwasser OR наводнение"}],
            audience={},
            settings=settings,
            now=NOW,
        )
        send_test(session, "system", issue.id, ["editor@news.example.org"], settings, NOW)
        send_now(session, issue.id, NOW, actor="system")
        start_due_issues(session, settings, SENT_AT)
        queued = select(Delivery.id).where(Delivery.state == DeliveryState.QUEUED)
        return list(session.scalars(queued.order_by(Delivery.id)))


def test_every_kind_of_mail_in_every_language_scores_as_ham(
    spamassassin_home: Path,
    recorded_jobs: RecordedJobs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What an operator sets for production (docs/operations.md), with the outbox as the relay.
    for name, value in {
        "ALERTS_BASE_URL": "https://news.example.org",
        "ALERTS_MAIL_FROM": "Caucasus Desk <alerts@news.example.org>",
        "ALERTS_BOUNCE_DOMAIN": "bounces.news.example.org",
        "ALERTS_POSTAL_ADDRESS": "Caucasus Desk, 12 Rustaveli Avenue, Tbilisi 0108, Georgia",
        "ALERTS_DKIM_SELECTOR": "desk2026",
        "ALERTS_DKIM_DOMAIN": "news.example.org",
        "ALERTS_DKIM_PRIVATE_KEY_FILE": str(dkim_key_file(tmp_path)),
        "ALERTS_SECRET_KEY": "spam-score-secret",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    settings = get_settings()
    queued = every_kind_of_mail(settings)
    mailer = build_mailer(settings)
    try:
        report = send_deliveries(get_database(settings), queued, mailer, lambda: SENT_AT)
    finally:
        mailer.close()
    # Immediate readers' digests are skipped: their alerts already said it all.
    assert (report.failed, report.deferred, report.bounced) == (0, 0, 0)

    with get_database(settings).session_scope() as session:
        made = {
            message_id: (kind, recipient)
            for message_id, kind, recipient in session.execute(
                select(Delivery.message_id, Delivery.kind, Delivery.recipient)
            )
        }
    outbox = settings.outbox_dir or settings.data_dir / "outbox"
    mails: dict[str, bytes] = {}
    for path in sorted(outbox.glob("*.eml")):
        raw = path.read_bytes()
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        assert raw.startswith(b"DKIM-Signature:"), path.name
        kind, recipient = made[str(message["Message-ID"])]
        mails[f"{kind.value} to {recipient}"] = raw
    expected = {"test to editor@news.example.org"} | {
        f"{kind} to {who}.{language}@reader.example.net"
        for language in LANGUAGES
        for kind, who in (
            ("alert", "immediate"),
            ("digest", "daily"),
            ("confirmation", "new"),
            ("confirmation", "daily"),
            ("newsletter", "immediate"),
            ("newsletter", "daily"),
        )
    }
    assert set(mails) == expected
    assert {name.split(" to ")[0] for name in mails} == {kind.value for kind in DeliveryKind}

    with ThreadPoolExecutor(SCORING_THREADS) as pool:
        scores = list(
            pool.map(lambda item: score(item[0], item[1], spamassassin_home), mails.items())
        )
    print("\n".join(f"{s.score:5.1f} {s.counted:5.1f} {s.name}" for s in scores))  # with -s
    too_high = [s for s in scores if s.counted > MAX_SCORE]
    assert not too_high, "\n\n".join(f"{s.name}: {s.score}\n{s.rules}" for s in too_high)
    # The allowance is what it says: a Russian alert or confirmation does hit it.
    assert any("MIXED_ES" in s.points for s in scores if ".ru@" in s.name)
