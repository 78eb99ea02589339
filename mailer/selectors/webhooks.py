"""Reads of webhook endpoints and their messages, for the API and the webhooks page; every one
scoped to the account."""

from __future__ import annotations

import re
from typing import Any

from mailer.models import MAX_ID, WebhookEndpoint, WebhookMessage

from .pages import Page, numbered_page

MAX_PAGE_SIZE = 100


def webhook_endpoint_list(*, account) -> list[WebhookEndpoint]:
    return list(WebhookEndpoint.objects.filter(account=account).order_by("created_at", "id"))


def webhook_endpoint_get(*, account, endpoint_id: int) -> WebhookEndpoint:
    """One endpoint of this account; WebhookEndpoint.DoesNotExist for any other id."""
    if not 0 < endpoint_id <= MAX_ID:
        raise WebhookEndpoint.DoesNotExist
    return WebhookEndpoint.objects.get(account=account, pk=endpoint_id)


def webhook_message_get(*, endpoint: WebhookEndpoint, ref: str | int) -> WebhookMessage:
    """One message of this endpoint by its id or its webhook-id (msg_...);
    WebhookMessage.DoesNotExist for anything else."""
    ref = str(ref)
    messages = WebhookMessage.objects.filter(endpoint=endpoint).select_related("endpoint")
    if ref.isascii() and ref.isdigit() and 0 < int(ref) <= MAX_ID:
        return messages.get(pk=int(ref))
    if re.fullmatch(r"msg_[A-Za-z0-9_-]{1,36}", ref):  # never a NUL into a query
        return messages.get(msg_id=ref)
    raise WebhookMessage.DoesNotExist


def webhook_endpoint_detail(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.pk,
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": endpoint.failing_since,
        "created_at": endpoint.created_at,
    }


def webhook_message_detail(message: WebhookMessage) -> dict[str, Any]:
    return {
        "id": message.pk,
        "webhook_id": message.msg_id,
        "event_type": message.event_type,
        "status": message.status,
        "tries": message.tries,
        "last_status_code": message.last_status_code,
        "last_error": message.last_error,
        "next_attempt_at": message.next_attempt_at,
        "created_at": message.created_at,
        "delivered_at": message.delivered_at,
    }


def webhook_message_page(*, endpoint: WebhookEndpoint, page: int = 1, page_size: int = 10) -> Page:
    """The endpoint's messages, newest first, `page_size` (at most MAX_PAGE_SIZE) a page."""
    messages = WebhookMessage.objects.filter(endpoint=endpoint).order_by("-created_at", "-id")
    return numbered_page(messages.defer("payload"), page=page, page_size=page_size,
                         most=MAX_PAGE_SIZE, show=webhook_message_detail)  # fmt: skip
