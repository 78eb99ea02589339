"""Queue mode's writes: claim an email, run one try, schedule retries with backoff, and the
sweep that takes back what a lost message or a dead worker left behind. The sweep serves sync
mode too: a web request that died mid-send leaves its email `sending` under a short lease."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from mailer import listcache
from mailer.delivery.failover import Delivery
from mailer.models import DeliveryAttempt, Email, EmailStatus
from mailer.vocabulary import Outcome

from .emails import email_finish, email_try, outcome_fields, sent_fields
from .enqueue import emails_enqueue
from .webhooks_out import webhooks_sweep

logger = logging.getLogger("mailer.queue")


def retry_delay(tries: int) -> float:
    """Seconds before try `tries + 1`: RETRY_BASE_SECONDS doubling per try, up to
    RETRY_MAX_SECONDS, with ±20% jitter so emails that failed together don't retry together."""
    exponential = settings.RETRY_BASE_SECONDS * 2 ** max(0, min(tries - 1, 30))
    jitter = random.uniform(0.8, 1.2)  # noqa: S311 (spreading load, not a secret)
    return min(settings.RETRY_MAX_SECONDS, exponential * jitter)


def _span(seconds: float) -> str:
    """A duration as people write it: 45 s, 12 min, 3 h 5 min, 1 d 2 h."""
    seconds = round(seconds)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{minutes} min"
    if seconds < 86400:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def _gave_up(email: Email, now: datetime) -> str:
    tries = "1 try" if email.tries == 1 else f"{email.tries} tries"
    return f"Gave up after {tries} over {_span((now - email.created_at).total_seconds())}: "


def _expired(email: Email, now: datetime) -> bool:
    return (now - email.created_at).total_seconds() >= settings.MAX_DELIVERY_AGE


def _next_step(email: Email, delivery: Delivery, now: datetime) -> tuple[datetime | None, str]:
    """(when to try again, or None when this try's outcome is final; the "gave up" preamble of
    the failure reason when retries ran out)."""
    tried = [a for a in delivery.attempts if a.outcome != Outcome.SKIPPED]
    if delivery.accepted or not tried or tried[-1].outcome == Outcome.REJECTED:
        return None, ""
    if _expired(email, now):
        return None, _gave_up(email, now)
    deadline = email.created_at + timedelta(seconds=settings.MAX_DELIVERY_AGE)
    # The last try happens at the deadline rather than never.
    return min(now + timedelta(seconds=retry_delay(email.tries)), deadline), ""


def email_claim(*, email_id: int) -> Email | None:
    """Take a queued, due email for one try (queued -> sending), or None if it isn't there to
    take: already sent, claimed by another worker, or not due yet. Exactly one caller wins."""
    now = timezone.now()
    due = Q(tries=0) | Q(next_attempt_at__lte=now)  # a new email is due whatever the clocks say
    claim = {
        "status": EmailStatus.SENDING,
        "claimed_at": now,
        "lease_expires_at": now + timedelta(seconds=settings.SENDING_LEASE_SECONDS),
        "tries": F("tries") + 1,
    }
    queued = Email.objects.filter(due, pk=email_id, status=EmailStatus.QUEUED)
    if connection.features.has_select_for_update_skip_locked:
        # PostgreSQL: a row another worker holds is skipped, not waited for.
        with transaction.atomic():
            if queued.select_for_update(skip_locked=True).first() is None:
                return None
            queued.update(**claim, updated_at=now)
    elif not queued.update(**claim, updated_at=now):  # SQLite: the update is the lock
        return None
    email = Email.objects.select_related("account", "requested_provider").get(pk=email_id)
    listcache.bump(email.account_id)
    return email


def email_process(*, email_id: int) -> str:
    """Claim an email and run one try (the worker's task). Returns what became of it."""
    email = email_claim(email_id=email_id)
    if email is None:
        return "not claimed"
    try:
        # The soft time limit stays the backstop; the budget ends the try before it, cleanly.
        budget = settings.DELIVERY_TIME_LIMIT * 0.8
        delivery = email_try(email=email, budget=budget, interrupts=(SoftTimeLimitExceeded,))
    except SoftTimeLimitExceeded:
        logger.warning("email %s: try %s hit the time limit", email.pk, email.tries)
        return email_release(email=email, why="the try took longer than DELIVERY_TIME_LIMIT")
    retry_at, gave_up = _next_step(email, delivery, timezone.now())
    fields = outcome_fields(email, delivery, retry_at=retry_at, gave_up=gave_up)
    email_finish(email=email, fields=fields)
    return email.status


