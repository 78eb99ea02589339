"""The webhook outbox: webhooks_emit stores one message per subscribed endpoint in the caller's
transaction; in queue mode each is put on the broker once that commits. The row is the truth and
a broker message only a nudge, as for email: the sweep sends what a lost nudge left behind, and
in sync mode it is the sweep that sends everything."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from emailservice.celery import app as celery_app
from mailer import accountcache
from mailer.models import WebhookEndpoint, WebhookMessage
from mailer.vocabulary import WebhookStatus

logger = logging.getLogger("mailer.webhooks")

DELIVER_TASK = "mailer.tasks.deliver_webhook"


def new_msg_id() -> str:
    """A message's webhook-id: unique, the same on every try, so receivers can drop repeats."""
    return "msg_" + secrets.token_urlsafe(18)


def iso(moment: datetime | float | None) -> str | None:
    """A time as the payloads write it: ISO 8601 in UTC with a Z."""
    if moment is None:
        return None
    if isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def subscribed_endpoints(account_id: int) -> list[WebhookEndpoint]:
    """The account's enabled endpoints, in one indexed query (most accounts have none), or
    from this process's memory (the queryset is built only when it is read: building it cost a
    send as much as the query)."""

    def load() -> list[WebhookEndpoint]:
        endpoints = WebhookEndpoint.objects.filter(account_id=account_id, enabled=True)
        return list(endpoints.order_by("pk").only("pk", "event_types"))

    return accountcache.config(account_id, "endpoints", load)


def webhooks_emit(
    account: Any,
    event_type: str,
    data: dict[str, Any],
    *,
    endpoints: Sequence[WebhookEndpoint] | None = None,
) -> list[WebhookMessage]:
    """Store `event_type` with `data` for each of the account's (a user or its id) enabled
    endpoints subscribed to it, in the caller's transaction, due now; `endpoints`, when the
    caller already has subscribed_endpoints(), saves the query. Returns the messages."""
    account_id = getattr(account, "pk", account)
    if endpoints is None:
        endpoints = subscribed_endpoints(account_id)
    wanted = [endpoint for endpoint in endpoints if endpoint.wants(event_type)]
    if not wanted:
        return []
    now = timezone.now()
    payload = {"type": event_type, "timestamp": iso(now), "data": data}
    messages = WebhookMessage.objects.bulk_create(
        WebhookMessage(
            endpoint_id=endpoint.pk,
            event_type=event_type,
            payload=payload,
            msg_id=new_msg_id(),
            next_attempt_at=now,
        )
        for endpoint in wanted
    )
    messages_enqueue(message_ids=[m.pk for m in messages])
    return messages


# Queue mode: nudges on the broker ----------------------------------------------------------


def _publish(message_id: int) -> None:
    # retry=False and the broker's short timeouts keep a caller from hanging on a lost broker.
    celery_app.send_task(DELIVER_TASK, args=[message_id], retry=False)


def _publish_all(message_ids: list[int]) -> int:
    """Put each on the broker; at the first failure mark the rest not enqueued (the sweep takes
    them). Returns how many went out."""
    for index, message_id in enumerate(message_ids):
        try:
            _publish(message_id)
        except Exception:
            logger.warning(
                "broker unreachable: %d of %d webhook message(s) enqueued, the sweep sends the "
                "rest", index, len(message_ids), exc_info=True,
            )  # fmt: skip
            WebhookMessage.objects.filter(
                pk__in=message_ids[index:], status=WebhookStatus.PENDING
            ).update(enqueued_at=None)
            return index
    return len(message_ids)


def messages_enqueue(*, message_ids: list[int], at_once: bool = False) -> int:
    """Queue mode: mark the messages enqueued and put them on the broker once the caller's
    transaction commits (at once with `at_once`: the sweep, which holds none). Sync mode: nothing,
    the sweep loop sends them. Returns how many were put on the broker now."""
    if settings.DELIVERY_MODE != "queue" or not message_ids:
        return 0
    WebhookMessage.objects.filter(pk__in=message_ids, status=WebhookStatus.PENDING).update(
        enqueued_at=timezone.now()
    )
    if at_once:
        return _publish_all(message_ids)
    transaction.on_commit(lambda: _publish_all(message_ids))
    return 0
