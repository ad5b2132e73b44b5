"""The query parser: structure, canonical form, and refusals that say where."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.matching.query import (
    DEFAULT_MAX_TERMS,
    And,
    FieldValue,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    QueryError,
    Word,
    _parse_simple,
    _Parser,
    leaves,
    parse_query,
    to_text,
)


def test_bare_word_is_folded() -> None:
    assert parse_query("Südossetien") == Word("sudossetien")


def test_implicit_and_binds_tighter_than_or() -> None:
    node = parse_query("a b OR c")
    assert node == Or((And((Word("a"), Word("b"))), Word("c")))


def test_explicit_and_is_the_same_as_implicit() -> None:
    assert to_text(parse_query("a AND b")) == to_text(parse_query("a b"))


def test_not_binds_tighter_than_and() -> None:
    assert parse_query("a NOT b c") == And((Word("a"), Not(Word("b")), Word("c")))


def test_leading_minus_is_not() -> None:
    assert parse_query("a -b") == And((Word("a"), Not(Word("b"))))


def test_hyphen_inside_a_word_is_a_phrase_not_a_negation() -> None:
    assert parse_query("de-facto") == Phrase(("de", "facto"))


def test_parentheses_group() -> None:
    assert parse_query("(a OR b) c") == And((Or((Word("a"), Word("b"))), Word("c")))


def test_phrase_and_prefix() -> None:
    assert parse_query('"South Ossetia" annex*') == And(
        (Phrase(("south", "ossetia")), Prefix("annex"))
    )


def test_lowercase_or_is_a_word() -> None:
    assert parse_query("war or peace") == And((Word("war"), Word("or"), Word("peace")))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("title:referendum", Word("referendum", "title")),
        ('title:"de facto"', Phrase(("de", "facto"), "title")),
        ("title:annex*", Prefix("annex", "title")),
        ("tag:Politics", FieldValue("tag", "politics")),
        ('source:"Caucasus Watch"', FieldValue("source", "caucasus watch")),
        ("lang:RU", FieldValue("lang", "ru")),
        ("lang:en-GB", FieldValue("lang", "en")),
        ("region:abkhazia", FieldValue("region", "abkhazia")),
        ('region:"South Ossetia"', FieldValue("region", "south ossetia")),
        ("TITLE:x", Word("x", "title")),
    ],
)
def test_fields(query: str, expected: object) -> None:
    assert parse_query(query) == expected


def test_field_applies_to_a_group() -> None:
    node = parse_query("tag:(politics OR economy) title:(vote OR poll)")
    assert node == And(
        (
            Or((FieldValue("tag", "politics"), FieldValue("tag", "economy"))),
            Or((Word("vote", "title"), Word("poll", "title"))),
        )
    )


def test_canonical_text_ignores_order_and_case() -> None:
    assert to_text(parse_query("B a OR c")) == to_text(parse_query("c OR (a b)"))


@pytest.mark.parametrize(
    ("query", "position", "fragment"),
    [
        ("", 0, "empty"),
        ("   ", 0, "empty"),
        ("-foo", 0, "not negated"),
        ("NOT a", 0, "not negated"),
        ("-a -b", 0, "not negated"),
        ("a OR -b", 5, "not negated"),
        ("(a b", 0, "unbalanced '('"),
        ("a (b (c)", 2, "unbalanced '('"),
        ("a b)", 3, "unbalanced ')'"),
        (")", 0, "unbalanced ')'"),
        ('a "b c', 2, "unterminated quote"),
        ("colour:red", 0, "unknown field"),
        ("a colour:red", 2, "unknown field"),
        ("title: x", 0, "needs a value"),
        ("a OR", 4, "expected a term"),
        ("OR a", 0, "expected a term"),
        ("()", 0, "empty parentheses"),
        ("a*b", 1, "only allowed at the end"),
        ("an*", 0, "at least 3"),
        ("title:(tag:x)", 7, "nested"),
        ("!!! ???", 0, "no searchable term"),
        ("a OR !!!", 0, "OR branch"),
        ("NOT", 3, "expected a term"),
        ("a NOT )", 6, "unbalanced"),
    ],
)
def test_refusals_say_where(query: str, position: int, fragment: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_query(query)
    assert info.value.position == position
    assert fragment in info.value.message
    caret_line = info.value.caret().splitlines()[-1]
    assert caret_line == " " * position + "^"


def test_length_limit() -> None:
    parse_query("a" * 20, max_length=20)
    with pytest.raises(QueryError) as info:
        parse_query("a" * 21, max_length=20)
    assert info.value.position == 20
    assert "longer than 20" in info.value.message


def test_term_limit_points_at_the_first_term_over() -> None:
    parse_query("a b c", max_terms=3)
    with pytest.raises(QueryError) as info:
        parse_query("a b c d", max_terms=3)
    assert info.value.position == 6
    assert "too many terms" in info.value.message


def test_default_limits() -> None:
    parse_query(" ".join(f"w{i}" for i in range(32)))
    with pytest.raises(QueryError):
        parse_query(" ".join(f"w{i}" for i in range(33)))
    with pytest.raises(QueryError):
        parse_query("x" * 501)


def test_error_message_has_a_caret() -> None:
    with pytest.raises(QueryError) as info:
        parse_query("a (b")
    assert str(info.value).endswith("a (b\n  ^")


QUERY_ALPHABET = st.sampled_from(
    [*"abcxyzäйё  -*:()\"'’", "OR", "AND", "NOT", "title:", "tag:", "region:", "lang:"]
)


def parse_or_error(text: str) -> Node | QueryError:
    """The parse result, or the refusal; anything else escaping is a bug."""
    try:
        return parse_query(text)
    except QueryError as exc:
        return exc


@settings(max_examples=600, deadline=None)
@given(st.text(max_size=80))
def test_parser_never_crashes_on_arbitrary_text(text: str) -> None:
    result = parse_or_error(text)
    if isinstance(result, QueryError):
        assert 0 <= result.position <= len(text)
        assert result.caret().endswith("^")


@settings(max_examples=600, deadline=None)
@given(st.lists(QUERY_ALPHABET, max_size=30).map("".join))
def test_parser_never_crashes_on_query_like_text(text: str) -> None:
    result = parse_or_error(text)
    if isinstance(result, QueryError):
        assert 0 <= result.position <= len(text)
    else:
        # the canonical form is itself a valid query with the same meaning
        assert to_text(parse_query(to_text(result))) == to_text(result)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(["a", "Bb", "c1", "42", "OR", "and", "NOT", "x" * 3]),
        min_size=1,
        max_size=6,
    ).map(" ".join)
)
def test_fast_path_builds_what_the_full_parser_builds(text: str) -> None:
    fast = _parse_simple(text, DEFAULT_MAX_TERMS)
    if fast is not None:
        full = _Parser(text, DEFAULT_MAX_TERMS).parse()
        assert fast == full
        assert [leaf.pos for leaf, _ in leaves(fast)] == [leaf.pos for leaf, _ in leaves(full)]
