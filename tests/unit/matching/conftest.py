"""Shared fixtures: the gazetteer and our hand-written articles, analysed once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from alerts.matching import Document, Gazetteer, analyze, load_gazetteer

FIXTURES = Path(__file__).parent / "fixtures"


def load_raw_articles() -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "articles.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def gz() -> Gazetteer:
    return load_gazetteer()


@pytest.fixture(scope="session")
def raw_articles() -> list[dict[str, Any]]:
    return load_raw_articles()


def analyze_raw(raw: dict[str, Any], gz: Gazetteer) -> Document:
    return analyze(
        raw["id"],
        title=raw["title"],
        body=raw["body"],
        tags=raw["tags"],
        source=raw["source"],
        language=raw["language"],
        gazetteer=gz,
    )


@pytest.fixture(scope="session")
def docs(raw_articles: list[dict[str, Any]], gz: Gazetteer) -> dict[str, Document]:
    return {raw["id"]: analyze_raw(raw, gz) for raw in raw_articles}
