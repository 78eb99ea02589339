"""Writes for email: validate and store, deliver with failover, record every attempt."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.core.mail import make_msgid
from django.core.mail.utils import DNS_NAME
from django.db import IntegrityError, transaction
from django.utils import timezone

from mailer import listcache
from mailer.compose import build_message
from mailer.delivery.failover import Attempt, Delivery, deliver
from mailer.models import DeliveryAttempt, Email, EmailStatus, ProviderConfig
from mailer.validation import OutgoingEmail, validate

from .providers import breaker, candidate_for

logger = logging.getLogger("mailer.services")


# Sending ------------------------------------------------------------------------------------

# How long an Idempotency-Key is remembered per account.
IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class SendResult:
    email: Email
    delivery: Delivery | None  # None when this answers a replayed Idempotency-Key
    replayed: bool = False


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used for a different request (422) or is still in flight (409)."""

    def __init__(self, message: str, *, status: int, email: Email) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.email = email


def failover_order(*, account, requested: ProviderConfig | None = None) -> list[ProviderConfig]:
    """The account's enabled providers: the requested one first, then by priority."""
    configs = list(ProviderConfig.objects.filter(account=account, enabled=True))
    if requested is not None:
        configs = [requested] + [c for c in configs if c.pk != requested.pk]
    return configs


def _email_row(account, outgoing: OutgoingEmail, **fields) -> Email:
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
                "content": base64.b64encode(a.content).decode(),
            }
            for a in outgoing.attachments
        ],
        message_id=make_msgid(domain=DNS_NAME.get_fqdn()),
        **fields,
    )


def _earlier_use(account, key: str, fingerprint: str) -> Email | None:
    """The email that already holds this key, or None once an expired holder released it."""
    earlier = Email.objects.filter(account=account, idempotency_key=key).first()
    if earlier is None:
        return None
    if earlier.created_at < timezone.now() - IDEMPOTENCY_WINDOW:
        # Past the window the key is free again: release it from the old email.
        Email.objects.filter(pk=earlier.pk, idempotency_key=key).update(idempotency_key="")
        return None
    if earlier.request_fingerprint != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used with a different request; use a new key "
            "for a new email.",
            status=422,
            email=earlier,
        )
    if earlier.status in (EmailStatus.QUEUED, EmailStatus.SENDING):
        raise IdempotencyConflict(
            "A request with this Idempotency-Key is still being delivered; retry later to get "
            "its result.",
            status=409,
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
    status: str = EmailStatus.SENDING,
) -> tuple[Email, bool]:
    """Validate and store an email; return (email, created).

    With an idempotency key, a request already stored under it within the window is returned
    instead (created False), or IdempotencyConflict raised. The unique constraint on
    (account, idempotency_key) makes concurrent identical requests store exactly one email.
    Nothing is stored when validation fails.
    """
    validate(outgoing)
    row = _email_row(
        account,
        outgoing,
        requested_provider=requested_provider,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        status=status,
    )
    for _ in range(3):
        try:
            with transaction.atomic():
                row.save(force_insert=True)
        except IntegrityError:
            if not idempotency_key:
                raise
            earlier = _earlier_use(account, idempotency_key, fingerprint)
            if earlier is not None:
                return earlier, False
            row.pk = None  # the key was released: insert again
            continue
        transaction.on_commit(lambda: listcache.bump(account.pk))  # after readers can see it
        return row, True
    raise IdempotencyConflict(
        "Idempotency-Key contention; retry the request.", status=409, email=row
    )


def _record_attempt(email: Email, attempt: Attempt) -> None:
    config: ProviderConfig = attempt.candidate.ref
    DeliveryAttempt.objects.create(
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
    )


def email_deliver(*, email: Email) -> Delivery:
    """Run failover for a stored email, recording each attempt as it ends, then the outcome.

    No transaction is held while providers are called: a slow provider must not lock the table.
    """
    configs = failover_order(
        account=email.account,
        requested=email.requested_provider
        if email.requested_provider and email.requested_provider.enabled
        else None,
    )
    candidates = [candidate_for(config) for config in configs]
    delivery = deliver(
        build_message(email),
        candidates,
        breaker=breaker(),
        on_attempt=lambda attempt: _record_attempt(email, attempt),
    )
    accepted = delivery.accepted
    email.possible_duplicate = email.possible_duplicate or delivery.possible_duplicate
    if accepted is not None:
        config = accepted.candidate.ref
        email.status = EmailStatus.SENT
        email.sent_via = config
        email.sent_via_kind = config.kind
        email.provider_message_id = accepted.message_id[:255]
        email.failure_reason = ""
        email.sent_at = timezone.now()
    else:
        email.status = EmailStatus.FAILED
        email.failure_reason = delivery.failure_reason
        logger.warning("email %s failed: %s", email.pk, email.failure_reason)
    email.save(
        update_fields=[
            "status",
            "sent_via",
            "sent_via_kind",
            "provider_message_id",
            "failure_reason",
            "sent_at",
            "possible_duplicate",
            "updated_at",
        ]
    )
    listcache.bump(email.account_id)
    return delivery


def email_send(
    *,
    account,
    outgoing: OutgoingEmail,
    requested_provider: ProviderConfig | None = None,
    idempotency_key: str = "",
    fingerprint: str = "",
) -> SendResult:
    """Validate, store and deliver one email synchronously (or replay an idempotent request)."""
    email, created = email_create(
        account=account,
        outgoing=outgoing,
        requested_provider=requested_provider,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
    )
    if not created:
        return SendResult(email=email, delivery=None, replayed=True)
    return SendResult(email=email, delivery=email_deliver(email=email))
