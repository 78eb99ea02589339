"""Reads of emails: cached list pages (serialized summaries, never QuerySets) and details."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Prefetch
from django.db.models.functions import Substr

from mailer import cacheguard, listcache, metrics
from mailer.models import DeliveryAttempt, DeliveryEvent, Email, EmailStatus, ProviderConfig

MAX_PAGE_SIZE = 100
# COUNT(*) scans the account's index: ~50 ms at a million emails, on every uncached page. Up to
# EXACT_COUNT_LIMIT matching emails the count is exact; past it, it is counted once and cached
# for LARGE_COUNT_SECONDS outside the list version, so a large account's count may lag by that.
EXACT_COUNT_LIMIT = 10_000
LARGE_COUNT_SECONDS = 60
SUMMARY_FIELDS = [
    "id", "status", "from_email", "to", "cc", "bcc", "subject", "requested_provider_id",
    "sent_via_id", "sent_via_kind", "provider_message_id", "message_id", "failure_reason",
    "possible_duplicate", "created_at", "sent_at", "tries", "next_attempt_at", "delivery",
    "suppressed",
]  # fmt: skip


def _provider_ref(config: ProviderConfig | None, kind: str = "") -> dict | None:
    if config is not None:
        return {"id": config.pk, "kind": config.kind, "name": config.name}
    return {"id": None, "kind": kind, "name": ""} if kind else None


def email_summary(email: Email, providers: dict[int, ProviderConfig]) -> dict[str, Any]:
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
    }


def _list_item(email: Email, providers: dict[int, ProviderConfig]) -> dict[str, Any]:
    """A list row: the summary and the start of the text body (`text_head`, cut in SQL to one
    character more than the preview, so a long body is neither fetched nor cached)."""
    limit = settings.LIST_TEXT_PREVIEW_CHARS
    head = email.text_head or ""
    return {
        **email_summary(email, providers),
        "text_preview": head[:limit],
        "text_truncated": len(head) > limit,
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


def email_detail(email: Email) -> dict[str, Any]:
    """Everything about one email, its attempts in order (prefetch them for a single query)."""
    providers = {c.pk: c for c in (email.requested_provider, email.sent_via) if c is not None}
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
                "size": len(base64.b64decode(a["content"])),
            }
            for a in email.attachments
        ],
        "updated_at": email.updated_at,
        "attempts": [attempt_dict(a) for a in email.attempts.all()],
        "recipient_states": email.recipient_states,
        "copies_sent": email.copies_sent,
        "events": [event_dict(e) for e in email.events.all()],
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
    return (
        Email.objects.select_related("requested_provider", "sent_via")
        .prefetch_related(
            "attempts", Prefetch("events", DeliveryEvent.objects.select_related("provider"))
        )
        .get(account=account, pk=email_id)
    )


def _count(emails, key: str) -> int:
    """The number of emails: exact up to EXACT_COUNT_LIMIT, else cached under key (see above).
    When the cache can't answer it is exact."""
    unreachable = object()
    cached = cacheguard.call("reading a count", lambda: cache.get(key), unreachable)
    if cached is unreachable:
        return emails.count()
    if cached is not None:
        return cached
    count = emails.order_by()[: EXACT_COUNT_LIMIT + 1].count()
    if count > EXACT_COUNT_LIMIT:
        count = emails.count()
        cacheguard.run(
            "storing a count", lambda: cache.set(key, count, timeout=LARGE_COUNT_SECONDS)
        )
    return count


def _list_from_db(
    account_id: int,
    page: int,
    page_size: int,
    status: str | None,
    provider_id: int | None,
    delivery: str | None = None,
) -> dict[str, Any]:
    emails = Email.objects.filter(account_id=account_id)
    if status:
        emails = emails.filter(status=status)
    if delivery:
        emails = emails.filter(delivery=delivery)
    if provider_id:
        emails = emails.filter(sent_via_id=provider_id)
    count_key = f"emails:count:{account_id}:{status or ''}:{provider_id or ''}:{delivery or ''}"
    count = _count(emails, count_key)
    offset = (page - 1) * page_size
    preview = Substr("text", 1, settings.LIST_TEXT_PREVIEW_CHARS + 1)
    rows = list(
        emails.only(*SUMMARY_FIELDS)
        .annotate(text_head=preview)
        .order_by("-created_at", "-id")[offset : offset + page_size]
    )
    provider_ids = {i for e in rows for i in (e.requested_provider_id, e.sent_via_id) if i}
    providers = ProviderConfig.objects.in_bulk(provider_ids) if provider_ids else {}
    return {
        "count": count,
        "page": page,
        "page_size": page_size,
        "results": [_list_item(e, providers) for e in rows],
    }


def email_list(
    *,
    account_id: int,
    page: int = 1,
    page_size: int = 10,
    status: str | None = None,
    provider_id: int | None = None,
    delivery: str | None = None,
) -> dict[str, Any]:
    """One page of an account's emails, newest first: {count, page, page_size, results};
    filtered by status, provider_id (sent via) and delivery (DeliveryState) when given.

    Each result is a summary with `text_preview` (at most LIST_TEXT_PREVIEW_CHARS) and
    `text_truncated`, never the whole body (email_texts has those). Cached per account and query
    (mailer.listcache: a write bumps the account's version; a lost bump is outlived within
    LIST_CACHE_STALE_SECONDS). If the cache can't answer the page comes from the database.
    """
    page_size = max(1, min(page_size, MAX_PAGE_SIZE))
    page = max(1, page)
    version = listcache.version(account_id)
    if version is None:
        metrics.list_page(cached=False)
        return _list_from_db(account_id, page, page_size, status, provider_id, delivery)
    key = listcache.page_key(
        account_id, version, status or "", provider_id or "", page, page_size, delivery or ""
    )
    cached = listcache.get_page(key)
    metrics.list_page(cached=cached is not None)
    if cached is not None:
        return cached
    result = _list_from_db(account_id, page, page_size, status, provider_id, delivery)
    listcache.store_page(key, result)
    return result


@dataclass(frozen=True)
class Page:
    """One page of a list and where it sits among the pages (numbered from 1)."""

    count: int
    number: int
    size: int
    results: list[dict[str, Any]]

    @property
    def last(self) -> int:
        """The last page's number: 1 for an empty list, which still has its (empty) page."""
        return max(1, -(-self.count // self.size))

    @property
    def exists(self) -> bool:
        return 1 <= self.number <= self.last

    @property
    def has_next(self) -> bool:
        return self.number < self.last

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def next_number(self) -> int | None:
        return self.number + 1 if self.has_next else None

    @property
    def previous_number(self) -> int | None:
        return self.number - 1 if self.has_previous else None


def email_page(
    *, account_id: int, page: int = 1, page_size: int = 10, clamp: bool = False, **filters: Any
) -> Page:
    """email_list's page (`filters`: its status, provider_id and delivery) as a Page. With
    `clamp`, a page past the end (emails went away, or a hand-made URL) is the last page
    instead."""
    data = email_list(account_id=account_id, page=page, page_size=page_size, **filters)
    found = Page(data["count"], data["page"], data["page_size"], data["results"])
    if clamp and found.number > found.last:
        return email_page(account_id=account_id, page=found.last, page_size=page_size, **filters)
    return found


def email_texts(*, account_id: int, email_ids: list[int]) -> dict[int, str]:
    """The whole text bodies of these emails of the account (for rows whose list preview was
    cut short), read from the database: bodies are never cached."""
    if not email_ids:
        return {}
    rows = Email.objects.filter(account_id=account_id, pk__in=email_ids).values_list("pk", "text")
    return dict(rows)
