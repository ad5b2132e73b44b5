"""The compose form: what the editor typed, row by row, and its check field by field.

``IssueForm`` keeps the text as typed (so a refused form comes back as it was
sent); ``clean_issue`` turns it into the arguments of
``alerts.newsletters.create_newsletter``/``revise``, with every problem keyed
by the field it concerns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from alerts.config import Settings
from alerts.models import Newsletter
from alerts.newsletters import (
    DEFAULT_SECTION_DAYS,
    DEFAULT_SECTION_LIMIT,
    MAX_SUBJECT,
    NewsletterError,
    check_placeholders,
    validate_audience,
    validate_sections,
)
from alerts.web.editor.common import field_text, field_texts, split_list

# Empty section slots shown on the compose form (one more than used when editing).
SECTION_SLOTS = 3
MAX_SECTION_DAYS = 90
MAX_SECTION_LIMIT = 50
SECTION_ERROR = re.compile(r"^section (\d+): ")


@dataclass
class SectionRow:
    """One section as the form shows it; ``kind`` is "query" or "picked"."""

    title: str = ""
    kind: str = "query"
    query: str = ""
    regions: str = ""
    days: str = str(DEFAULT_SECTION_DAYS)
    limit: str = str(DEFAULT_SECTION_LIMIT)
    articles: str = ""

    def is_empty(self) -> bool:
        return not (self.title.strip() or self.query.strip() or self.regions.strip()) and not (
            self.articles.strip()
        )


@dataclass
class IssueForm:
    subject: str = ""
    preheader: str = ""
    intro: str = ""
    rows: list[SectionRow] = field(default_factory=list)
    segment: bool = False
    regions: str = ""
    words: str = ""
    languages: str = ""
    frequencies: list[str] = field(default_factory=list)

    @classmethod
    def from_form(cls, form: FormData) -> IssueForm:
        columns = [
            field_texts(form, f"section_{name}")
            for name in ("title", "kind", "query", "regions", "days", "limit", "articles")
        ]
        count = max((len(column) for column in columns), default=0)

        def cell(column: list[str], index: int) -> str:
            return column[index] if index < len(column) else ""

        rows = [SectionRow(*(cell(column, i) for column in columns)) for i in range(count)]
        return cls(
            subject=field_text(form, "subject"),
            preheader=field_text(form, "preheader"),
            intro=field_text(form, "intro").replace("\r\n", "\n"),
            rows=rows,
            segment=field_text(form, "audience") == "segment",
            regions=field_text(form, "audience_regions"),
            words=field_text(form, "audience_words"),
            languages=field_text(form, "audience_languages"),
            frequencies=field_texts(form, "audience_frequency"),
        )

    @classmethod
    def from_issue(cls, newsletter: Newsletter) -> IssueForm:
        rows = []
        for section in newsletter.sections:
            if "article_ids" in section:
                ids = ", ".join(str(i) for i in section["article_ids"])
                rows.append(SectionRow(title=section["title"], kind="picked", articles=ids))
            else:
                rows.append(
                    SectionRow(
                        title=section["title"],
                        query=section.get("query") or "",
                        regions=", ".join(section.get("regions") or []),
                        days=str(section.get("days", DEFAULT_SECTION_DAYS)),
                        limit=str(section.get("limit", DEFAULT_SECTION_LIMIT)),
                    )
                )
        audience = newsletter.audience or {}
        return cls(
            subject=newsletter.subject,
            preheader=newsletter.preheader,
            intro=newsletter.intro_markdown,
            rows=rows,
            segment=bool(audience),
            regions=", ".join(audience.get("regions", [])),
            words=", ".join(audience.get("words", [])),
            languages=", ".join(audience.get("languages", [])),
            frequencies=list(audience.get("frequencies", [])),
        )

    def slots(self) -> list[SectionRow]:
        """The rows to show: what was typed, and room for more."""
        used = [row for row in self.rows if not row.is_empty()]
        return used + [SectionRow() for _ in range(max(SECTION_SLOTS - len(used), 1))]


@dataclass
class CleanIssue:
    subject: str
    preheader: str
    intro: str
    sections: list[dict[str, Any]]
    audience: dict[str, Any]


def _whole_number(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise NewsletterError(f"{what} is a whole number from {low} to {high}")
    return value


def _section(row: SectionRow) -> dict[str, Any]:
    """One form row as ``validate_sections`` expects it; raises on non-numbers."""
    if row.kind == "picked":
        try:
            ids = [int(part) for part in split_list(row.articles)]
        except ValueError as error:
            raise NewsletterError("article ids are numbers, separated by commas") from error
        if not ids:
            raise NewsletterError("pick at least one article (search below)")
        return {"title": row.title, "article_ids": ids}
    return {
        "title": row.title,
        "query": row.query.strip() or None,
        "regions": split_list(row.regions),
        "days": _whole_number(row.days, 1, MAX_SECTION_DAYS, "days"),
        "limit": _whole_number(row.limit, 1, MAX_SECTION_LIMIT, "the number of articles"),
    }


def clean_issue(
    session: Session, form: IssueForm, settings: Settings
) -> tuple[CleanIssue | None, dict[str, str]]:
    """Check each field on its own, so every problem is shown next to its field."""
    errors: dict[str, str] = {}
    subject = " ".join(form.subject.split())
    if not subject or len(subject) > MAX_SUBJECT:
        errors["subject"] = f"a subject of 1 to {MAX_SUBJECT} characters is needed"
    for name, text in (
        ("subject", form.subject),
        ("preheader", form.preheader),
        ("intro", form.intro),
    ):
        try:
            check_placeholders(text)
        except NewsletterError as error:
            errors.setdefault(name, str(error))

    slots = form.slots()
    sections: list[dict[str, Any]] = []
    slot_of: list[int] = []
    for index, row in enumerate(slots):
        if row.is_empty():
            continue
        try:
            sections.append(_section(row))
            slot_of.append(index)
        except NewsletterError as error:
            errors[f"section-{index}"] = str(error)
    cleaned_sections: list[dict[str, Any]] = []
    try:
        cleaned_sections = validate_sections(session, sections, settings)
    except NewsletterError as error:
        message = str(error)
        found = SECTION_ERROR.match(message)
        number = int(found.group(1)) if found else 1
        errors[f"section-{slot_of[number - 1]}"] = message[found.end() :] if found else message

    wanted: dict[str, Any] = {}
    if form.segment:
        wanted = {
            "regions": split_list(form.regions),
            "words": split_list(form.words),
            "languages": split_list(form.languages),
            "frequencies": form.frequencies,
        }
        if not any(wanted.values()):
            errors["audience"] = "a segment needs a region, a word, a language or a frequency"
    audience: dict[str, Any] = {}
    try:
        audience = validate_audience(wanted, settings)
    except NewsletterError as error:
        errors["audience"] = str(error)
    if errors:
        return None, errors
    return CleanIssue(subject, form.preheader, form.intro, cleaned_sections, audience), {}
