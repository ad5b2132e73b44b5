"""Nesting limits: a deep query is refused where it gets too deep, before any
recursion, and every walk of an accepted tree stays far from Python's limit."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from alerts.config import Settings
from alerts.matching import Interest, InterestIndex, analyze, prepare_interest
from alerts.matching.index import _Costs as Costs
from alerts.matching.index import explain, required_clauses, verify
from alerts.matching.query import (
    DEFAULT_MAX_DEPTH,
    MAX_DEPTH_CEILING,
    QueryError,
    parse_query,
    to_text,
)
from alerts.matching.reference import evaluate, reference_match
from alerts.regions import Gazetteer

# Frames a walk of the deepest accepted tree may use on top of its caller's:
# the claim in alerts.matching.query is "a few hundred".
FRAME_BUDGET = 300


def nested(depth: int, term: str = "referendum") -> str:
    return "(" * depth + term + ")" * depth


def test_the_attack_query_is_refused_where_it_gets_too_deep() -> None:
    with pytest.raises(QueryError) as info:
        parse_query(nested(240))
    assert info.value.position == DEFAULT_MAX_DEPTH  # the 17th '('
    assert "nested too deeply" in info.value.message
    assert f"more than {DEFAULT_MAX_DEPTH} levels" in info.value.message
    assert info.value.caret().splitlines()[-1] == " " * DEFAULT_MAX_DEPTH + "^"


def test_any_depth_is_refused_without_recursion() -> None:
    # far deeper than Python could recurse: the count is a loop over tokens
    text = nested(200_000)
    with pytest.raises(QueryError) as info:
        parse_query(text, max_length=len(text))
    assert info.value.position == DEFAULT_MAX_DEPTH


@pytest.mark.parametrize(
    ("query", "position"),
    [
        (nested(16), None),
        (nested(17), 16),
        ("-" * 16 + "a b", None),  # a negation is a level too
        ("b " + "-" * 17 + "a", 18),
        ("b " + "NOT " * 17 + "a", 66),
        ("x " + "-(" * 8 + "a" + ")" * 8, None),
        ("x " + "-(" * 8 + "-a" + ")" * 8, 18),
        ("x " + "-(" * 9 + "a" + ")" * 9, 18),
        # siblings do not add up: only what is open at once counts
        (" ".join([nested(16, f"w{i}") for i in range(3)]), None),
        ("-a " * 20 + "b", None),
        ("x " + "-(" * 7 + "-title:(a)" + ")" * 7, None),
        ("x " + "-(" * 8 + "-title:(a)" + ")" * 8, 18),
    ],
)
def test_levels_are_parentheses_and_negations_open_at_once(
    query: str, position: int | None
) -> None:
    if position is None:
        parse_query(query, max_terms=100)
        return
    with pytest.raises(QueryError) as info:
        parse_query(query, max_terms=100)
    assert info.value.position == position
    assert "nested too deeply" in info.value.message


def test_unbalanced_parentheses_still_get_their_own_message() -> None:
    with pytest.raises(QueryError, match="unbalanced"):
        parse_query("a) (b")
    with pytest.raises(QueryError, match="unbalanced"):
        parse_query("((a)")


def test_the_limit_is_configurable_within_the_ceiling() -> None:
    parse_query(nested(2), max_depth=2)
    with pytest.raises(QueryError, match="more than 2 levels"):
        parse_query(nested(3), max_depth=2)
    parse_query(nested(MAX_DEPTH_CEILING), max_depth=MAX_DEPTH_CEILING)
    with pytest.raises(ValueError, match="between 1 and"):
        parse_query("a", max_depth=MAX_DEPTH_CEILING + 1)


def test_the_setting_cannot_exceed_the_ceiling() -> None:
    assert Settings().query_max_depth == DEFAULT_MAX_DEPTH
    with pytest.raises(ValueError, match="less than or equal"):
        Settings(query_max_depth=MAX_DEPTH_CEILING + 1)


def test_the_index_applies_its_depth_limit(gz: Gazetteer) -> None:
    index = InterestIndex(gazetteer=gz, max_depth=3)
    index.add(Interest(id="ok", query=nested(3)))
    with pytest.raises(QueryError, match="nested too deeply"):
        index.add(Interest(id="deep", query=nested(4)))
    with pytest.raises(QueryError, match="nested too deeply"):
        prepare_interest(Interest(id="deep", query=nested(17)), gz)
    assert len(index) == 1


def deepest_query(levels: int) -> str:
    """A query that uses every level and turns each into a tree node:
    ``w0 OR (v0 (w1 OR (v1 ( ... ))))``, with a negated group at the bottom."""
    opened = []
    for level in range(0, levels - 2, 2):
        opened.append(f"w{level} OR (v{level} (")
    return "".join(opened) + "annex* -(tbilisi)" + "))" * len(opened)


def stack_depth() -> int:
    depth, frame = 0, sys._getframe()
    while frame.f_back is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


@contextmanager
def recursion_budget(frames: int) -> Iterator[None]:
    """Run with Python's recursion limit only ``frames`` above the current depth."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(stack_depth() + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def test_every_walk_of_the_deepest_tree_fits_a_small_budget(gz: Gazetteer) -> None:
    text = deepest_query(MAX_DEPTH_CEILING)
    limits = {"max_length": 10_000, "max_terms": 1000, "max_depth": MAX_DEPTH_CEILING}
    doc = analyze("d", title="Annexation", body="w0 v0 w2 referendum", language="en", gazetteer=gz)
    index = InterestIndex(gazetteer=gz, **limits)
    steps: list[Callable[[], object]] = [
        lambda: parse_query(text, **limits),
        lambda: prepare_interest(Interest(id="i", query=text), gz, **limits),
        lambda: index.add(Interest(id="i", query=text)),
        lambda: index.match(doc),
    ]
    with recursion_budget(FRAME_BUDGET):
        for step in steps:
            step()
    node = parse_query(text, **limits)
    prepared = prepare_interest(Interest(id="i", query=text), gz, **limits)
    with recursion_budget(FRAME_BUDGET):
        to_text(node)
        assert verify(node, doc) is evaluate(node, doc)
        required_clauses(node, Costs(None))
        explain(prepared, doc, gz)
    assert index.match_ids(doc) == ["i"]
    with pytest.raises(QueryError, match="nested too deeply"):
        reference_match([Interest(id="deep", query=nested(240))], doc, gz)
