"""The editors' desk: newsletter issues, the article picker, feed sources.

Editors and admins use it; strangers are sent to the console's login page.
It shares the console's session, CSRF check and audit log
(``alerts.web.console``): every POST needs the form's token, and every change
writes an audit entry in the request's unit of work.
"""

from __future__ import annotations

from fastapi import APIRouter

from alerts.web.editor import articles, issues, sources

router = APIRouter()
router.include_router(issues.router)
router.include_router(articles.router)
router.include_router(sources.router)
