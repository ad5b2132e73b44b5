"""The JSON API: token-authenticated access for other newsroom systems.

It is its own FastAPI app, mounted at ``/api``, so its OpenAPI document
(``/api/openapi.json``) describes exactly these endpoints. Authentication is a
dependency of the router, not a middleware: the sign-up form's public
``/api/...`` endpoints, served by the main app, are untouched by it.

A token acts with its owner's role: editors may read and manage sources and
read articles and newsletters; subscribers, interests and deliveries (people's
data) are for admins, as in the console. Every change is written to the
audit log under the token's owner.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import admin
from alerts import sources as source_rules
from alerts import subscribers as subscriber_rules
from alerts.config import get_settings
from alerts.db import utcnow
from alerts.models import (
    Article,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Frequency,
    Interest,
    Newsletter,
    Role,
    Source,
    Subscriber,
    SubscriberStatus,
    User,
)
from alerts.subscribers import (
    AlreadySubscribedError,
    NewSubscriber,
    SubscriberError,
    add_interest,
    edit_interest,
    erase,
)
from alerts.users import verify_api_token
from alerts.web.dependencies import SessionDep

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# The audit log's "via" for changes made through the API.
VIA = "api"

bearer = HTTPBearer(auto_error=False, description="An API token from `alerts users token`.")


# --- authentication ----------------------------------------------------------------


def api_caller(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    session: SessionDep,
) -> User:
    """The token's owner, or 401 for a missing, unknown, revoked or deactivated token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorised("an Authorization: Bearer <token> header is required")
    user = verify_api_token(session, credentials.credentials, utcnow())
    if user is None:
        raise _unauthorised("the token is not valid")
    # The token's use is noted for good, even when the request is then refused
    # (403) or fails: its owner sees every use of a token that leaked.
    session.commit()
    return user


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def admin_caller(caller: Annotated[User, Depends(api_caller)]) -> User:
    if caller.role is not Role.ADMIN:
        raise HTTPException(status_code=403, detail="this needs an admin's token")
    return caller


CallerDep = Annotated[User, Depends(api_caller)]
AdminDep = Annotated[User, Depends(admin_caller)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
# Far past any real table, well inside every database's 64-bit OFFSET: a bigger
# number is a 422 here instead of an overflow (500) in the driver.
MAX_OFFSET = 1_000_000_000
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]


def _invalid(error: Exception) -> HTTPException:
    return HTTPException(status_code=422, detail=str(error))


# --- schemas ---------------------------------------------------------------------


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class InterestRead(ReadModel):
    id: int
    subscriber_id: int
    query: str | None
    regions: list[str]
    created_at: datetime
    updated_at: datetime


class InterestCreate(BaseModel):
    subscriber_id: int
    query: str | None = Field(default=None, description="keyword query: `referendum OR annex*`")
    regions: list[str] = Field(default_factory=list, description="region names or ids")


class InterestUpdate(BaseModel):
    query: str | None = None
    regions: list[str] | None = None


class SubscriberRead(ReadModel):
    id: int
    email: str
    name: str | None
    status: SubscriberStatus
    frequency: Frequency
    timezone: str
    send_at: time
    weekly_day: int
    language: str
    paused: bool
    consent_source: str | None
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    interests: list[InterestRead]


class SubscriberCreate(BaseModel):
    email: str
    query: str | None = None
    regions: list[str] = Field(default_factory=list)
    frequency: Frequency = Frequency.DAILY
    timezone: str = "UTC"
    send_at: time = time(7, 0)
    language: str = "en"
    confirmed: bool = Field(
        default=False, description="true only when consent was given elsewhere (no opt-in mail)"
    )
    consent_source: str = Field(default="api", max_length=200)


class SubscriberUpdate(BaseModel):
    name: str | None = None
    frequency: Frequency | None = None
    timezone: str | None = None
    send_at: time | None = None
    weekly_day: int | None = Field(default=None, ge=0, le=6)
    language: str | None = None
    paused: bool | None = None
    status: Literal["suspended", "unsuspended"] | None = Field(
        default=None, description="suspend all mail, or lift a suspension"
    )


class ArticleRead(ReadModel):
    id: int
    title: str
    url: str | None
    lead: str
    source_id: int | None
    source_name: str | None
    language: str | None
    tags: list[str]
    author: str | None
    published_at: datetime | None
    ingested_at: datetime
    duplicate_of_id: int | None


