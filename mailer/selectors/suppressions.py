"""Reads of the suppression list: one account's entries, searched, filtered and paged."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from mailer.models import Suppression
from mailer.validation import control_character
from mailer.vocabulary import SuppressionReason

from .emails import MAX_PAGE_SIZE
from .pages import Page, numbered_page

REASON_LABELS = dict(SuppressionReason.choices)
MAX_SEARCH_CHARS = 320


def suppression_detail(entry: Suppression, *, now=None) -> dict[str, Any]:
    """One entry as the API and the page show it; `active` while it has not expired."""
    now = now or timezone.now()
    return {
        "address": entry.address,
        "reason": entry.reason,
        "reason_label": REASON_LABELS.get(entry.reason, entry.reason),
        "source": entry.source,
        "created_at": entry.created_at,
        "expires_at": entry.expires_at,
        "active": entry.expires_at is None or entry.expires_at > now,
    }


def suppression_page(
    *,
    account,
    search: str = "",
    reason: str | None = None,
    page: int = 1,
    page_size: int = 10,
    clamp: bool = False,
) -> Page:
    """One page of the account's list, newest first: `search` is a case-insensitive part of
    the address, `reason` one of SuppressionReason. Read from the database each time (unlike
    email lists it is not cached: searches rarely repeat, and `active` changes with the clock).
    With `clamp`, a page past the end is the last page instead."""
    entries = Suppression.objects.filter(account=account)
    if search := search.strip()[:MAX_SEARCH_CHARS].lower():
        # Addresses are kept lower-cased, and never hold a control character (PostgreSQL even
        # refuses a NUL in a query): a search with one matches nothing.
        if control_character(search):
            entries = entries.none()
        entries = entries.filter(address__contains=search)
    if reason:
        entries = entries.filter(reason=reason)
    now = timezone.now()
    return numbered_page(entries.order_by("-created_at", "-id"), page=page, page_size=page_size,
                         most=MAX_PAGE_SIZE, show=lambda e: suppression_detail(e, now=now),
                         clamp=clamp)  # fmt: skip
