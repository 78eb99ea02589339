"""Putting emails on the broker (queue mode). A message only says "look at email N": the row is
the source of truth, so a message that is lost is sent again by the sweep, and one that comes
twice is turned away by the claim."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from emailservice.celery import app as celery_app
from mailer.models import Email, EmailStatus

logger = logging.getLogger("mailer.queue")

DELIVER_TASK = "mailer.tasks.deliver_email"


def _publish(email_id: int) -> None:
    # retry=False and the broker's short timeouts (settings) keep a request from hanging when
    # the broker is away; the email then waits for the sweep.
    celery_app.send_task(DELIVER_TASK, args=[email_id], retry=False)


def _publish_after_commit(email_id: int) -> None:
    try:
        _publish(email_id)
    except Exception:  # the broker is down or unreachable: the sweep enqueues it later
        logger.warning(
            "could not enqueue email %s; the sweep will enqueue it once the broker is back",
            email_id,
            exc_info=True,
        )
        try:
            Email.objects.filter(pk=email_id, status=EmailStatus.QUEUED).update(enqueued_at=None)
        except Exception:  # REQUEUE_AFTER_SECONDS still covers it
            logger.exception("email %s: could not mark it as not enqueued", email_id)


def email_enqueue(*, email: Email) -> None:
    """Enqueue a stored `queued` email's delivery once the transaction that stored it commits
    (a worker must be able to read it). Never raises: failures are logged and left to the sweep.
    """
    transaction.on_commit(lambda: _publish_after_commit(email.pk))


def emails_enqueue(*, email_ids: list[int]) -> int:
    """Enqueue each email (the sweep); stop at the first failure. Returns how many went out.

    They are marked enqueued before publishing, so that a worker's own later write (a retry
    scheduled for later) is never overwritten by this mark.
    """
    Email.objects.filter(pk__in=email_ids, status=EmailStatus.QUEUED).update(
        enqueued_at=timezone.now()
    )
    for index, email_id in enumerate(email_ids):
        try:
            _publish(email_id)
        except Exception:
            logger.warning(
                "broker unreachable: %d of %d email(s) enqueued, the rest wait for the next sweep",
                index,
                len(email_ids),
                exc_info=True,
            )
            Email.objects.filter(pk__in=email_ids[index:], status=EmailStatus.QUEUED).update(
                enqueued_at=None
            )
            return index
    return len(email_ids)
