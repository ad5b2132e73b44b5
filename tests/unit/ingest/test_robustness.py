"""Arbitrary input never escapes as anything but a SourceError, and entries add up."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.ingest import SourceError, parse_document

# Prefixes that steer random bytes into each parser's code path.
PREFIXES = (b"", b"<rss version='2.0'><channel><item><title>", b"{", b"[", b"<html><body><p>")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(PREFIXES), payload=st.binary(max_size=400))
def test_random_bytes_parse_or_raise_source_error(prefix: bytes, payload: bytes) -> None:
    try:
        result = parse_document(prefix + payload)
    except SourceError as exc:
        reason = str(exc)
    else:
        reason = ""
        for article in result.articles:
            assert article.title or article.body
            assert article.published is None or article.published.utcoffset() is not None
        for error in result.errors:
            assert error.reason
    assert "\n" not in reason


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(st.text(max_size=80), max_size=12))
def test_random_text_lines_as_jsonl_each_count_once(lines: list[str]) -> None:
    data = "\n".join("{" + line for line in lines).encode("utf-8")
    try:
        result = parse_document(data, location="random.jsonl")
    except SourceError:
        return
    non_blank = sum(1 for line in data.decode("utf-8").splitlines() if line.strip())
    assert len(result.articles) + len(result.errors) == non_blank
