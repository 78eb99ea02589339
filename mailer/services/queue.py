"""Queue mode's writes: claim an email, run one try, schedule retries with backoff, and the
sweep that takes back what a lost message or a dead worker left behind. The sweep serves sync
mode too: a web request that died mid-send leaves its email `sending` under a short lease."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from mailer import accountcache
from mailer.delivery.failover import Delivery
from mailer.models import DeliveryAttempt, Email, EmailStatus, ProviderConfig
from mailer.vocabulary import Outcome

from .emails import email_finish, email_try, outcome_fields, pacing_slot, sent_fields
from .enqueue import chunk_time_limits, emails_enqueue
from .schedule import emails_come_due
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
    return f"Gave up after {tries} over {_span((now - email.starts_at).total_seconds())}: "


def _expired(email: Email, now: datetime) -> bool:
    return (now - email.starts_at).total_seconds() >= settings.MAX_DELIVERY_AGE


def _next_step(email: Email, delivery: Delivery, now: datetime) -> tuple[datetime | None, str]:
    """(when to try again, or None when this try's outcome is final; the "gave up" preamble of
    the failure reason when retries ran out)."""
    tried = [a for a in delivery.attempts if a.outcome != Outcome.SKIPPED]
    slot = pacing_slot(delivery)  # every provider at its limit: it waits, it did not fail
    if not slot and (delivery.accepted or not tried or tried[-1].outcome == Outcome.REJECTED):
        return None, ""
    if _expired(email, now):
        return None, _gave_up(email, now)
    if slot:
        return slot, ""
    deadline = email.starts_at + timedelta(seconds=settings.MAX_DELIVERY_AGE)
    # The last try happens at the deadline rather than never.
    return min(now + timedelta(seconds=retry_delay(email.tries)), deadline), ""


# Only identifiers from the model's metadata are formatted in; every value is a parameter. A new
# email (tries = 0) is due whatever the clocks say.
_CLAIM = """
UPDATE {table} SET status = %s, claimed_at = %s, lease_expires_at = %s, updated_at = %s,
    tries = tries + 1
