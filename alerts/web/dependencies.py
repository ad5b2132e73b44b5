"""The web's unit of work: one database session per request, committed before the response.

FastAPI (0.165 here) runs the teardown of a ``yield`` dependency after the
response has been sent, unless the dependency is declared with
``scope="function"``: then it runs as soon as the route returns, before the
first byte goes out. ``SessionDep`` is declared so: a client that has its
answer (a redirect to a page that reads the change, a webhook secret shown
once) can rely on the write being committed, and an exception anywhere in the
route or its dependencies rolls the whole request back; a commit that fails
is a 500, never a 2xx for work that was lost.
``tests/integration/test_web_unit_of_work.py`` pins both.

``FormDep`` is the posted form once its CSRF token has been checked: a plain
``def`` route takes it instead of awaiting ``request.form()`` itself, so the
route can do its blocking database work off the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from alerts.db import get_database
from alerts.web.security import require_csrf

# Set by a route class that turns an exception into a page (see ``roll_back``).
ROLLBACK_KEY = "alerts.rollback"


def open_session(request: Request) -> Iterator[Session]:
    """The request's session: commit when the route returns, roll back when it raises."""
    with get_database().session_scope() as session:
        yield session
        if request.scope.get(ROLLBACK_KEY):
            session.rollback()


def roll_back(request: Request) -> None:
    """End this request's unit of work without committing.

    For error handlers inside the route (the reader pages render an
    ``HTTPException`` as a page, so the session dependency never sees it).
    """
    request.scope[ROLLBACK_KEY] = True


SessionDep = Annotated[Session, Depends(open_session, scope="function")]


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token has been checked (Starlette caches the parse)."""
    await require_csrf(request)
    return await request.form()


FormDep = Annotated[FormData, Depends(checked_form)]
