"""Signed tokens: round trip, tampering, purpose binding, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.tokens import ExpiredToken, InvalidToken, sign_token, verify_token

SECRET = "test-secret"
NOW = datetime(2024, 5, 3, 7, 0, tzinfo=UTC)


def test_round_trip() -> None:
    token = sign_token(SECRET, "unsubscribe", 42)
    assert verify_token(SECRET, "unsubscribe", token, now=NOW) == "42"
    assert all(char.isalnum() or char in "-_." for char in token)


@given(subject=st.text(max_size=40))
def test_any_subject_round_trips(subject: str) -> None:
    token = sign_token(SECRET, "p", subject)
    assert verify_token(SECRET, "p", token, now=NOW) == subject


def test_tampered_tokens_are_invalid() -> None:
    token = sign_token(SECRET, "unsubscribe", 42)
    payload, mac = token.split(".")
    forged = sign_token(SECRET, "unsubscribe", 43).split(".")[0]
    for bad in [f"{forged}.{mac}", f"{payload}.{mac[:-2]}AA", token + "x", "", "abc", "a.b.c"]:
        with pytest.raises(InvalidToken):
            verify_token(SECRET, "unsubscribe", bad, now=NOW)
    with pytest.raises(InvalidToken):
        verify_token("other-secret", "unsubscribe", token, now=NOW)


def test_wrong_purpose_is_invalid() -> None:
    token = sign_token(SECRET, "unsubscribe", 42)
    with pytest.raises(InvalidToken, match="purpose"):
        verify_token(SECRET, "preferences", token, now=NOW)


def test_expiry() -> None:
    token = sign_token(SECRET, "confirm", 7, expires_at=NOW + timedelta(hours=48))
    assert verify_token(SECRET, "confirm", token, now=NOW + timedelta(hours=47)) == "7"
    with pytest.raises(ExpiredToken):
        verify_token(SECRET, "confirm", token, now=NOW + timedelta(hours=48))
    assert issubclass(ExpiredToken, InvalidToken)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        sign_token(SECRET, "confirm", 7, expires_at=datetime(2024, 5, 3))
    with pytest.raises(ValueError, match="aware"):
        verify_token(SECRET, "confirm", sign_token(SECRET, "confirm", 7), now=datetime(2024, 5, 3))
