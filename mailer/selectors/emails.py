"""Reads of emails: one email's summary and details (the list is mailer.selectors.email_lists)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from django.db.models import Prefetch

from mailer.models import (
    MAX_ID,
    DeliveryAttempt,
    DeliveryEvent,
    Email,
    EmailStatus,
    ProviderConfig,
)

MAX_PAGE_SIZE = 100


def _provider_ref(config: ProviderConfig | SimpleNamespace | None, kind: str = "") -> dict | None:
    if config is not None:
        return {"id": config.pk, "kind": config.kind, "name": config.name}
    return {"id": None, "kind": kind, "name": ""} if kind else None


def email_summary(
    email: Email | SimpleNamespace, providers: dict[int, ProviderConfig | SimpleNamespace]
) -> dict[str, Any]:
    """The summary of an email, or of a list row read as values (mailer.selectors.email_lists:
    its fields by name and `pk`), with the providers it names (by id: anything with pk, kind
    and name)."""
    return {
        "id": email.pk,
        "status": email.status,
        "from": email.from_email,
        "to": email.to,
        "cc": email.cc,
        "bcc": email.bcc,
        "subject": email.subject,
        "requested_provider": _provider_ref(providers.get(email.requested_provider_id)),
        "sent_via": _provider_ref(providers.get(email.sent_via_id), email.sent_via_kind),
        "provider_message_id": email.provider_message_id,
        "message_id": email.message_id,
        "failure_reason": email.failure_reason,
        "possible_duplicate": email.possible_duplicate,
        "delivery": email.delivery,
        "suppressed": email.suppressed,
        "created_at": email.created_at,
        "sent_at": email.sent_at,
        "tries": email.tries,
        # When a queued email is due for its next try (queue mode); None once it is done.
        "next_attempt_at": email.next_attempt_at
        if email.status in (EmailStatus.QUEUED, EmailStatus.SENDING)
        else None,
        "send_at": email.send_at,
    }


def attempt_dict(attempt: DeliveryAttempt) -> dict[str, Any]:
    return {
        "provider": {
            "id": attempt.provider_id,
            "kind": attempt.provider_kind,
            "name": attempt.provider_name,
        },
        "outcome": attempt.outcome,
        "error_code": attempt.error_code,
        "error_message": attempt.error_message,
        "provider_message_id": attempt.provider_message_id,
        "started_at": attempt.started_at,
        "duration_ms": attempt.duration_ms,
        "try_number": attempt.try_number,
    }


def _attachment_size(attachment: dict) -> int:
    """Recorded when stored; emails stored before sizes were recorded are decoded."""
    if "size" in attachment:
        return attachment["size"]
    return len(base64.b64decode(attachment["content"]))


def email_detail(
    email: Email,
    *,
    attempts: Sequence[DeliveryAttempt] | None = None,
    events: Sequence[DeliveryEvent] | None = None,
    resends: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Everything about one email, its attempts in order (prefetch them for a single query, or
    pass the ones in hand, as a send does with what it just wrote, and its events and resends
    likewise)."""
    providers = {c.pk: c for c in (email.requested_provider, email.sent_via) if c is not None}
    attempts = email.attempts.all() if attempts is None else attempts
    events = email.events.all() if events is None else events
    if resends is None:
        resends = list(
            Email.objects.filter(account_id=email.account_id, resent_from=email.pk)
            .order_by("id")
            .values_list("pk", flat=True)
        )
    return {
        **email_summary(email, providers),
        "text": email.text,
        "reply_to": email.reply_to,
        "html": email.html,
        "headers": email.headers,
        "metadata": email.metadata,
        "attachments": [
            {
                "filename": a["filename"],
                "content_type": a["content_type"],
                "size": _attachment_size(a),
            }
            for a in email.attachments
        ],
        "updated_at": email.updated_at,
        "attempts": [attempt_dict(a) for a in attempts],
        "recipient_states": email.recipient_states,
        "copies_sent": email.copies_sent,
        "events": [event_dict(e) for e in events],
        "resent_from": email.resent_from_id,
        "resends": list(resends),
    }


def event_dict(event: DeliveryEvent) -> dict[str, Any]:
    return {
        "type": event.type,
        "recipient": event.recipient,
        "occurred_at": event.occurred_at,
        "bounce_type": event.bounce_type or None,
        "provider": {
            "id": event.provider_id,
            "name": event.provider.name if event.provider else "",
            "kind": event.provider_kind,
        },
        "detail": event.detail,
    }


EVENTS_WITH_PROVIDERS = DeliveryEvent.objects.select_related("provider")


def email_get(*, account, email_id: int) -> Email:
    """One email of this account with its attempts; Email.DoesNotExist for anyone else's."""
    if not 0 < email_id <= MAX_ID:
        raise Email.DoesNotExist
    return (
        Email.objects.select_related("requested_provider", "sent_via")
        .prefetch_related(
            "attempts", Prefetch("events", DeliveryEvent.objects.select_related("provider"))
        )
        .get(account=account, pk=email_id)
    )


def email_texts(*, account_id: int, email_ids: list[int]) -> dict[int, str]:
    """The whole text bodies of these emails of the account (for rows whose list preview was
    cut short), read from the database: bodies are never cached."""
    if not email_ids:
        return {}
    rows = Email.objects.filter(account_id=account_id, pk__in=email_ids).values_list("pk", "text")
    return dict(rows)