class SourceRead(ReadModel):
    id: int
    name: str
    url: str
    poll_minutes: int
    active: bool
    default_tags: list[str]
    next_poll_at: datetime | None
    last_polled_at: datetime | None
    last_status: str | None
    last_error: str | None
    created_at: datetime


# Sources are checked by the domain (alerts.sources): the address through the
# outbound guard, the interval and tag limits; a refusal answers 422 naming why.
class SourceCreate(BaseModel):
    url: str
    name: str | None = None
    poll_minutes: int | None = Field(
        default=None,
        description=f"{source_rules.MIN_POLL_MINUTES} to {source_rules.MAX_POLL_MINUTES}",
    )
    default_tags: list[str] = Field(default_factory=list)
    active: bool = True


class SourceUpdate(BaseModel):
    name: str | None = None
    poll_minutes: int | None = None
    default_tags: list[str] | None = None
    active: bool | None = None


class NewsletterRead(ReadModel):
    id: int
    subject: str
    status: str
    audience: dict[str, Any]
    scheduled_at: datetime | None
    timezone: str
    recurrence: str | None
    auto_query: str | None
    created_at: datetime
    sent_at: datetime | None


class DeliveryRead(ReadModel):
    id: int
    kind: DeliveryKind
    state: DeliveryState
    subscriber_id: int | None
    article_id: int | None
    newsletter_id: int | None
    recipient: str
    attempts: int
    due_at: datetime
    reason: str | None
    created_at: datetime
    sent_at: datetime | None


# --- the router ------------------------------------------------------------------

# Each handler works in the request's session (``SessionDep``), which commits
# before the response is sent: a client that reads back at once sees its own
# write, and a commit that fails is a 500, never a 2xx.
router = APIRouter(dependencies=[Depends(api_caller)])
Row = TypeVar("Row")


