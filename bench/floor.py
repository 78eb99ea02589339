"""The durable floor of items 1 and 4: the least a delivery service that keeps every email,
attempt and outcome must do per email, with nothing of ours around it. Shared by the sync view
(bench/floor_views.py) and the Celery task (bench/floor_celery.py); needs Django set up.

Per email: the Email row is stored (by the caller: the view's INSERT, or the task's claim of a
queued row); the message is built with Django's EmailMultiAlternatives (text, HTML as its
alternative, the row's Message-ID) and sent over one SMTP connection kept per process to the
sink (the host, port and timeout of bench/settings.py's "bench-peer" mailer); then one
transaction inserts the DeliveryAttempt (outcome `sent`) and marks the Email `sent`, as
mailer.services.emails.email_finish does without webhooks, metrics or the list cache.

BENCH_FLOOR_ACCOUNT_ID (set by bench/context.py) names the account, the `floor` account; its
`sink` provider config is the attempts' provider.
"""

from __future__ import annotations

import functools
import os
import smtplib
import threading
import time
from datetime import timedelta
from email import policy
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, make_msgid
from django.core.mail.utils import DNS_NAME
from django.db import transaction
from django.utils import timezone

from mailer.models import DeliveryAttempt, Email, ProviderConfig
from mailer.vocabulary import EmailStatus, Outcome

ACCOUNT_VARIABLE = "BENCH_FLOOR_ACCOUNT_ID"
PROVIDER_NAME = "sink"


@functools.cache
def sink_config() -> ProviderConfig:
    """The floor account's sink provider config, read once per process."""
    account_id = int(os.environ[ACCOUNT_VARIABLE])
    return ProviderConfig.objects.get(account_id=account_id, name=PROVIDER_NAME)


def new_row(payload: dict, **state) -> Email:
    """An unsaved Email of the floor account for the load generator's JSON body (from, to,
    subject, text, html), with a Message-ID of its own, as the API stores one."""
    to = payload["to"] if isinstance(payload["to"], list) else [payload["to"]]
    return Email(
        account_id=sink_config().account_id,
        from_email=payload["from"],
        to=to,
        subject=payload["subject"],
        text=payload["text"],
        html=payload.get("html", ""),
        message_id=make_msgid(domain=DNS_NAME.get_fqdn()),
        **state,
    )


def claimed_state(lease_seconds: float) -> dict:
    """The fields of an email claimed for its first try now (status `sending`)."""
    now = timezone.now()
    return {
        "status": EmailStatus.SENDING,
        "tries": 1,
        "claimed_at": now,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
    }


class KeptConnection:
    """One SMTP connection per process to the sink, opened on first use (so after a fork) and
    opened again when the kept one turns out closed; one message at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._smtp: smtplib.SMTP | None = None

    def send(self, sender: str, recipients: list[str], raw: bytes) -> None:
        with self._lock:
            try:
                self._client().sendmail(sender, recipients, raw)
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                self._drop()  # the sink closed the kept connection: once more on a new one
                self._send_or_drop(sender, recipients, raw)
            except OSError:  # smtplib's errors too: the connection's state is unknown
                self._drop()
                raise

    def _send_or_drop(self, sender: str, recipients: list[str], raw: bytes) -> None:
        try:
            self._client().sendmail(sender, recipients, raw)
        except OSError:
            self._drop()
            raise

    def _client(self) -> smtplib.SMTP:
        if self._smtp is None:
            options = settings.MAILERS[settings.PEER_MAILER]["OPTIONS"]
            self._smtp = smtplib.SMTP(options["host"], options["port"], timeout=options["timeout"])
        return self._smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()


KEPT = KeptConnection()


def message_bytes(row: Email) -> bytes:
    """The row's message as Django builds it (text, the HTML as its alternative), as bytes."""
    message = EmailMultiAlternatives(
        subject=row.subject,
        body=row.text,
        from_email=row.from_email,
        to=row.to,
        headers={"Message-ID": row.message_id},
    )
    message.attach_alternative(row.html, "text/html")
    return message.message(policy=policy.SMTP).as_bytes()


def deliver(row: Email) -> None:
    """Send a claimed (`sending`) row on the kept connection, then store the attempt and the
    outcome in one transaction. An SMTP error propagates: the row stays `sending`."""
    config = sink_config()
    started, clock = timezone.now(), time.perf_counter()
    raw = message_bytes(row)
    recipients = [parseaddr(address)[1] for address in row.to]
    KEPT.send(parseaddr(row.from_email)[1], recipients, raw)
    seconds = time.perf_counter() - clock
    now = timezone.now()
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            email=row,
            provider=config,
            provider_kind=config.kind,
            provider_name=config.name,
            outcome=Outcome.SENT,
            provider_message_id=row.message_id,
            started_at=started,
            duration_ms=round(seconds * 1000),
            try_number=max(1, row.tries),
        )
        Email.objects.filter(
            pk=row.pk, status=EmailStatus.SENDING, claimed_at=row.claimed_at
        ).update(
            status=EmailStatus.SENT,
            sent_via=config,
            sent_via_kind=config.kind,
            provider_message_id=row.message_id,
            sent_at=now,
            next_attempt_at=None,
            updated_at=now,
        )
