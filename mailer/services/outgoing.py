"""The row of a new outgoing email and the state it starts in, shared by every way an email is
stored: a single send, a batch item, a resend (mailer.services.emails, .batches, .schedule)."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import make_msgid
from django.core.mail.utils import DNS_NAME
from django.utils import timezone

from mailer.errors import InvalidInput
from mailer.models import Email, EmailStatus
from mailer.send_request import outgoing_email
from mailer.validation import Attachment, OutgoingEmail


def email_row(account, outgoing: OutgoingEmail, **fields) -> Email:
    """An unsaved Email of `outgoing` for `account`, with the model's other `fields`."""
    return Email(
        account=account,
        from_email=outgoing.from_email,
        to=list(outgoing.to),
        cc=list(outgoing.cc),
        bcc=list(outgoing.bcc),
        reply_to=list(outgoing.reply_to),
        subject=outgoing.subject,
        text=outgoing.text,
        html=outgoing.html,
        headers=dict(outgoing.headers),
        metadata=dict(outgoing.metadata),
        attachments=[
            {
                "filename": a.filename,
                "content_type": a.content_type,
                # As the client sent it when it came as base64 (the API), so it is not encoded
                # again; the size is kept so that showing it decodes nothing.
                "content": a.encoded or base64.b64encode(a.content).decode(),
                "size": len(a.content),
            }
            for a in outgoing.attachments
        ],
        message_id=make_msgid(domain=DNS_NAME.get_fqdn()),
        **fields,
    )


def outgoing_of(email: Email) -> OutgoingEmail:
    """What a stored email sends, as an OutgoingEmail again (email_row's inverse: a resend),
    validated as any new email is."""
    return outgoing_email(
        from_email=email.from_email,
        to=email.to,
        cc=email.cc,
        bcc=email.bcc,
        reply_to=email.reply_to,
        subject=email.subject,
        text=email.text,
        html=email.html,
        headers=email.headers,
        metadata=email.metadata,
        attachments=[
            Attachment(
                a["filename"], a["content_type"], base64.b64decode(a["content"]), a["content"]
            )
            for a in email.attachments
        ],
    )


def initial_state(*, queued: bool, send_at: datetime | None = None) -> dict[str, Any]:
    """A new email's queue fields: `scheduled` until its `send_at` (the sweep queues it then);
    `queued` and due now for a worker; or `sending`, claimed by this process. Sync mode's claim
    has a short lease: the request's send ends within SEND_BUDGET_SECONDS and its worker is
    killed at WEB_TIMEOUT, so past it the sweep knows this process is gone."""
    now = timezone.now()
    if send_at is not None:
        return {"status": EmailStatus.SCHEDULED, "send_at": send_at, "next_attempt_at": send_at}
    if queued:
        return {"status": EmailStatus.QUEUED, "next_attempt_at": now, "enqueued_at": now}
    lease_end = now + timedelta(seconds=settings.SYNC_SENDING_LEASE_SECONDS)
    return {
        "status": EmailStatus.SENDING,
        "tries": 1,
        "claimed_at": now,
        "lease_expires_at": lease_end,
    }


def all_suppressed_reason(addresses: list[str]) -> str:
    return (
        f"Every recipient is on the suppression list ({', '.join(addresses)}); no provider "
        "was contacted."
    )


def schedule_time(send_at: datetime | None) -> datetime | None:
    """When a send asked for with `send_at` is to be tried: None for now (no send_at, or one
    not in the future: sent at once, as the hosted gateways do); else send_at, which must name
    its time zone and be at most SCHEDULE_MAX_DAYS ahead (InvalidInput naming `send_at`)."""
    if send_at is None:
        return None
    if timezone.is_naive(send_at):
        raise InvalidInput(
            {"send_at": ["needs a time zone"]},
            message="send_at must name its time zone, e.g. 2026-12-24T09:00:00Z or "
            "2026-12-24T10:00:00+01:00.",
        )
    now = timezone.now()
    if send_at <= now:
        return None
    most = timedelta(days=settings.SCHEDULE_MAX_DAYS)
    if send_at - now > most:
        latest = (now + most).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise InvalidInput(
            {"send_at": [f"at most {settings.SCHEDULE_MAX_DAYS:g} days ahead"]},
            message=f"send_at can be at most {settings.SCHEDULE_MAX_DAYS:g} days ahead "
            f"(until {latest}).",
        )
    return send_at
