"""The process's Mailer: which sender, renderer, signer and composers it uses.

Compiling every template set and opening an SMTP pool cost far more than one
message, so a process keeps one of each: the web app, a CLI command and a
worker all ask :func:`process_mailer`, and their entry points call
:func:`close_process_mailer` when they end (the web app's shutdown, the end
of the command, the worker's shutdown signal).
"""

from __future__ import annotations

import threading
from functools import lru_cache

from alerts.alerting import compose_alerts
from alerts.config import Settings
from alerts.delivery.dkim import DkimSigner
from alerts.delivery.outbound import Mailer
from alerts.delivery.render import MailRenderer
from alerts.delivery.senders import sender_from_settings
from alerts.digest import compose_digests
from alerts.models import DeliveryKind
from alerts.newsletters import compose_newsletters
from alerts.signup import compose_confirmations

_lock = threading.Lock()
# The mailer and the settings it was built from: other settings (a test's, a
# reloaded configuration) get a new one and the old pool is closed.
_current: tuple[Settings, Mailer] | None = None


@lru_cache(maxsize=1)
def process_renderer() -> MailRenderer:
    """The templates compiled once for this process; previews and sends share them."""
    return MailRenderer()


def build_mailer(settings: Settings) -> Mailer:
    """A new Mailer with its own sender; the caller closes it."""
    return Mailer(
        settings=settings,
        sender=sender_from_settings(settings),
        renderer=process_renderer(),
        composers={
            DeliveryKind.ALERT: compose_alerts,
            DeliveryKind.DIGEST: compose_digests,
            DeliveryKind.CONFIRMATION: compose_confirmations,
            DeliveryKind.NEWSLETTER: compose_newsletters,
            DeliveryKind.TEST: compose_newsletters,
        },
        signer=DkimSigner.from_settings(settings),
    )


def process_mailer(settings: Settings) -> Mailer:
    """This process's Mailer for ``settings``, built on first use."""
    global _current
    with _lock:
        if _current is not None and _current[0] is settings:
            return _current[1]
        if _current is not None:
            _current[1].close()
        _current = (settings, build_mailer(settings))
        return _current[1]


def close_process_mailer() -> None:
    """Close the process's SMTP connections; the next use opens new ones."""
    global _current
    with _lock:
        if _current is not None:
            _current[1].close()
            _current = None
