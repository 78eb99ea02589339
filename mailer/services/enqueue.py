"""Putting emails on the broker (queue mode). A message only says "look at email N" (or, from
the sweep, "at emails N, M, ..."): the row is the source of truth, so a message that is lost is
sent again by the sweep, and one that comes twice is turned away by the claim."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from emailservice.celery import app as celery_app
from mailer.models import Email, EmailStatus

logger = logging.getLogger("mailer.queue")

DELIVER_TASK = "mailer.tasks.deliver_email"
DELIVER_CHUNK_TASK = "mailer.tasks.deliver_emails"

# The sweep's due emails go out in chunks, one message each (one broker round trip, one task's
# overhead for the lot), but spread over at least SPREAD messages so that a few due emails are
# still tried in parallel by the worker processes, and at most CHUNK_MAX emails a message.
CHUNK_MAX = 50
SPREAD = 16


def chunk_time_limits(size: int) -> tuple[float, float]:
    """(soft, hard) Celery time limits of a message of `size` emails: one try's worth of the
    settings' (CELERY_TASK_SOFT_TIME_LIMIT, CELERY_TASK_TIME_LIMIT: 0.9 and 1 x
    DELIVERY_TIME_LIMIT) per email, so a chunk isn't killed mid-chunk by a limit sized for one
    email, and each try stays bounded by its own budget (0.8 x DELIVERY_TIME_LIMIT)."""
    return 0.9 * size * settings.DELIVERY_TIME_LIMIT, size * settings.DELIVERY_TIME_LIMIT


def chunk_size(count: int) -> int:
    """Emails per message for `count` due emails. Also small enough that a chunk whose every try
    used its whole time ends within the broker's visibility timeout, after which the broker
    would hand the message out again while it still runs (harmless, the claim turns each email
    away, but wasted)."""
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    most = max(1, min(CHUNK_MAX, int(visibility // settings.DELIVERY_TIME_LIMIT)))
    return max(1, min(most, -(-count // SPREAD)))


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
    (a worker must be able to read it): one message. Never raises: failures are logged and left
    to the sweep.
    """
    transaction.on_commit(lambda: _publish_after_commit(email.pk))


def _publish_chunk(chunk: list[int], producer) -> None:
    soft, hard = chunk_time_limits(len(chunk))
    celery_app.send_task(
        DELIVER_CHUNK_TASK,
        args=[chunk],
        retry=False,
        producer=producer,
        soft_time_limit=soft,
        time_limit=hard,
    )


def emails_enqueue(*, email_ids: list[int]) -> int:
    """Enqueue the emails (the sweep) in chunks, one message each (chunk_size), over one broker
    connection; stop at the first failure. Returns how many emails went out.

    They are marked enqueued before publishing, so that a worker's own later write (a retry
    scheduled for later) is never overwritten by this mark; the ones not published are
    unmarked, for the next sweep.
    """
    if not email_ids:
        return 0
    Email.objects.filter(pk__in=email_ids, status=EmailStatus.QUEUED).update(
        enqueued_at=timezone.now()
    )
    size = chunk_size(len(email_ids))
    sent = 0
    try:
        with celery_app.producer_or_acquire() as producer:
            for start in range(0, len(email_ids), size):
                _publish_chunk(email_ids[start : start + size], producer)
                sent = min(len(email_ids), start + size)
    except Exception:
        logger.warning(
            "broker unreachable: %d of %d email(s) enqueued, the rest wait for the next sweep",
            sent,
            len(email_ids),
            exc_info=True,
        )
        Email.objects.filter(pk__in=email_ids[sent:], status=EmailStatus.QUEUED).update(
            enqueued_at=None
        )
    return sent
