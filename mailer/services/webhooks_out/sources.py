"""Where events out come from: an email whose outcome was just stored (email_finish), a
delivery event a provider reported (services.events), a provider's circuit opening or closing
(the breaker's signals, received here: the breaker knows no database). Each builds its small
payload (README: Webhooks out) and hands it to webhooks_emit."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.dispatch import receiver

from mailer.delivery.breaker import circuit_closed, circuit_opened
from mailer.models import DeliveryAttempt, DeliveryEvent, Email, ProviderConfig, WebhookEndpoint
from mailer.vocabulary import EmailStatus, EventType
from mailer.vocabulary import WebhookEventType as Type

from .outbox import iso, subscribed_endpoints, webhooks_emit

logger = logging.getLogger("mailer.webhooks")

# The provider events an endpoint hears about; deferred, dropped and unsubscribed stay ours.
DELIVERY_EVENT_TYPES = {
    EventType.DELIVERED: Type.EMAIL_DELIVERED,
    EventType.BOUNCED: Type.EMAIL_BOUNCED,
    EventType.COMPLAINED: Type.EMAIL_COMPLAINED,
    EventType.OPENED: Type.EMAIL_OPENED,
    EventType.CLICKED: Type.EMAIL_CLICKED,
}


def provider_ref(config: ProviderConfig | None, *, kind: str = "", name: str = "") -> dict | None:
    if config is not None:
        return {"id": config.pk, "name": config.name, "kind": config.kind}
    return {"id": None, "name": name, "kind": kind} if kind else None


def email_data(email: Email) -> dict[str, Any]:
    """What every email.sent / failed / failed_over payload says about the email."""
    sent_via = email.sent_via if email.sent_via_id else None
    return {
        "email_id": email.pk,
        "status": email.status,
        "from": email.from_email,
        "to": email.to,
        "cc": email.cc,
        "bcc": email.bcc,
        "subject": email.subject,
        "provider": provider_ref(sent_via, kind=email.sent_via_kind),
        "provider_message_id": email.provider_message_id,
        "failure_reason": email.failure_reason,
        "possible_duplicate": email.possible_duplicate,
        "tries": email.tries,
        "metadata": email.metadata,
    }


def webhooks_email_finished(
    *, email: Email, endpoints: Sequence[WebhookEndpoint] | None = None
) -> list:
    """email.sent (and email.failed_over when the provider that sent it is not the first its
    failover order offered it to), or email.failed, for an email whose outcome was just stored.
    One query when the account has no endpoint (none when the caller read `endpoints`)."""
    if email.status not in (EmailStatus.SENT, EmailStatus.FAILED):
        return []
    if endpoints is None:
        endpoints = subscribed_endpoints(email.account_id)
    if not endpoints:
        return []
    data = email_data(email)
    if email.status == EmailStatus.FAILED:
        return webhooks_emit(email.account_id, Type.EMAIL_FAILED, data, endpoints=endpoints)
    messages = webhooks_emit(email.account_id, Type.EMAIL_SENT, data, endpoints=endpoints)
    if any(endpoint.wants(Type.EMAIL_FAILED_OVER) for endpoint in endpoints):
        messages += _failed_over(email, data, endpoints)
    return messages


def _failed_over(email: Email, data: dict, endpoints: Sequence[WebhookEndpoint]) -> list:
    attempts = DeliveryAttempt.objects.filter(email=email).select_related("provider")
    first = attempts.order_by("started_at", "id").first()
    if first is None or first.provider_id == email.sent_via_id:
        return []
    data = data | {
        "first_provider": provider_ref(
            first.provider, kind=first.provider_kind, name=first.provider_name
        ),
        "first_outcome": first.outcome,
        "first_error": first.error_message,
    }
    return webhooks_emit(email.account_id, Type.EMAIL_FAILED_OVER, data, endpoints=endpoints)


def webhooks_delivery_event(
    *, event: DeliveryEvent, email: Email, endpoints: Sequence[WebhookEndpoint]
) -> list:
    """email.delivered / bounced / complained / opened / clicked for a provider event just
    stored for `email` (endpoints: the account's subscribed_endpoints, read once per request)."""
    event_type = DELIVERY_EVENT_TYPES.get(event.type)
    if event_type is None or not endpoints:
        return []
    data = {
        "email_id": email.pk,
        "recipient": event.recipient,
        "occurred_at": iso(event.occurred_at),
        "provider": provider_ref(event.provider, kind=event.provider_kind),
        "provider_message_id": event.provider_message_id or email.provider_message_id,
        "metadata": email.metadata,
    }
    if event.bounce_type:
        data["bounce_type"] = event.bounce_type
    if event.detail:
        data["detail"] = event.detail
    return webhooks_emit(email.account_id, event_type, data, endpoints=endpoints)


# Circuits ------------------------------------------------------------------------------------


@receiver(circuit_opened, dispatch_uid="mailer.webhooks_out.circuit_opened")
def _circuit_opened(sender, key: str, reopened: bool = False, **kwargs) -> None:
    if reopened:  # a failed probe: it was open already and was told so
        return
    circuit = {
        "state": "open",
        "open_until": iso(kwargs.get("open_until")),
        "last_error": kwargs.get("error", ""),
    }
    _circuit_event(key, Type.CIRCUIT_OPENED, circuit)


@receiver(circuit_closed, dispatch_uid="mailer.webhooks_out.circuit_closed")
def _circuit_closed(sender, key: str, reason: str = "", **kwargs) -> None:
    _circuit_event(key, Type.CIRCUIT_CLOSED, {"state": "closed", "reason": reason})


def _circuit_event(key: str, event_type: str, circuit: dict[str, Any]) -> None:
    """The event for the account of the provider config whose circuit `key` is. The site's own
    mailers' circuits (mailer:<name>) belong to no account."""
    kind, _, pk = key.partition(":")
    if kind != "provider" or not pk.isdigit():
        return
    try:
        with transaction.atomic():
            config = ProviderConfig.objects.filter(pk=int(pk)).first()
            if config is not None:
                data = {"provider": provider_ref(config), "circuit": circuit}
                webhooks_emit(config.account_id, event_type, data)
    except Exception:  # the breaker calls this inside its cache guard: it must not raise
        logger.exception("provider %s: %s not stored for webhooks", pk, event_type)
