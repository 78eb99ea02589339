"""Reads of emails: cached list pages (serialized summaries, never QuerySets) and details."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Prefetch
from django.db.models.functions import Substr

from mailer import cacheguard, listcache, metrics
from mailer.errors import InvalidInput
from mailer.models import (
    MAX_ID,
    DeliveryAttempt,
    DeliveryEvent,
    Email,
    EmailStatus,
    ProviderConfig,
)

from . import cursors
from .cursors import Position
from .pages import Page

MAX_PAGE_SIZE = 100
# COUNT(*) scans the account's index: ~50 ms at a million emails, on every uncached page. Up to
# EXACT_COUNT_LIMIT matching emails the count is exact; past it, it is counted once and cached
# for LARGE_COUNT_SECONDS outside the list version, so a large account's count may lag by that.
EXACT_COUNT_LIMIT = 10_000
LARGE_COUNT_SECONDS = 60
# A numbered page this deep reads its ids from the index, then its rows (_numbered_rows). Below
# it the second query costs more than it saves (on SQLite skipping 50,000 entries for ids alone
# takes ~2.3 ms against ~3.4 ms for whole rows; on PostgreSQL an index-only scan saves more).
DEFERRED_JOIN_OFFSET = 1_000
SUMMARY_FIELDS = [
    "id", "status", "from_email", "to", "cc", "bcc", "subject", "requested_provider_id",
    "sent_via_id", "sent_via_kind", "provider_message_id", "message_id", "failure_reason",
    "possible_duplicate", "created_at", "sent_at", "tries", "next_attempt_at", "delivery",
    "suppressed", "send_at",
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
        "send_at": email.send_at,
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


# Lists ---------------------------------------------------------------------------------------

_UNREAD = object()  # _count: the list's cache lookup did not read the count


def _count(emails, key: str, cached: Any = _UNREAD) -> tuple[int, bool]:
    """The number of emails, and whether it is exact: exact up to EXACT_COUNT_LIMIT, else
    cached under key (see above) and then not exact. `cached`: what the list's cache lookup
    found under key (None: nothing), or _UNREAD to read it here. When the cache can't answer
    it is exact."""
    if cached is _UNREAD:
        cached = cacheguard.call("reading a count", lambda: cache.get(key), _UNREAD)
        if cached is _UNREAD:
            return emails.count(), True
    if cached is not None:
        return cached, False
    count = emails.order_by()[: EXACT_COUNT_LIMIT + 1].count()
    if count > EXACT_COUNT_LIMIT:
        count = emails.count()
        cacheguard.run(
            "storing a count", lambda: cache.set(key, count, timeout=LARGE_COUNT_SECONDS)
        )
    return count, True


@dataclass(frozen=True)
class ListQuery:
    """One page of an account's list, as its selectors read and cache it: by number (`page`),
    or, when `page` is None, the keyset page after the position `after` (None: the newest)."""

    account_id: int
    page: int | None
    page_size: int
    status: str | None
    provider_id: int | None
    delivery: str | None
    after: Position | None

    @classmethod
    def of(cls, *, account_id: int, page: int = 1, page_size: int = 10,
           status: str | None = None, provider_id: int | None = None,
           delivery: str | None = None, cursor: str | None = None) -> ListQuery:  # fmt: skip
        """Normalized: page_size within 1..MAX_PAGE_SIZE, page at least 1; a `cursor` (""
        for the newest) makes a keyset page. InvalidInput for a cursor we never gave out."""
        after = None
        if cursor:
            try:
                after = cursors.decode(cursor)
            except ValueError as exc:
                raise InvalidInput({"cursor": [str(exc)]}, message=str(exc)) from None
        return cls(account_id, None if cursor is not None else max(1, page),
                   max(1, min(page_size, MAX_PAGE_SIZE)), status or None, provider_id or None,
                   delivery or None, after)  # fmt: skip

    @property
    def page_key(self) -> str:
        """Where the page is cached: by its filters, size and number; on a keyset page "c" and
        its position instead of the number ("c" alone from the newest)."""
        where = self.page if self.page is not None else "c" + (self.after.key if self.after else "")
        return listcache.page_key(self.account_id, self.status or "", self.provider_id or "",
                                  where, self.page_size, self.delivery or "")  # fmt: skip

    @property
    def count_key(self) -> str:
        return (f"emails:count:{self.account_id}:{self.status or ''}:{self.provider_id or ''}:"
                f"{self.delivery or ''}")  # fmt: skip

    def lookup(self) -> listcache.Lookup:
        """What reading this page needs from the cache (mailer.listcache)."""
        return listcache.Lookup(self.account_id, self.page_key, self.count_key)

    def emails(self):
        """The account's emails this query filters (unordered)."""
        emails = Email.objects.filter(account_id=self.account_id)
        if self.status:
            emails = emails.filter(status=self.status)
        if self.delivery:
            emails = emails.filter(delivery=self.delivery)
        if self.provider_id:
            emails = emails.filter(sent_via_id=self.provider_id)
        return emails


def _with_preview(emails):
    """Summary columns only, and `text_head`: the start of the text body, cut in SQL to one
    character more than the preview, so a long body is neither fetched nor cached."""
    preview = Substr("text", 1, settings.LIST_TEXT_PREVIEW_CHARS + 1)
    return emails.only(*SUMMARY_FIELDS).annotate(text_head=preview)


