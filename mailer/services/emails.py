"""Writes for email: validate and store, deliver with failover, record every attempt."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from mailer import accountcache, listcache, metrics
from mailer.compose import build_message
from mailer.delivery.breaker import breaker
from mailer.delivery.failover import PACED, Attempt, Delivery, deliver
from mailer.delivery.pacing import pacer
from mailer.delivery.pool import candidate_for
from mailer.errors import Conflict
from mailer.models import DeliveryAttempt, Email, EmailStatus, ProviderConfig
from mailer.providers.net import Deadline
from mailer.validation import OutgoingEmail, validate

from .enqueue import email_enqueue
from .outgoing import all_suppressed_reason, email_row, initial_state
from .suppressions import AllRecipientsSuppressed, without_suppressed
from .webhooks_out import subscribed_endpoints, webhooks_email_finished

logger = logging.getLogger("mailer.services")


# Sending ------------------------------------------------------------------------------------

# How long an Idempotency-Key is remembered per account.
IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class SendResult:
    email: Email  # as stored, with its outcome when delivered here
    delivery: Delivery | None  # None when this answers a replayed Idempotency-Key
    replayed: bool = False
    # The attempts this call recorded, in order: with `email` they are the whole answer of a
    # new email (a replayed or queued one has to be read back: a worker may be at it).
    attempts: tuple[DeliveryAttempt, ...] = ()


class IdempotencyConflict(Conflict):
    """The Idempotency-Key is held by `email`, and this request can't have its answer."""

    def __init__(self, message: str, *, email: Email) -> None:
        super().__init__(message)
        self.email = email


class IdempotencyKeyReused(IdempotencyConflict):
    """The key was already used with a different request."""


class IdempotencyInFlight(IdempotencyConflict):
    """The key's request is still being delivered: its answer is not known yet."""


def failover_order(*, account, requested: ProviderConfig | None = None) -> list[ProviderConfig]:
    """The account's enabled providers: the requested one first, then by priority."""
    configs = accountcache.config(
        account.pk,
        "providers",
        lambda: list(ProviderConfig.objects.filter(account=account, enabled=True)),
    )
    if requested is not None:
        configs = [requested] + [c for c in configs if c.pk != requested.pk]
    return configs


def _earlier_use(
    account, key: str, fingerprint: str, *, in_flight_ok: bool = False
) -> Email | None:
    """The email that already holds this key, or None once an expired holder released it.

    A repeat while the first is still being sent in sync mode is IdempotencyInFlight (its answer
    is not known yet); a queued one (queue mode, or a sync send the sweep goes on with) answers
    as queued."""
    earlier = Email.objects.filter(account=account, idempotency_key=key).first()
    if earlier is None:
        return None
    if earlier.created_at < timezone.now() - IDEMPOTENCY_WINDOW:
        # Past the window the key is free again: release it from the old email.
        Email.objects.filter(pk=earlier.pk, idempotency_key=key).update(idempotency_key="")
        return None
    if earlier.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request; use a new key "
            "for a new email.",
            email=earlier,
        )
    # A `queued` email's answer is known (accepted, the sweep or a worker goes on with it); one
    # still `sending` in sync mode is not yet.
    if earlier.status == EmailStatus.SENDING and not in_flight_ok:
        raise IdempotencyInFlight(
            "A request with this Idempotency-Key is still being delivered; retry later to get "
            "its result.",
            email=earlier,
        )
    return earlier


def email_create(
    *,
    account,
    outgoing: OutgoingEmail,
    requested_provider: ProviderConfig | None = None,
    idempotency_key: str = "",
    fingerprint: str = "",
    queued: bool = False,
    send_at=None,
    resent_from: Email | None = None,
) -> tuple[Email, bool]:
    """Validate and store an email; return (email, created).

    Stored `scheduled` until `send_at` (a time schedule_time() accepted), `queued` for a worker
    (due now), or else `sending`, claimed by this process for its first try. With an
    idempotency key, a request already stored under it within the window is returned instead
    (created False), or IdempotencyConflict raised. The unique constraint on
    (account, idempotency_key) makes concurrent identical requests store exactly one email.
    Nothing is stored when validation fails. The list cache is the caller's to bump: once per
    email, when what the list shows is settled (email_send).
    """
    validate(outgoing)
    recipients, suppressed = without_suppressed(
        account, {"to": list(outgoing.to), "cc": list(outgoing.cc), "bcc": list(outgoing.bcc)}
    )
    state = initial_state(queued=queued, send_at=send_at)
    if not any(recipients.values()):  # nobody left to send to: no provider is contacted
        state = {"status": EmailStatus.FAILED, "failure_reason": all_suppressed_reason(suppressed)}
    row = email_row(
        account,
        outgoing,
        requested_provider=requested_provider,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        suppressed=suppressed,
        resent_from=resent_from,
        **state,
    )
    row.to, row.cc, row.bcc = recipients["to"], recipients["cc"], recipients["bcc"]
    for _ in range(3):
        try:
            with transaction.atomic():
                row.save(force_insert=True)
        except IntegrityError:
            if not idempotency_key:
                raise
            earlier = _earlier_use(account, idempotency_key, fingerprint, in_flight_ok=queued)
            if earlier is not None:
                return earlier, False
            row.pk = None  # the key was released: insert again
            continue
        return row, True
    raise IdempotencyInFlight("Idempotency-Key contention; retry the request.", email=row)