def email_release(*, email: Email, why: str) -> str:
    """End a try that stopped before storing its outcome (its worker died or ran out of time),
    from what its recorded attempts show: `sent` if a provider accepted it, `failed` if it was
    rejected, else queued again at once (or failed past MAX_DELIVERY_AGE) and flagged
    possible_duplicate, since an attempt in flight may have reached a provider."""
    now = timezone.now()
    attempts = list(
        DeliveryAttempt.objects.filter(email=email, try_number=email.tries)
        .select_related("provider")
        .order_by("started_at", "id")
    )
    last = next((a for a in reversed(attempts) if a.outcome != Outcome.SKIPPED), None)
    fields: dict = {"updated_at": now}
    if last is not None and last.outcome == Outcome.SENT:
        fields |= sent_fields(last.provider, last.provider_kind, last.provider_message_id, now)
    elif last is not None and last.outcome == Outcome.REJECTED:
        reason = f"{last.provider_kind} '{last.provider_name}' rejected the message: "
        fields |= {"status": EmailStatus.FAILED, "failure_reason": reason + last.error_message}
    elif _expired(email, now):
        reason = f"{_gave_up(email, now)}{why}; it may have been sent."
        fields |= {"status": EmailStatus.FAILED, "failure_reason": reason}
        fields |= {"possible_duplicate": True, "next_attempt_at": None}
    else:
        fields |= {"status": EmailStatus.QUEUED, "failure_reason": f"Try {email.tries}: {why}."}
        fields |= {"possible_duplicate": True, "next_attempt_at": now, "enqueued_at": None}
    email_finish(email=email, fields=fields)
    return email.status


@dataclass(frozen=True)
class SweepReport:
    released: int  # tries whose lease ran out, ended from their attempts or queued again
    enqueued: int  # due emails put on the broker
    delivered: int  # due emails tried here (inline)
    waiting: int  # due emails left for the next sweep (broker down, or over the batch size)
    webhooks: int = 0  # due webhook messages tried here (inline) or put on the broker


def _stale_sending(now: datetime, limit: int) -> list[Email]:
    """Emails whose try's lease ran out: its end is stored at the claim (short for a sync web
    request, SENDING_LEASE_SECONDS for a worker or the sweep), so the sweep needs no knowledge of
    the mode. No lease is longer than the longest of the two, so a try claimed that long ago is
    taken back too, lease end or not (a claim by a host still running an older release)."""
    longest = max(settings.SENDING_LEASE_SECONDS, settings.SYNC_SENDING_LEASE_SECONDS)
    ran_out = Q(lease_expires_at__lt=now) | Q(claimed_at__lt=now - timedelta(seconds=longest))
    return list(
        Email.objects.filter(ran_out, status=EmailStatus.SENDING)
        .select_related("account")
        .order_by("claimed_at")[:limit]
    )


def _due_ids(now: datetime, limit: int) -> list[int]:
    """Queued emails that are due and on no live message: never enqueued (broker down at
    commit), back from a retry or a released try, or enqueued so long ago it was lost."""
    stale = now - timedelta(seconds=settings.REQUEUE_AFTER_SECONDS)
    return list(
        Email.objects.filter(status=EmailStatus.QUEUED, next_attempt_at__lte=now)
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def emails_sweep(*, inline: bool = False, limit: int = 1000) -> SweepReport:
    """The durable outbox's sweep (Celery beat, or `manage.py deliver_pending`, once or with
    `--loop`): take back tries whose lease ran out, then enqueue the due emails (or with
    `inline`, as in sync mode, which has no broker: deliver them here, one try each, with the
    same backoff between tries as queue mode); then the same for due webhook messages."""
    now = timezone.now()
    released = 0
    for email in _stale_sending(now, limit):
        logger.warning("email %s: lease of try %s ran out; taking it back", email.pk, email.tries)
        email_release(email=email, why="its worker stopped before storing the outcome")
        released += 1
    due = _due_ids(timezone.now(), limit)
    if inline:
        delivered = sum(email_process(email_id=pk) != "not claimed" for pk in due)
        webhooks = webhooks_sweep(inline=True, limit=limit)
        return SweepReport(released, 0, delivered, len(due) - delivered, webhooks)
    enqueued = emails_enqueue(email_ids=due)
    webhooks = webhooks_sweep(inline=False, limit=limit)
    return SweepReport(released, enqueued, 0, len(due) - enqueued, webhooks)