def _get(session: Session, model: type[Row], object_id: int, what: str) -> Row:
    found = session.get(model, object_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no {what} {object_id}")
    return found


# Subscribers


@router.get("/subscribers", response_model=list[SubscriberRead], tags=["subscribers"])
def list_subscribers(
    session: SessionDep,
    caller: AdminDep,
    email: str = "",
    status: SubscriberStatus | None = None,
    frequency: Frequency | None = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Any:
    wanted = admin.SubscriberFilter(email=email, status=status, frequency=frequency)
    rows = admin.list_subscribers(session, wanted, limit, offset)
    return [SubscriberRead.model_validate(s) for s in rows]


@router.get("/subscribers/{subscriber_id}", response_model=SubscriberRead, tags=["subscribers"])
def get_subscriber(subscriber_id: int, session: SessionDep, caller: AdminDep) -> Any:
    return SubscriberRead.model_validate(_get(session, Subscriber, subscriber_id, "subscriber"))


@router.post("/subscribers", response_model=SubscriberRead, status_code=201, tags=["subscribers"])
def create_subscriber(data: SubscriberCreate, session: SessionDep, caller: AdminDep) -> Any:
    settings = get_settings()
    now = utcnow()
    try:
        subscriber = subscriber_rules.create_subscriber(
            session,
            caller,
            NewSubscriber(
                email=data.email,
                query=data.query,
                regions=data.regions,
                frequency=data.frequency.value,
                timezone=data.timezone,
                send_at=data.send_at,
                confirmed=data.confirmed,
                language=data.language,
                consent_source=data.consent_source,
            ),
            settings,
            now,
            via=VIA,
        )
    except AlreadySubscribedError as error:
        raise HTTPException(status_code=409, detail="this address is already subscribed") from error
    except SubscriberError as error:
        raise _invalid(error) from error
    return SubscriberRead.model_validate(subscriber)


@router.patch("/subscribers/{subscriber_id}", response_model=SubscriberRead, tags=["subscribers"])
def update_subscriber(
    subscriber_id: int, data: SubscriberUpdate, session: SessionDep, caller: AdminDep
) -> Any:
    subscriber = _get(session, Subscriber, subscriber_id, "subscriber")
    changes = admin.SubscriberChanges(
        name=data.name,
        frequency=data.frequency.value if data.frequency else None,
        timezone=data.timezone,
        send_at=data.send_at,
        weekly_day=data.weekly_day,
        language=data.language,
        paused=data.paused,
    )
    try:
        admin.edit_subscriber(session, caller, subscriber, changes, via=VIA)
    except SubscriberError as error:
        raise _invalid(error) from error
    if data.status == "suspended":
        admin.suspend(session, caller, subscriber, via=VIA)
    if data.status == "unsuspended":
        admin.unsuspend(session, caller, subscriber, via=VIA)
    return SubscriberRead.model_validate(subscriber)


@router.delete("/subscribers/{subscriber_id}", status_code=204, tags=["subscribers"])
def delete_subscriber(subscriber_id: int, session: SessionDep, caller: AdminDep) -> Response:
    _get(session, Subscriber, subscriber_id, "subscriber")
    erase(session, caller, subscriber_id, utcnow(), via=VIA)
    return Response(status_code=204)


# Interests


@router.get("/interests", response_model=list[InterestRead], tags=["interests"])
def list_interests(
    session: SessionDep,
    caller: AdminDep,
    subscriber_id: int | None = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Any:
    query = select(Interest).order_by(Interest.id).limit(limit).offset(offset)
    if subscriber_id is not None:
        query = query.where(Interest.subscriber_id == subscriber_id)
    return [InterestRead.model_validate(i) for i in session.scalars(query)]


@router.get("/interests/{interest_id}", response_model=InterestRead, tags=["interests"])
def get_interest(interest_id: int, session: SessionDep, caller: AdminDep) -> Any:
    return InterestRead.model_validate(_get(session, Interest, interest_id, "interest"))


@router.post("/interests", response_model=InterestRead, status_code=201, tags=["interests"])
def create_interest(data: InterestCreate, session: SessionDep, caller: AdminDep) -> Any:
    now = utcnow()
    subscriber = _get(session, Subscriber, data.subscriber_id, "subscriber")
    try:
        interest = add_interest(
            session,
            caller,
            subscriber,
            data.query,
            data.regions,
            get_settings(),
            now,
            via=VIA,
        )
    except SubscriberError as error:
        raise _invalid(error) from error
    return InterestRead.model_validate(interest)


@router.patch("/interests/{interest_id}", response_model=InterestRead, tags=["interests"])
def update_interest(
    interest_id: int, data: InterestUpdate, session: SessionDep, caller: AdminDep
) -> Any:
    interest = _get(session, Interest, interest_id, "interest")
    wanted_query = data.query if "query" in data.model_fields_set else interest.query
    wanted_regions = data.regions if data.regions is not None else interest.regions
    try:
        edit_interest(
            session,
            caller,
            interest,
            wanted_query,
            wanted_regions,
            get_settings(),
            utcnow(),
            via=VIA,
        )
    except SubscriberError as error:
        raise _invalid(error) from error
    return InterestRead.model_validate(interest)


@router.delete("/interests/{interest_id}", status_code=204, tags=["interests"])
def delete_interest(interest_id: int, session: SessionDep, caller: AdminDep) -> Response:
    interest = _get(session, Interest, interest_id, "interest")
    subscriber_rules.delete_interest(session, caller, interest, via=VIA)
    return Response(status_code=204)


# Articles, newsletters, deliveries (read only)


@router.get("/articles", response_model=list[ArticleRead], tags=["articles"])
def list_articles(
    session: SessionDep,
    caller: CallerDep,
    source_id: int | None = None,
    language: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Any:
    query = select(Article).order_by(Article.id.desc()).limit(limit).offset(offset)
    if source_id is not None:
        query = query.where(Article.source_id == source_id)
    if language:
        query = query.where(Article.language == language)
    return [ArticleRead.model_validate(a) for a in session.scalars(query)]


@router.get("/articles/{article_id}", response_model=ArticleRead, tags=["articles"])
def get_article(article_id: int, session: SessionDep, caller: CallerDep) -> Any:
    return ArticleRead.model_validate(_get(session, Article, article_id, "article"))


@router.get("/newsletters", response_model=list[NewsletterRead], tags=["newsletters"])
def list_newsletters(
    session: SessionDep, caller: CallerDep, limit: Limit = DEFAULT_LIMIT, offset: Offset = 0
) -> Any:
    query = select(Newsletter).order_by(Newsletter.id.desc()).limit(limit).offset(offset)
    return [NewsletterRead.model_validate(n) for n in session.scalars(query)]


@router.get("/newsletters/{newsletter_id}", response_model=NewsletterRead, tags=["newsletters"])
def get_newsletter(newsletter_id: int, session: SessionDep, caller: CallerDep) -> Any:
    return NewsletterRead.model_validate(_get(session, Newsletter, newsletter_id, "newsletter"))


@router.get("/deliveries", response_model=list[DeliveryRead], tags=["deliveries"])
def list_deliveries(
    session: SessionDep,
    caller: AdminDep,
    subscriber_id: int | None = None,
    state: DeliveryState | None = None,
    kind: DeliveryKind | None = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Any:
    query = select(Delivery).order_by(Delivery.id.desc()).limit(limit).offset(offset)
    if subscriber_id is not None:
        query = query.where(Delivery.subscriber_id == subscriber_id)
    if state is not None:
        query = query.where(Delivery.state == state)
    if kind is not None:
        query = query.where(Delivery.kind == kind)
    return [DeliveryRead.model_validate(d) for d in session.scalars(query)]


@router.get("/deliveries/{delivery_id}", response_model=DeliveryRead, tags=["deliveries"])
def get_delivery(delivery_id: int, session: SessionDep, caller: AdminDep) -> Any:
    return DeliveryRead.model_validate(_get(session, Delivery, delivery_id, "delivery"))


# Sources


@router.get("/sources", response_model=list[SourceRead], tags=["sources"])
def list_sources(
    session: SessionDep, caller: CallerDep, limit: Limit = DEFAULT_LIMIT, offset: Offset = 0
) -> Any:
    query = select(Source).order_by(Source.id).limit(limit).offset(offset)
    return [SourceRead.model_validate(s) for s in session.scalars(query)]


@router.get("/sources/{source_id}", response_model=SourceRead, tags=["sources"])
def get_source(source_id: int, session: SessionDep, caller: CallerDep) -> Any:
    return SourceRead.model_validate(_get(session, Source, source_id, "source"))


@router.post("/sources", response_model=SourceRead, status_code=201, tags=["sources"])
def create_source(data: SourceCreate, session: SessionDep, caller: CallerDep) -> Any:
    settings = get_settings()
    form = source_rules.SourceForm(
        data.name or "", data.url, data.poll_minutes or "", data.default_tags
    )
    try:
        source = source_rules.create_source(
            session,
            caller,
            form,
            settings,
            utcnow(),
            active=data.active,
            via=VIA,
        )
    except source_rules.SourceInputError as error:
        raise _source_refused(error) from error
    return SourceRead.model_validate(source)


@router.patch("/sources/{source_id}", response_model=SourceRead, tags=["sources"])
def update_source(
    source_id: int, data: SourceUpdate, session: SessionDep, caller: CallerDep
) -> Any:
    source = _get(session, Source, source_id, "source")
    stored = source_rules.current_form(source)
    form = source_rules.SourceForm(
        stored.name if data.name is None else data.name,
        stored.url,
        stored.poll_minutes if data.poll_minutes is None else data.poll_minutes,
        stored.tags if data.default_tags is None else data.default_tags,
    )
    try:
        source_rules.update_source(
            session,
            caller,
            source,
            form,
            get_settings(),
            utcnow(),
            active=data.active,
            via=VIA,
        )
    except source_rules.SourceInputError as error:
        raise _source_refused(error) from error
    return SourceRead.model_validate(source)


def _source_refused(error: source_rules.SourceInputError) -> HTTPException:
    """An address already polled is a conflict (409); any other refusal is 422."""
    taken = error.field == "url" and "already polls" in str(error)
    return HTTPException(status_code=409 if taken else 422, detail=str(error))


@router.delete("/sources/{source_id}", status_code=204, tags=["sources"])
def delete_source(source_id: int, session: SessionDep, caller: CallerDep) -> Response:
    source = _get(session, Source, source_id, "source")
    source_rules.delete_source(session, caller, source, via=VIA)
    return Response(status_code=204)


def create_api() -> FastAPI:
    """The API app, mounted at ``/api`` by the main app."""
    api = FastAPI(
        title="alerts API",
        version="1",
        description=__doc__,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    api.include_router(router)
    return api
