"""Promised mail handed to the send tasks, and the Message-ID each copy carries.

Apart from the send loop (``outbound``) so that the domain modules that
promise mail (sign-up, alerts, digests) do not import the loop, which itself
calls the domain's bounce policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.config import Settings
from alerts.delivery.message import make_message_id
from alerts.jobs import Job, enqueue_after_commit, enqueue_now
from alerts.links import mail_domain
from alerts.models import Delivery, DeliveryKind


def message_id_for(settings: Settings, dedup_key: str) -> str:
    return make_message_id(mail_domain(settings), dedup_key)


SEND_JOB = Job.SEND_DELIVERIES
# Same work on its own queue, so an alert never waits behind a digest run.
URGENT_SEND_JOB = Job.SEND_ALERTS
URGENT_KINDS = (DeliveryKind.ALERT, DeliveryKind.CONFIRMATION, DeliveryKind.TEST)
# A send task carries at least this many recipients when there are that many.
MIN_SEND_BATCH = 100


def queue_sending(
    session: Session,
    delivery_ids: Sequence[int],
    settings: Settings,
    *,
    urgent: bool = False,
    at_once: bool = False,
) -> None:
    """Queue send tasks for ``delivery_ids`` after commit, in batches of recipients.

    ``urgent`` mail (alerts, confirmations) goes to the alerts queue. ``at_once``
    queues inside the open transaction instead (``alerts.jobs.enqueue_now``):
    only for rows already committed as queued.
    """
    size = max(settings.send_batch_size, MIN_SEND_BATCH)
    job = URGENT_SEND_JOB if urgent else SEND_JOB
    ids = sorted(delivery_ids)
    for start in range(0, len(ids), size):
        batch = ids[start : start + size]
        if at_once:
            enqueue_now(job, delivery_ids=batch)
        else:
            enqueue_after_commit(session, job, delivery_ids=batch)


def queue_sending_by_kind(
    session: Session, delivery_ids: Sequence[int], settings: Settings, *, at_once: bool = False
) -> None:
    """Queue a mix of kinds (the sweeper's finds), each on the queue of its kind."""
    if not delivery_ids:
        return
    urgent = set(
        session.scalars(
            select(Delivery.id).where(
                Delivery.id.in_(delivery_ids), Delivery.kind.in_(URGENT_KINDS)
            )
        )
    )
    queue_sending(
        session, [i for i in delivery_ids if i in urgent], settings, urgent=True, at_once=at_once
    )
    queue_sending(session, [i for i in delivery_ids if i not in urgent], settings, at_once=at_once)
