"""Reads of emails: cached list pages (serialized dicts, never QuerySets) and details."""

from __future__ import annotations

import base64
import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache

from mailer import listcache
from mailer.models import DeliveryAttempt, Email, EmailStatus, ProviderConfig

logger = logging.getLogger("mailer.selectors")

MAX_PAGE_SIZE = 100
# COUNT(*) scans the account's index: ~50 ms at a million emails, on every uncached page. Up to
# EXACT_COUNT_LIMIT matching emails the count is exact; past it, it is counted once and cached
# for LARGE_COUNT_SECONDS outside the list version, so a large account's count may lag by that.
EXACT_COUNT_LIMIT = 10_000
LARGE_COUNT_SECONDS = 60
SUMMARY_FIELDS = [
    "id", "status", "from_email", "to", "cc", "bcc", "subject", "text", "requested_provider_id",
    "sent_via_id", "sent_via_kind", "provider_message_id", "message_id", "failure_reason",
    "possible_duplicate", "created_at", "sent_at", "tries", "next_attempt_at",
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
        # The original list showed the text body; kept so /view_sent_emails/ needs no second read.
        "text": email.text,
        "requested_provider": _provider_ref(providers.get(email.requested_provider_id)),
        "sent_via": _provider_ref(providers.get(email.sent_via_id), email.sent_via_kind),
        "provider_message_id": email.provider_message_id,
        "message_id": email.message_id,
        "failure_reason": email.failure_reason,
        "possible_duplicate": email.possible_duplicate,
        "created_at": email.created_at,
        "sent_at": email.sent_at,
        "tries": email.tries,
        # When a queued email is due for its next try (queue mode); None once it is done.
        "next_attempt_at": email.next_attempt_at
        if email.status in (EmailStatus.QUEUED, EmailStatus.SENDING)
        else None,
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
    }


def email_get(*, account, email_id: int) -> Email:
    """One email of this account with its attempts; Email.DoesNotExist for anyone else's."""
    return (
        Email.objects.select_related("requested_provider", "sent_via")
        .prefetch_related("attempts")
        .get(account=account, pk=email_id)
    )


def _count(emails, key: str | None) -> int:
    """The number of emails: exact up to EXACT_COUNT_LIMIT, else cached under key (see above).
    Without a key (the cache is down) it is exact."""
    if key is None:
        return emails.count()
    try:
        cached = cache.get(key)
    except Exception:
        logger.warning("cache unreachable: counting emails exactly", exc_info=True)
        return emails.count()
    if cached is not None:
        return cached
    count = emails.order_by()[: EXACT_COUNT_LIMIT + 1].count()
    if count > EXACT_COUNT_LIMIT:
        count = emails.count()
        try:
            cache.set(key, count, timeout=LARGE_COUNT_SECONDS)
        except Exception:
            logger.warning("cache unreachable: could not store a large count", exc_info=True)
    return count


def _list_from_db(
    account_id: int,
    page: int,
    page_size: int,
    status: str | None,
    provider_id: int | None,
    *,
    cached_count: bool = True,
) -> dict[str, Any]:
    emails = Email.objects.filter(account_id=account_id)
    if status:
        emails = emails.filter(status=status)
    if provider_id:
        emails = emails.filter(sent_via_id=provider_id)
    count_key = f"emails:count:{account_id}:{status or ''}:{provider_id or ''}"
    count = _count(emails, count_key if cached_count else None)
    offset = (page - 1) * page_size
    rows = list(
        emails.only(*SUMMARY_FIELDS).order_by("-created_at", "-id")[offset : offset + page_size]
    )
    provider_ids = {i for e in rows for i in (e.requested_provider_id, e.sent_via_id) if i}
    providers = ProviderConfig.objects.in_bulk(provider_ids) if provider_ids else {}
    return {
        "count": count,
        "page": page,
        "page_size": page_size,
        "results": [email_summary(e, providers) for e in rows],
    }


def email_list(
    *,
    account_id: int,
    page: int = 1,
    page_size: int = 10,
    status: str | None = None,
    provider_id: int | None = None,
) -> dict[str, Any]:
    """One page of an account's emails, newest first: {count, page, page_size, results}.

    Cached per account and query for LIST_CACHE_SECONDS; a write bumps the account's version.
    If the cache is unreachable the page comes from the database, and that is logged.
    """
    page_size = max(1, min(page_size, MAX_PAGE_SIZE))
    page = max(1, page)
    try:
        key = (
            f"emails:list:{account_id}:{listcache.version(account_id)}:"
            f"{status or ''}:{provider_id or ''}:{page}:{page_size}"
        )
        cached = cache.get(key)
    except Exception:
        logger.warning(
            "cache unreachable: listing emails of account %s from the database",
            account_id,
            exc_info=True,
        )
        return _list_from_db(account_id, page, page_size, status, provider_id, cached_count=False)
    if cached is not None:
        return cached
    result = _list_from_db(account_id, page, page_size, status, provider_id)
    try:
        cache.set(key, result, timeout=settings.LIST_CACHE_SECONDS)
    except Exception:
        logger.warning("cache unreachable: could not store a list page", exc_info=True)
    return result
