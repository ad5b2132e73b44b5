"""Staff two-factor sign-in on SQLite and PostgreSQL: the domain rules with
chosen clocks (window, replay, recovery codes, throttle, reset), then the
console over HTTP (two steps, enrolment, ALERTS_REQUIRE_2FA) and the CLI."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from alerts import two_factor
from alerts.cli import main
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.models import AuditEntry, RecoveryCode, Role, User, WebSession
from alerts.users import LOGIN_FREE_FAILURES, LOGIN_WINDOW
from alerts.web.app import create_app
from alerts.web.security import PENDING_COOKIE, SESSION_COOKIE
from tests.conftest import wait_until
from tests.factories import (
    PASSWORD,
    add_user,
    audit_actions,
    form_token,
    log_in,
    post_form,
    signed_in,
)

ADMIN = "boss@example.org"
EDITOR = "writer@example.org"
# A moment on a step boundary, so "one step later" is exactly 30 seconds on.
T0 = datetime(2026, 5, 4, 9, 0, 0, tzinfo=UTC)
STEP = timedelta(seconds=30)
SECRET_FIELD = re.compile(r'data-secret="([A-Z2-7]+)"')
RECOVERY_CODE = re.compile(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>")


def code_at(secret: str, when: datetime) -> str:
    return pyotp.TOTP(secret).at(when)


def wrong_code(secret: str, when: datetime) -> str:
    """Six digits that are surely not good at ``when`` (none of the window's codes)."""
    good = {code_at(secret, when + offset * STEP) for offset in (-1, 0, 1)}
    return next(c for c in ("123456", "654321", "111111", "222222") if c not in good)


def enrol(database: Database, email: str, now: datetime = T0) -> tuple[str, list[str]]:
    """Enrol ``email`` through the domain at ``now``; the secret and the recovery codes."""
    settings = get_settings()
    with database.session_scope() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        secret = two_factor.begin_enrolment(session, user, settings).secret
        codes = two_factor.confirm_enrolment(
            session, user, user, code_at(secret, now), settings, now
        )
    return secret, codes


def verify(
    database: Database, email: str, code: str, now: datetime, client: str = "10.0.0.1"
) -> str:
    with database.session_scope() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        return two_factor.verify_sign_in(session, user, code, get_settings(), client, now)


def refused(
    database: Database, email: str, code: str, now: datetime, client: str = "10.0.0.1"
) -> str:
    """The message a refused code gets; the refusal is committed, as the web commits it."""
    with database.session_scope() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        with pytest.raises(two_factor.TwoFactorError) as caught:
            two_factor.verify_sign_in(session, user, code, get_settings(), client, now)
    return str(caught.value)


def require(monkeypatch: pytest.MonkeyPatch, who: str) -> None:
    monkeypatch.setenv("ALERTS_REQUIRE_2FA", who)
    get_settings.cache_clear()


# --- the domain rules ----------------------------------------------------------------


def test_codes_count_within_one_step_either_side_and_never_twice(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    secret, _ = enrol(database, ADMIN)
    # The code that confirmed enrolment cannot sign in.
    assert refused(database, ADMIN, code_at(secret, T0), T0) == two_factor.REPLAYED_CODE

    later = T0 + 2 * STEP
    assert verify(database, ADMIN, code_at(secret, later), later) == "totp"
    assert refused(database, ADMIN, code_at(secret, later), later) == two_factor.REPLAYED_CODE
    # An older step, still inside the window, is a replay too: only later steps count.
    assert refused(database, ADMIN, code_at(secret, later - STEP), later) == (
        two_factor.REPLAYED_CODE
    )
    # The next step's code a little early (the phone's clock runs ahead): accepted.
    assert verify(database, ADMIN, code_at(secret, later + STEP), later) == "totp"
    # Two steps away from the server's time: outside the window.
    far = later + 10 * STEP
    assert refused(database, ADMIN, code_at(secret, far + 2 * STEP), far) == two_factor.WRONG_CODE
    assert refused(database, ADMIN, "000000x", far) == two_factor.WRONG_CODE
    # Spaces people type are ignored.
    spaced = code_at(secret, far)
    assert verify(database, ADMIN, f"{spaced[:3]} {spaced[3:]}", far) == "totp"


def test_the_secret_is_stored_encrypted_and_recovery_codes_only_hashed(
    database: Database,
) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    secret, codes = enrol(database, ADMIN)
    with database.session_scope() as session:
        user = session.scalars(select(User).where(User.email == ADMIN)).one()
        assert user.totp_secret_encrypted is not None
        assert secret not in user.totp_secret_encrypted
        hashes = session.scalars(select(RecoveryCode.code_hash)).all()
    assert len(codes) == len(set(codes)) == two_factor.RECOVERY_CODE_COUNT
    stored = " ".join(hashes)
    assert all(code.replace("-", "") not in stored for code in codes)
    # Once confirmed, enrolment does not hand the secret out again.
    with database.session_scope() as session:
        user = session.scalars(select(User).where(User.email == ADMIN)).one()
        with pytest.raises(two_factor.TwoFactorError, match="on already"):
            two_factor.begin_enrolment(session, user, get_settings())


def test_enrolment_needs_a_right_code_and_keeps_one_secret_until_then(
    database: Database,
) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    settings = get_settings()
    with database.session_scope() as session:
        user = session.scalars(select(User).where(User.email == ADMIN)).one()
        first = two_factor.begin_enrolment(session, user, settings)
        assert first.uri.startswith("otpauth://totp/")
        svg = first.qr_svg()
        assert svg.startswith("<svg")
        # Nothing for the browser to fetch: no href, no embedded image.
        assert "href" not in svg
        assert "<image" not in svg
        # A reload shows the same secret: what was scanned keeps working.
        assert two_factor.begin_enrolment(session, user, settings).secret == first.secret
        wrong = wrong_code(first.secret, T0)
        with pytest.raises(two_factor.CodeRefusedError):
            two_factor.confirm_enrolment(session, user, user, wrong, settings, T0)
        assert not two_factor.enrolled(user)
    assert audit_actions(database) == []


def test_a_recovery_code_works_once_and_is_audited(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    _, codes = enrol(database, ADMIN)
    later = T0 + STEP
    # As typed from paper: upper case, no dash.
    assert verify(database, ADMIN, codes[3].upper().replace("-", ""), later) == "recovery"
    assert refused(database, ADMIN, codes[3], later) == two_factor.USED_RECOVERY_CODE
    assert refused(database, ADMIN, "abcde-fghjk", later) == two_factor.WRONG_CODE
    assert verify(database, ADMIN, codes[4], later) == "recovery"
    with database.session_scope() as session:
        user = session.scalars(select(User).where(User.email == ADMIN)).one()
        assert two_factor.recovery_codes_left(session, user) == 8
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "user.2fa_recovery")
        ).all()
    assert [(e.actor, e.target_id, e.detail) for e in entries] == [
        (ADMIN, str(user.id), {"left": 9}),
        (ADMIN, str(user.id), {"left": 8}),
    ]
    assert [a for a, _, _ in audit_actions(database)] == [
        "user.2fa_enrol",
        "user.2fa_recovery",
        "user.2fa_recovery",
    ]


def test_wrong_codes_are_throttled_per_client_and_per_account(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    secret, _ = enrol(database, ADMIN)
    now = T0 + STEP
    for _ in range(LOGIN_FREE_FAILURES):
        assert refused(database, ADMIN, wrong_code(secret, now), now) == two_factor.WRONG_CODE
    # Even the right code waits now, from this client: nothing is checked.
    right = code_at(secret, now)
    assert refused(database, ADMIN, right, now, "10.0.0.1") == two_factor.TOO_MANY_CODES
    # Another client is not held up by these guesses...
    assert verify(database, ADMIN, right, now, "10.0.0.2") == "totp"
    # ...but guesses spread over many clients add up for the account.
    then = now + STEP
    for n in range(two_factor.FAILURES_PER_ACCOUNT - LOGIN_FREE_FAILURES):
        guess = wrong_code(secret, then)
        assert refused(database, ADMIN, guess, then, f"10.1.0.{n}") == two_factor.WRONG_CODE
    fresh = code_at(secret, then)
    assert refused(database, ADMIN, fresh, then, "10.9.9.9") == two_factor.TOO_MANY_CODES
    # Once the failures are older than the window, the account's owner gets in.
    after = then + LOGIN_WINDOW + STEP
    assert verify(database, ADMIN, code_at(secret, after), after, "10.9.9.9") == "totp"


def test_a_changed_secret_key_gives_a_clear_answer(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    secret, _ = enrol(database, ADMIN)
    monkeypatch.setenv("ALERTS_SECRET_KEY", "another key altogether")
    get_settings.cache_clear()
    later = T0 + STEP
    assert refused(database, ADMIN, code_at(secret, later), later) == two_factor.KEY_CHANGED


# --- the console -----------------------------------------------------------------------


def test_enrol_on_the_account_page_then_sign_in_in_two_steps(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    client = signed_in(ADMIN)
    account = client.get("/admin/account")
    assert "Set up two-factor sign-in" in account.text
    page = client.get("/admin/account/2fa")
    assert page.status_code == 200
    assert "<svg" in page.text
    assert "otpauth" not in page.text
    match = SECRET_FIELD.search(page.text)
    assert match
    secret = match.group(1)

    guess = wrong_code(secret, datetime.now(UTC))
    wrong = post_form(client, "/admin/account/2fa", "/admin/account/2fa", code=guess)
    assert wrong.status_code == 422
    assert "does not match" in wrong.text
    shown = post_form(
        client, "/admin/account/2fa", "/admin/account/2fa", code=pyotp.TOTP(secret).now()
    )
    assert shown.status_code == 200
    codes = RECOVERY_CODE.findall(shown.text)
    assert len(codes) == two_factor.RECOVERY_CODE_COUNT
    # Not shown again: the enrolment page now sends back to the account.
    again = client.get("/admin/account/2fa", follow_redirects=False)
    assert again.status_code == 303
    assert secret not in client.get("/admin/account").text
    assert "10 of 10 recovery codes left" in client.get("/admin/account").text

    browser = TestClient(create_app())
    first = log_in(browser, ADMIN)
    assert first.status_code == 303
    assert first.headers["location"] == "/admin/login/code?next=/admin"
    assert SESSION_COOKIE not in first.cookies
    assert PENDING_COOKIE in first.cookies
    # The password alone opens nothing.
    assert browser.get("/admin", follow_redirects=False).status_code == 303
    code_page = browser.get("/admin/login/code")
    assert "authenticator app" in code_page.text
    bad = post_form(browser, "/admin/login/code", "/admin/login/code", code="12345x")
    assert bad.status_code == 401
    assert two_factor.WRONG_CODE in bad.text.replace("&#39;", "'")
    # The code that confirmed enrolment may still be on the phone: the next one is due.
    later = (datetime.now(UTC) + STEP).timestamp()
    good = post_form(
        browser, "/admin/login/code", "/admin/login/code", code=pyotp.TOTP(secret).at(later)
    )
    assert good.status_code == 303
    assert good.headers["location"] == "/admin"
    assert browser.get("/admin").status_code == 200
    replay = TestClient(create_app())
    log_in(replay, ADMIN)
    again_refused = post_form(
        replay, "/admin/login/code", "/admin/login/code", code=pyotp.TOTP(secret).at(later)
    )
    assert again_refused.status_code == 401
    assert "used already" in again_refused.text

    # A recovery code signs in once and lands on the account page, which counts it.
    rescue = TestClient(create_app())
    log_in(rescue, ADMIN)
    used = post_form(rescue, "/admin/login/code", "/admin/login/code", code=codes[0])
    assert used.headers["location"] == "/admin/account?notice=recovery"
    assert "9 of 10 recovery codes left" in rescue.get("/admin/account").text
    assert [a for a, _, _ in audit_actions(database)] == ["user.2fa_enrol", "user.2fa_recovery"]


def test_code_step_needs_a_fresh_untampered_password_step(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    enrol(database, ADMIN, utcnow())
    stranger = TestClient(create_app())
    token = form_token(stranger)
    for cookie in ("", "1.99999999999.forged", f"1.{int(utcnow().timestamp())}.0000"):
        stranger.cookies.set(PENDING_COOKIE, cookie)
        response = stranger.post(
            "/admin/login/code",
            data={"code": "123456", "csrf_token": token},
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/login?notice=expired"
    # Nothing was counted against the account for the forger.
    with database.session_scope() as session:
        user = session.scalars(select(User).where(User.email == ADMIN)).one()
        assert not two_factor.throttled(session, user, "testclient", utcnow())


def test_required_for_admins_sends_them_to_enrolment_and_nowhere_else(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    add_user(database, EDITOR, Role.EDITOR)
    require(monkeypatch, "admins")
    # Editors are not covered by "admins".
    assert log_in(TestClient(create_app()), EDITOR).headers["location"] == "/admin"

    browser = TestClient(create_app())
    first = log_in(browser, ADMIN)
    assert first.headers["location"] == "/admin/login/enrol?next=/admin"
    assert SESSION_COOKIE not in first.cookies
    for path in ("/admin", "/admin/users", "/editor", "/admin/account"):
        assert browser.get(path, follow_redirects=False).status_code == 303, path
    page = browser.get("/admin/login/enrol")
    assert "Set it up now to go on" in page.text
    match = SECRET_FIELD.search(page.text)
    assert match
    done = post_form(
        browser,
        "/admin/login/enrol",
        "/admin/login/enrol",
        code=pyotp.TOTP(match.group(1)).now(),
        next="/admin",
    )
    assert done.status_code == 200
    assert len(RECOVERY_CODE.findall(done.text)) == two_factor.RECOVERY_CODE_COUNT
    assert SESSION_COOKIE in done.cookies
    assert browser.get("/admin/users").status_code == 200


def test_required_for_staff_catches_sessions_begun_before(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(database, EDITOR, Role.EDITOR)
    client = signed_in(EDITOR)
    assert client.get("/editor").status_code == 200
    require(monkeypatch, "staff")
    for path in ("/admin", "/editor", "/admin/account"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/admin/account/2fa"
    page = client.get("/admin/account/2fa")
    assert page.status_code == 200
    match = SECRET_FIELD.search(page.text)
    assert match
    post_form(
        client, "/admin/account/2fa", "/admin/account/2fa", code=pyotp.TOTP(match.group(1)).now()
    )
    assert client.get("/editor").status_code == 200


def test_turning_it_off_needs_the_password(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    secret, _ = enrol(database, ADMIN, utcnow())
    browser = TestClient(create_app())
    log_in(browser, ADMIN)
    later = (datetime.now(UTC) + STEP).timestamp()
    post_form(browser, "/admin/login/code", "/admin/login/code", code=pyotp.TOTP(secret).at(later))
    wrong = post_form(
        browser, "/admin/account/2fa/disable", "/admin/account", password="not my password"
    )
    assert wrong.status_code == 422
    assert "password is not right" in wrong.text
    off = post_form(browser, "/admin/account/2fa/disable", "/admin/account", password=PASSWORD)
    assert off.headers["location"] == "/admin/account?notice=2fa_off"
    assert log_in(TestClient(create_app()), ADMIN).headers["location"] == "/admin"
    with database.session_scope() as session:
        assert session.scalars(select(RecoveryCode)).all() == []
    assert [a for a, _, _ in audit_actions(database)] == ["user.2fa_enrol", "user.2fa_disable"]


def test_cli_reset_for_a_locked_out_admin(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    secret, _ = enrol(database, ADMIN, utcnow())
    browser = TestClient(create_app())
    log_in(browser, ADMIN)
    later = (datetime.now(UTC) + STEP).timestamp()
    post_form(browser, "/admin/login/code", "/admin/login/code", code=pyotp.TOTP(secret).at(later))
    assert browser.get("/admin").status_code == 200

    assert main(["users", "reset-2fa", ADMIN.upper()]) == 0
    assert "two-factor sign-in removed" in capsys.readouterr().out
    # The open session ended with it; the password alone signs in again.
    assert browser.get("/admin", follow_redirects=False).status_code == 303
    assert log_in(TestClient(create_app()), ADMIN).headers["location"] == "/admin"
    with database.session_scope() as session:
        user = session.scalars(select(User).where(User.email == ADMIN)).one()
        assert not two_factor.enrolled(user)
        assert user.totp_secret_encrypted is None
        assert session.scalars(select(RecoveryCode)).all() == []
        # Every session but the one the last password-only sign-in just made has ended.
        open_sessions = session.scalars(
            select(WebSession).where(WebSession.revoked_at.is_(None))
        ).all()
        assert len(open_sessions) == 1
        reset = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "user.2fa_reset")
        ).one()
        assert (reset.actor, reset.target_id) == ("cli", str(user.id))

    assert main(["users", "reset-2fa", ADMIN]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert main(["users", "reset-2fa", "nobody@example.org"]) == 2
    assert "no user nobody@example.org" in capsys.readouterr().err
    assert [a for a, _, _ in audit_actions(database)].count("user.2fa_reset") == 1


def test_new_recovery_codes_replace_the_old_ones(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    secret, old_codes = enrol(database, ADMIN, utcnow())
    browser = TestClient(create_app())
    log_in(browser, ADMIN)
    later = (datetime.now(UTC) + STEP).timestamp()
    post_form(browser, "/admin/login/code", "/admin/login/code", code=pyotp.TOTP(secret).at(later))
    path = "/admin/account/2fa/recovery-codes"
    wrong = post_form(browser, path, "/admin/account", password="not my password")
    assert wrong.status_code == 422
    page = post_form(browser, path, "/admin/account", password=PASSWORD)
    assert "New recovery codes" in page.text
    new_codes = RECOVERY_CODE.findall(page.text)
    assert len(new_codes) == two_factor.RECOVERY_CODE_COUNT
    assert set(new_codes).isdisjoint(old_codes)
    now = utcnow()
    assert refused(database, ADMIN, old_codes[0], now) == two_factor.WRONG_CODE
    assert verify(database, ADMIN, new_codes[0], now) == "recovery"
    assert [a for a, _, _ in audit_actions(database)] == [
        "user.2fa_enrol",
        "user.2fa_recovery_codes",
        "user.2fa_recovery",
    ]


def test_one_code_in_two_racing_requests_wins_once(postgres_database: Database) -> None:
    """Two sign-ins with one code at the same moment: the conditional UPDATE makes
    the second wait for the first and then see the step taken."""
    database = postgres_database
    add_user(database, ADMIN, Role.ADMIN)
    secret, _ = enrol(database, ADMIN)
    later = T0 + STEP
    code = code_at(secret, later)
    outcome: dict[str, str] = {}

    def second_request() -> None:
        try:
            outcome["second"] = verify(database, ADMIN, code, later, "10.0.0.2")
        except two_factor.TwoFactorError as error:
            outcome["second"] = str(error)

    def someone_waits_for_a_lock() -> bool:
        with database.engine.connect() as connection:
            waiting = connection.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            )
        return bool(waiting)

    with database.session_scope() as session:
        user = session.scalars(select(User).where(User.email == ADMIN)).one()
        outcome["first"] = two_factor.verify_sign_in(
            session, user, code, get_settings(), "10.0.0.1", later
        )
        racer = threading.Thread(target=second_request)
        racer.start()
        wait_until(someone_waits_for_a_lock, 30, "the second sign-in to wait for the first")
    racer.join(timeout=30)
    assert outcome == {"first": "totp", "second": two_factor.REPLAYED_CODE}


def test_the_code_form_answers_429_when_throttled(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    secret, _ = enrol(database, ADMIN, utcnow())
    browser = TestClient(create_app())
    log_in(browser, ADMIN)
    for _ in range(LOGIN_FREE_FAILURES):
        guess = wrong_code(secret, datetime.now(UTC))
        response = post_form(browser, "/admin/login/code", "/admin/login/code", code=guess)
        assert response.status_code == 401
    later = (datetime.now(UTC) + STEP).timestamp()
    held = post_form(
        browser, "/admin/login/code", "/admin/login/code", code=pyotp.TOTP(secret).at(later)
    )
    assert held.status_code == 429
    assert two_factor.TOO_MANY_CODES in held.text
    assert SESSION_COOKIE not in held.cookies