WHERE id IN (
    SELECT id FROM {table}
    WHERE id = %s AND status = %s AND (tries = 0 OR next_attempt_at <= %s){lock}
)
RETURNING {columns}
"""


@functools.cache
def _claim_sql(vendor: str) -> str:
    """The claim as one UPDATE ... RETURNING: it takes the email if it is queued and due
    (queued -> sending) and answers its row, in one round trip, on PostgreSQL and SQLite alike
    (Django 6.1 requires SQLite >= 3.37, which has RETURNING). Exactly one caller wins: SQLite
    runs one writer at a time; on PostgreSQL the subquery locks the row, skipping it when another
    worker holds it (SKIP LOCKED), and re-reads a row updated since the statement began, so one
    just claimed elsewhere no longer matches."""
    quote = connection.ops.quote_name
    return _CLAIM.format(
        table=quote(Email._meta.db_table),
        columns=", ".join(quote(field.column) for field in Email._meta.concrete_fields),
        lock=" FOR UPDATE SKIP LOCKED"
        if connection.features.has_select_for_update_skip_locked
        else "",
    )


def _with_relations(emails: list[Email]) -> list[Email]:
    """Attach what a try reads besides the row, without a query per email: the account as a
    key-only instance (a try filters by it and reads none of its fields; any field read later
    is loaded then, as a deferred field is), and the requested providers in one query."""
    account_model = Email._meta.get_field("account").related_model
    wanted = {e.requested_provider_id for e in emails if e.requested_provider_id}
    providers = ProviderConfig.objects.in_bulk(wanted) if wanted else {}
    for email in emails:
        email.account = account_model.from_db(connection.alias, ["id"], [email.account_id])
        if email.requested_provider_id:
            email.requested_provider = providers.get(email.requested_provider_id)
    return emails


def email_claim(*, email_id: int) -> Email | None:
    """Take a queued, due email for one try (queued -> sending, with a lease of
    SENDING_LEASE_SECONDS), or None if it isn't there to take: already sent, claimed by another
    worker, or not due yet. Exactly one caller wins. One statement (see _claim_sql).

    The list cache is not bumped here but once, when the try's outcome is stored
    (email_finish): `sending` lasts one try, at most DELIVERY_TIME_LIMIT, and until then a
    cached list shows the email as `queued`, which is true of everything a client can act on
    (accepted, not yet delivered); a try whose worker died is ended by the sweep, which bumps.
    """
    now = timezone.now()
    lease_end = now + timedelta(seconds=settings.SENDING_LEASE_SECONDS)
    params = [EmailStatus.SENDING, now, lease_end, now, email_id, EmailStatus.QUEUED, now]
    # Read to the end, so the statement completes (and commits) here.
    claimed = list(Email.objects.raw(_claim_sql(connection.vendor), params))
    return _with_relations(claimed)[0] if claimed else None


def email_process(*, email_id: int) -> str:
    """Claim an email and run one try (the worker's task). Returns what became of it."""
    email = email_claim(email_id=email_id)
    if email is None:
        return "not claimed"
    with accountcache.pinned(email.account_id):  # its account's reads may come from memory
        try:
            # The soft time limit stays the backstop; the budget ends the try before it.
            budget = settings.DELIVERY_TIME_LIMIT * 0.8
            delivery = email_try(email=email, budget=budget, interrupts=(SoftTimeLimitExceeded,))
        except SoftTimeLimitExceeded:
            logger.warning("email %s: try %s hit the time limit", email.pk, email.tries)
            return email_release(email=email, why="the try took longer than DELIVERY_TIME_LIMIT")
        retry_at, gave_up = _next_step(email, delivery, timezone.now())
        fields = outcome_fields(email, delivery, retry_at=retry_at, gave_up=gave_up)
        email_finish(email=email, fields=fields)
    return email.status


def emails_process(*, email_ids: list[int]) -> dict[str, int]:
    """The emails of one chunk message (the sweep's), as email_process does one, in turn: each
    is claimed only when its own try starts, so its lease is a single try's and the emails not
    reached yet stay `queued`. A worker that dies mid-chunk leaves the email it was trying to
    the sweep once its lease ends, and the rest queued on an unacknowledged message: the broker
    hands it out again or the sweep enqueues them again (REQUEUE_AFTER_SECONDS), and the claim
    turns away whatever was done. When what is left of the chunk's soft time limit could not
    hold one more whole try, the rest go straight back to the next sweep. Returns how many
    emails ended how."""
    soft_limit, _ = chunk_time_limits(len(email_ids))
    last_start = time.monotonic() + soft_limit - settings.DELIVERY_TIME_LIMIT
    ended: Counter[str] = Counter()
    for index, email_id in enumerate(email_ids):
        if index and time.monotonic() > last_start:
            ended["handed back"] += _hand_back(email_ids[index:])
            break
        try:
            ended[email_process(email_id=email_id)] += 1
        except SoftTimeLimitExceeded:  # outside a try (which ends itself): stop here
            ended["handed back"] += _hand_back(email_ids[index + 1 :])
            break
        except Exception:  # one email's trouble must not hold back the others
            logger.exception("email %s: its try in a chunk raised", email_id)
            ended["error"] += 1
    return dict(ended)


def _hand_back(email_ids: list[int]) -> int:
    """Mark queued emails as on no message, so that the next sweep enqueues them at once."""
    Email.objects.filter(pk__in=email_ids, status=EmailStatus.QUEUED).update(enqueued_at=None)
    return len(email_ids)


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
    `--loop`): take back tries whose lease ran out, queue the scheduled emails whose time has
    come, then enqueue the due emails (or with `inline`, as in sync mode, which has no broker:
    deliver them here, one try each, with the same backoff between tries as queue mode); then
    the same for due webhook messages."""
    emails_come_due(limit=limit)
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
