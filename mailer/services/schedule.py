"""After an email is stored: a scheduled send coming due, canceling one that has not started,
and sending a failed one again as a new email linked to it."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from mailer import listcache
from mailer.errors import Conflict
from mailer.models import MAX_ID, Email, EmailStatus

from .emails import SendResult, email_send
from .outgoing import outgoing_of

logger = logging.getLogger("mailer.services")

# What can still be canceled: nobody has started a try of it (a claim takes `queued` only).
CANCELABLE = (EmailStatus.SCHEDULED, EmailStatus.QUEUED)
RESENDABLE = (EmailStatus.FAILED,)


class NotCancelable(Conflict):
    """The email is being sent or is done: too late to cancel it."""


class NotResendable(Conflict):
    """Only a failed email can be sent again (or it has nobody left to send to)."""


def emails_come_due(*, limit: int = 1000) -> int:
    """The sweep's first step: scheduled emails whose send_at has come are queued, due now, for
    the sweep's next step to enqueue (or, in sync mode, deliver). Each is moved by an UPDATE
    that still finds it `scheduled`, so a cancel that got there first wins. Returns how many."""
    now = timezone.now()
    due = list(
        Email.objects.filter(status=EmailStatus.SCHEDULED, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", "account_id")[:limit]
    )
    if not due:
        return 0
    moved = Email.objects.filter(pk__in=[pk for pk, _ in due], status=EmailStatus.SCHEDULED).update(
        status=EmailStatus.QUEUED, enqueued_at=None, updated_at=now
    )
    for account_id in {account_id for _, account_id in due}:
        listcache.bump(account_id)
    logger.info("%d scheduled email(s) came due", moved)
    return moved


def email_cancel(*, account, email_id: int) -> Email:
    """Cancel one of the account's emails while it is scheduled or queued: it is never tried.
    Email.DoesNotExist for an id of nothing or of another account; NotCancelable once a try
    has started or it is done. One conditional UPDATE decides, so a claim or the sweep racing
    it either took the email first (409) or never will."""
    if not 0 < email_id <= MAX_ID:
        raise Email.DoesNotExist
    now = timezone.now()
    with transaction.atomic():
        canceled = Email.objects.filter(account=account, pk=email_id, status__in=CANCELABLE).update(
            status=EmailStatus.CANCELED,
            next_attempt_at=None,
            enqueued_at=None,
            failure_reason=f"Canceled at {now:%Y-%m-%d %H:%M:%S} UTC; it was never sent.",
            updated_at=now,
        )
        email = Email.objects.get(account=account, pk=email_id)
    if not canceled:
        raise NotCancelable(
            f"Email {email_id} is {email.status}: only a scheduled or queued email can be "
            "canceled, before its delivery starts."
        )
    listcache.bump(account.pk)
    logger.info("email %s canceled", email_id)
    return email


def email_resend(*, account, email_id: int, idempotency_key: str = "") -> SendResult:
    """Send a failed email again: a new email with the original's content, recipients (those
    not left out as suppressed) and requested provider, linked to it (`resent_from`), sent as
    any new email is (now in sync mode, queued in queue mode; suppressions checked again).
    Email.DoesNotExist for an id of nothing or of another account; NotResendable unless the
    original failed and has a recipient."""
    if not 0 < email_id <= MAX_ID:
        raise Email.DoesNotExist
    original = Email.objects.select_related("requested_provider").get(account=account, pk=email_id)
    if original.status not in RESENDABLE:
        raise NotResendable(
            f"Email {email_id} is {original.status}: only a failed email can be resent."
        )
    if not (original.to or original.cc or original.bcc):
        raise NotResendable(
            f"Every recipient of email {email_id} was on the suppression list "
            f"({', '.join(original.suppressed)}); remove them from it and send a new email."
        )
    requested = original.requested_provider
    return email_send(
        account=account,
        outgoing=outgoing_of(original),
        requested_provider=requested if requested is not None and requested.enabled else None,
        idempotency_key=idempotency_key,
        fingerprint=f"resend:{original.pk}" if idempotency_key else "",
        resent_from=original,
    )
