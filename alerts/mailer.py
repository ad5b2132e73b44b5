"""The configured Mailer: which sender, renderer, signer and composers a process uses."""

from __future__ import annotations

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


def default_mailer(settings: Settings) -> Mailer:
    return Mailer(
        settings=settings,
        sender=sender_from_settings(settings),
        renderer=MailRenderer(),
        composers={
            DeliveryKind.ALERT: compose_alerts,
            DeliveryKind.DIGEST: compose_digests,
            DeliveryKind.CONFIRMATION: compose_confirmations,
            DeliveryKind.NEWSLETTER: compose_newsletters,
            DeliveryKind.TEST: compose_newsletters,
        },
        signer=DkimSigner.from_settings(settings),
    )