def _drop_newly_suppressed(email: Email) -> bool:
    """Before a try: leave out recipients suppressed since the email was stored (a bounce seen
    meanwhile); False when none is left."""
    recipients, dropped = without_suppressed(
        email.account, {"to": email.to, "cc": email.cc, "bcc": email.bcc}
    )
    if dropped:
        email.to, email.cc, email.bcc = recipients["to"], recipients["cc"], recipients["bcc"]
        email.suppressed = sorted(set(email.suppressed) | set(dropped))
        Email.objects.filter(pk=email.pk).update(
            to=email.to, cc=email.cc, bcc=email.bcc, suppressed=email.suppressed
        )
    return any(recipients.values())


def _record_attempt(email: Email, attempt: Attempt) -> DeliveryAttempt:
    config: ProviderConfig = attempt.candidate.ref
    row = DeliveryAttempt.objects.create(
        email=email,
        provider=config,
        provider_kind=config.kind,
        provider_name=config.name,
        outcome=attempt.outcome,
        error_code=attempt.code[:64],
        error_message=attempt.message,
        provider_message_id=attempt.message_id[:255],
        started_at=attempt.started_at,
        duration_ms=round(attempt.duration * 1000),
        try_number=max(1, email.tries),
    )
    metrics.attempt_finished(attempt)
    return row


def email_try(
    *,
    email: Email,
    budget: float,
    interrupts: tuple[type[BaseException], ...] = (),
    recorded: list[DeliveryAttempt] | None = None,
    suppressions_checked: bool = False,
) -> Delivery:
    """One delivery try of a claimed email: failover over its providers within `budget` seconds,
    each attempt recorded as it ends (and appended to `recorded` when given). Writes nothing
    else: email_finish stores the outcome. The suppression list is read again first, unless the
    email was checked against it just now (`suppressions_checked`: stored this request).

    No transaction is held while providers are called: a slow provider must not lock the table.
    """
    if not suppressions_checked and not _drop_newly_suppressed(email):
        return Delivery(blocked=all_suppressed_reason(email.suppressed))
    rows = [] if recorded is None else recorded
    configs = failover_order(
        account=email.account,
        requested=email.requested_provider
        if email.requested_provider and email.requested_provider.enabled
        else None,
    )
    delivery = deliver(
        build_message(email),
        [candidate_for(config) for config in configs],
        breaker=breaker(),
        on_attempt=lambda attempt: rows.append(_record_attempt(email, attempt)),
        interrupts=interrupts,
        budget=Deadline(budget),
        pacer=pacer(),
        pace_wait=settings.PACING_WAIT_SECONDS,
    )
    metrics.delivery_finished(delivery)
    return delivery


def pacing_slot(delivery: Delivery) -> datetime | None:
    """When an email that every provider's pacing turned away has room again (it waits for
    that rather than failing); None when the try ended otherwise."""
    if not delivery.waiting:
        return None
    return max(timezone.now(), datetime.fromtimestamp(delivery.paced_until, UTC))


def sent_fields(config: ProviderConfig | None, kind: str, message_id: str, now) -> dict:
    return {
        "status": EmailStatus.SENT,
        "sent_via": config,
        "sent_via_kind": kind,
        "provider_message_id": message_id[:255],
        "failure_reason": "",
        "sent_at": now,
        "next_attempt_at": None,
    }


