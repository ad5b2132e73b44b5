"""The house reads top-down: edges (web, cli, workers) -> domain -> text/regions/db/config.

Each module's imports are read from its source (every ``import``, also those
inside functions), so an arrow that points back up fails here, not in review.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

EDGES = ("alerts.web", "alerts.cli", "alerts.__main__", "workers")
# Below the domain: what the domain is built on, knowing nothing of it.
FOUNDATION = (
    "alerts.text",
    "alerts.regions",
    "alerts.db",
    "alerts.config",
    "alerts.errors",
    "alerts.netguard",
)
# Frameworks only the edges may use (the domain reads cron lines with
# APScheduler's trigger, but only the clock runs its scheduler).
EDGE_FRAMEWORKS = ("celery", "kombu", "fastapi", "starlette", "uvicorn", "apscheduler.schedulers")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path) -> Iterator[str]:
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level and package:  # a relative import, rare here
                yield ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1]])
            elif node.module:
                yield node.module


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def modules() -> list[tuple[str, Path]]:
    paths = [*(ROOT / "alerts").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]
    return sorted((module_name(path), path) for path in paths if "migrations" not in path.parts)


def arrows_up(allowed: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for name, path in modules():
        if not within(name, allowed):
            continue
        found += [f"{name} -> {target}" for target in imported(path) if within(target, forbidden)]
    return found


def test_the_walk_sees_the_whole_house() -> None:
    names = [name for name, _ in modules()]
    assert len(names) > 80
    assert {"alerts.jobs", "alerts.web.app", "alerts.cli", "workers.tasks"} <= set(names)


def test_the_domain_imports_no_edge_and_no_edge_framework() -> None:
    domain = tuple(
        name for name, _ in modules() if name.startswith("alerts.") and not within(name, EDGES)
    )
    assert arrows_up(domain, (*EDGES, *EDGE_FRAMEWORKS)) == []


def test_the_foundation_imports_nothing_above_it() -> None:
    above = tuple(
        name for name, _ in modules() if name.startswith("alerts.") and not within(name, FOUNDATION)
    )
    assert arrows_up(FOUNDATION, (*above, *EDGES)) == []


@pytest.mark.parametrize(("edge", "other"), [("workers", "alerts.web"), ("workers", "alerts.cli")])
def test_edges_do_not_lean_on_each_other(edge: str, other: str) -> None:
    assert arrows_up((edge,), (other,)) == []