def _numbered_rows(emails, offset: int, size: int, count: int, exact: bool) -> list[Email]:
    """The page at `offset`, newest first. When the count is exact and the page lies nearer the
    oldest end, the index is walked from there (ascending, from the mirrored offset) and the
    rows reversed: the shorter skip. Past DEFERRED_JOIN_OFFSET the ids are read from the index
    alone, then the rows by id (a deferred join: the rows skipped are never fetched).

    The count was read by another statement: emails stored since are newer than all it
    counted. So the newest-first walk takes a whole page whatever the count says (a page it
    shows is never short of an email stored before the request), and the walk from the oldest
    end shows the page as it was when counted, agreeing with the count in the same answer."""
    order, skip, take, oldest_first = ("-created_at", "-id"), offset, size, False
    if exact:
        if offset >= count:
            return []
        last = min(size, count - offset)
        mirrored = count - offset - last
        if mirrored < offset:
            order, skip, take, oldest_first = ("created_at", "id"), mirrored, last, True
    walk = emails.order_by(*order)
    if skip < DEFERRED_JOIN_OFFSET:  # a short skip: one query does
        rows = list(_with_preview(walk)[skip : skip + take])
    else:
        rows = _rows_by_id(list(walk.values_list("id", flat=True)[skip : skip + take]))
    return rows[::-1] if oldest_first else rows


def _rows_by_id(ids: list[int]) -> list[Email]:
    """The summaries of these emails, in the order of `ids` (one gone meanwhile is left out)."""
    found = {e.pk: e for e in _with_preview(Email.objects.filter(pk__in=ids))} if ids else {}
    return [found[i] for i in ids if i in found]


def _list_from_db(query: ListQuery, cached_count: Any = _UNREAD) -> dict[str, Any]:
    """The page from the database; `cached_count` as _count takes it."""
    emails = query.emails()
    count, exact = _count(emails, query.count_key, cached_count)
    size = query.page_size
    if query.page is None:  # keyset: an index seek, one more row to know if there is more
        page = emails if query.after is None else query.after.after(emails)
        rows = list(_with_preview(page).order_by("-created_at", "-id")[: size + 1])
        rows, more = rows[:size], len(rows) > size
    else:
        offset = (query.page - 1) * size
        rows = _numbered_rows(emails, offset, size, count, exact)
        more = offset + len(rows) < count
    provider_ids = {i for e in rows for i in (e.requested_provider_id, e.sent_via_id) if i}
    named = ProviderConfig.objects.only("id", "kind", "name")  # what a row shows of them
    providers = named.in_bulk(provider_ids) if provider_ids else {}
    results = [_list_item(e, providers) for e in rows]
    return {
        "count": count,
        "count_exact": exact,
        "page": query.page,
        "page_size": size,
        "results": results,
        "next_cursor": Position.of(results[-1]).cursor() if more and results else None,
    }


def email_list_lookup(**query: Any) -> listcache.Lookup:
    """What email_list(**query) (its arguments but `prefetched`) will read from the cache,
    for the caller to read beforehand in a round trip of its own (the API, with its rate
    limit) and pass as `prefetched`."""
    return ListQuery.of(**query).lookup()


def email_list(
    *,
    account_id: int,
    page: int = 1,
    page_size: int = 10,
    status: str | None = None,
    provider_id: int | None = None,
    delivery: str | None = None,
    cursor: str | None = None,
    prefetched: listcache.Lookup | None = None,
) -> dict[str, Any]:
    """One page of an account's emails, newest first, by (created_at, id):
    {count, count_exact, page, page_size, results, next_cursor}; filtered by status,
    provider_id (sent via) and delivery (DeliveryState) when given. With a `cursor` (a
    next_cursor given out before; "" for the newest) it is the keyset page after that
    position and `page` is None. next_cursor continues after the page's last row (None when
    nothing follows). `count_exact` is False when count is the large count cached up to
    LARGE_COUNT_SECONDS (see EXACT_COUNT_LIMIT).

    Each result is a summary with `text_preview` (at most LIST_TEXT_PREVIEW_CHARS) and
    `text_truncated`, never the whole body (email_texts has those). Cached per account and query
    (mailer.listcache: a write bumps the account's version; a lost bump is outlived within
    LIST_CACHE_STALE_SECONDS). If the cache can't answer the page comes from the database.
    `prefetched`: the email_list_lookup of this query, already read (else it is read here).
    """
    wanted = ListQuery.of(account_id=account_id, page=page, page_size=page_size, status=status,
                          provider_id=provider_id, delivery=delivery, cursor=cursor)  # fmt: skip
    lookup = prefetched
    if lookup is None or lookup.page_key != wanted.page_key:
        lookup = wanted.lookup()
    listcache.read(lookup)
    if lookup.version is None:
        metrics.list_page(cached=False)
        return _list_from_db(wanted)
    metrics.list_page(cached=lookup.page is not None)
    if lookup.page is not None:
        return lookup.page
    result = _list_from_db(wanted, lookup.count)
    listcache.store_page(lookup.page_key, lookup.version, result)
    return result


def email_page(
    *, account_id: int, page: int = 1, page_size: int = 10, clamp: bool = False, **filters: Any
) -> Page:
    """email_list's page (`filters`: its status, provider_id, delivery, cursor and prefetched)
    as a Page. With `clamp`, a numbered page past the end (emails went away, or a hand-made
    URL) is the last page instead."""
    data = email_list(account_id=account_id, page=page, page_size=page_size, **filters)
    found = Page(data["count"], data["page"], data["page_size"], data["results"],
                 data["count_exact"], data["next_cursor"])  # fmt: skip
    if clamp and found.number is not None and found.number > found.last:
        return email_page(account_id=account_id, page=found.last, page_size=page_size, **filters)
    return found


def email_texts(*, account_id: int, email_ids: list[int]) -> dict[int, str]:
    """The whole text bodies of these emails of the account (for rows whose list preview was
    cut short), read from the database: bodies are never cached."""
    if not email_ids:
        return {}
    rows = Email.objects.filter(account_id=account_id, pk__in=email_ids).values_list("pk", "text")
    return dict(rows)