def outcome_fields(
    email: Email, delivery: Delivery, *, retry_at=None, gave_up: str = ""
) -> dict[str, Any]:
    """The email's fields after a try: sent, queued again for `retry_at`, or failed (with
    `gave_up` before the reason when retries ran out)."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "possible_duplicate": email.possible_duplicate or delivery.possible_duplicate,
        "updated_at": now,
    }
    accepted = delivery.accepted
    if accepted is not None:
        config = accepted.candidate.ref
        return fields | sent_fields(config, config.kind, accepted.message_id, now)
    if retry_at is not None:
        reason = f"Try {email.tries} failed: {delivery.failure_reason}"
        if delivery.waiting:
            paced = [f"{a.candidate.label} {a.message}" for a in delivery.attempts
                     if a.code == PACED]  # fmt: skip
            reason = f"Waiting for a pacing slot: {'; '.join(paced)}."
        return fields | {
            "status": EmailStatus.QUEUED,
            "failure_reason": reason,
            "next_attempt_at": retry_at,
            "enqueued_at": None,  # the sweep enqueues it when it is due
        }
    return fields | {
        "status": EmailStatus.FAILED,
        "failure_reason": gave_up + delivery.failure_reason,
        "next_attempt_at": None,
    }


def email_finish(*, email: Email, fields: dict[str, Any]) -> bool:
    """Store a try's outcome if this process still holds the email's lease, with its webhook
    messages in the same transaction; False if not (the sweep took it back after the lease ran
    out, and its next try is flagged possible_duplicate).

    The account's webhook endpoints are read before the transaction: on SQLite it holds the
    database's one write lock, which every other sender waits for.
    """
    endpoints = None
    if fields.get("status") in (EmailStatus.SENT, EmailStatus.FAILED):
        endpoints = subscribed_endpoints(email.account_id)
    with transaction.atomic():  # the outcome and its webhook messages (outbox) are one write
        held = Email.objects.filter(
            pk=email.pk, status=EmailStatus.SENDING, claimed_at=email.claimed_at
        ).update(**fields)
        for name, value in fields.items():
            setattr(email, name, value)
        if held:
            webhooks_email_finished(email=email, endpoints=endpoints)
    if not held:
        logger.warning("email %s: lease lost before its outcome was stored", email.pk)
    elif email.status == EmailStatus.FAILED:
        logger.warning("email %s failed: %s", email.pk, email.failure_reason)
    if held:
        metrics.send_finished(email.status)
    listcache.bump(email.account_id)
    return bool(held)


def email_deliver(*, email: Email) -> SendResult:
    """Sync mode: one try of an email just stored `sending`, within SEND_BUDGET_SECONDS, then
    `sent` or `failed` at once; or, when the budget ran out before every provider was tried,
    `queued` for the sweep to go on with (the request answers 202: accepted, not yet
    delivered)."""
    recorded: list[DeliveryAttempt] = []
    delivery = email_try(
        email=email,
        budget=settings.SEND_BUDGET_SECONDS,
        recorded=recorded,
        suppressions_checked=True,
    )
    email_finish(email=email, fields=outcome_fields(email, delivery, retry_at=sync_retry(delivery)))
    return SendResult(email=email, delivery=delivery, attempts=tuple(recorded))


def sync_retry(delivery: Delivery) -> datetime | None:
    """After a try in a web request: when the sweep goes on with the email (queued) because
    the budget ran out before every provider was tried, or every provider's pacing turned it
    away; None when its outcome is final."""
    if delivery.untried and delivery.accepted is None and not delivery.rejected:
        return timezone.now()
    return pacing_slot(delivery)


def email_send(
    *,
    account,
    outgoing: OutgoingEmail,
    requested_provider: ProviderConfig | None = None,
    idempotency_key: str = "",
    fingerprint: str = "",
    send_at=None,
    resent_from: Email | None = None,
    account_stamps: accountcache.Stamps | None = None,
) -> SendResult:
    """Validate and store one email, then deliver it now (sync mode) or queue it for a worker
    (DELIVERY_MODE=queue), or keep it `scheduled` until `send_at` (schedule_time()'s answer);
    or replay an idempotent request. The account's list cache is bumped once: after the outcome
    is stored (sync), or once the queued or scheduled email is committed. What it reads of the
    account (suppressions, providers, webhook endpoints) may come from this process's memory
    (mailer.accountcache, pinned here; `account_stamps`: its stamps, when the request has read
    them already)."""
    with accountcache.pinned(account.pk, account_stamps):
        email, created = email_create(
            account=account,
            outgoing=outgoing,
            requested_provider=requested_provider,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            queued=settings.DELIVERY_MODE == "queue",
            send_at=send_at,
            resent_from=resent_from,
        )
        return _go_on(account, email, created)


def _go_on(account, email: Email, created: bool) -> SendResult:
    """After email_create: answer a replay, or deliver, queue or keep the new email."""
    if not created:
        return SendResult(email=email, delivery=None, replayed=True)
    if email.status == EmailStatus.FAILED:  # stored failed: every recipient is suppressed
        listcache.bump(account.pk)
        webhooks_email_finished(email=email)
        raise AllRecipientsSuppressed(email)
    if email.status in (EmailStatus.QUEUED, EmailStatus.SCHEDULED):
        transaction.on_commit(lambda: listcache.bump(account.pk))  # once readers can see it
        if email.status == EmailStatus.QUEUED:
            email_enqueue(email=email)
        return SendResult(email=email, delivery=None)
    return email_deliver(email=email)
