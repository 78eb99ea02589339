"""Writes for email: validate and store, deliver with failover, record every attempt."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass

from django.core.mail import make_msgid
from django.core.mail.utils import DNS_NAME
from django.db import transaction
from django.utils import timezone

from mailer.compose import build_message
from mailer.delivery.failover import Attempt, Candidate, Delivery, deliver
from mailer.models import DeliveryAttempt, Email, EmailStatus, ProviderConfig
from mailer.validation import OutgoingEmail, validate

from .providers import breaker, provider_pool

logger = logging.getLogger("mailer.services")


# Sending ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    email: Email
    delivery: Delivery


def failover_order(*, account, requested: ProviderConfig | None = None) -> list[ProviderConfig]:
    """The account's enabled providers: the requested one first, then by priority."""
    configs = list(ProviderConfig.objects.filter(account=account, enabled=True))
    if requested is not None:
        configs = [requested] + [c for c in configs if c.pk != requested.pk]
    return configs


def email_create(
    *,
    account,
    outgoing: OutgoingEmail,
    requested_provider: ProviderConfig | None = None,
    idempotency_key: str = "",
    status: str = EmailStatus.SENDING,
) -> Email:
    """Validate and store an email; nothing is stored when validation fails."""
    validate(outgoing)
    return Email.objects.create(
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
        requested_provider=requested_provider,
        idempotency_key=idempotency_key,
        status=status,
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
    candidates = []
    for config in configs:
        candidates.append(
            Candidate(
                key=config.breaker_key,
                label=config.label,
                provider=_LazyProvider(config),
                ref=config,
            )
        )
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
    return delivery


def email_send(
    *,
    account,
    outgoing: OutgoingEmail,
    requested_provider: ProviderConfig | None = None,
    idempotency_key: str = "",
) -> SendResult:
    """Validate, store and deliver one email synchronously."""
    with transaction.atomic():
        email = email_create(
            account=account,
            outgoing=outgoing,
            requested_provider=requested_provider,
            idempotency_key=idempotency_key,
        )
    delivery = email_deliver(email=email)
    return SendResult(email=email, delivery=delivery)


class _LazyProvider:
    """Builds (or fetches) the pooled provider only when the breaker lets an attempt through,
    so a skipped provider costs no decryption and a broken config fails as an attempt."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    def send(self, message) -> str:
        return provider_pool.get(self.config).send(message)
