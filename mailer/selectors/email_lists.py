"""Reads of an account's email list: cached pages (summaries, never QuerySets) by number or by
cursor, read from the database through statements compiled once (mailer.selectors.statements)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models.functions import Substr

from mailer import cacheguard, listcache, metrics
from mailer.errors import InvalidInput
from mailer.models import Email

from . import cursors, statements
from .cursors import Position
from .emails import MAX_PAGE_SIZE, email_summary
from .pages import Page

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


def _list_item(row: SimpleNamespace, providers: dict[int, SimpleNamespace]) -> dict[str, Any]:
    """A list row: the summary and the start of the text body (`text_head`, cut in SQL to one
    character more than the preview, so a long body is neither fetched nor cached)."""
    limit = settings.LIST_TEXT_PREVIEW_CHARS
    head = row.text_head or ""
    return {
        **email_summary(row, providers),
        "text_preview": head[:limit],
        "text_truncated": len(head) > limit,
    }


_UNREAD = object()  # _count: the list's cache lookup did not read the count


def _count(query: ListQuery, cached: Any = _UNREAD) -> tuple[int, bool]:
    """The number of the query's emails, and whether it is exact: exact up to
    EXACT_COUNT_LIMIT, else cached under its count_key (see above) and then not exact.
    `cached`: what the list's cache lookup found under that key (None: nothing), or _UNREAD to
    read it here. When the cache can't answer it is exact."""
    key = query.count_key
    if cached is _UNREAD:
        cached = cacheguard.call("reading a count", lambda: cache.get(key), _UNREAD)
        if cached is _UNREAD:
            return query.emails().count(), True
    if cached is not None:
        return cached, False
    emails = query.emails()
    count = emails.order_by()[: EXACT_COUNT_LIMIT + 1].count()
    if count > EXACT_COUNT_LIMIT:
        count = emails.count()
        cacheguard.run(
            "storing a count", lambda: cache.set(key, count, timeout=LARGE_COUNT_SECONDS)
        )
    return count, True


@dataclass(frozen=True)
class Encode:
    """A form a list's rows are kept in instead of dicts, made once when the page is read from
    the database and cached in that form: e.g. the API's JSON of its rows, so a cached page is
    answered without rendering them again. `name` tells its cached pages apart."""

    name: str
    rows: Callable[[list[dict[str, Any]]], Any]


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
    encode: Encode | None = None

    @classmethod
    def of(cls, *, account_id: int, page: int = 1, page_size: int = 10,
           status: str | None = None, provider_id: int | None = None,
           delivery: str | None = None, cursor: str | None = None,
           encode: Encode | None = None) -> ListQuery:  # fmt: skip
        """Normalized: page_size within 1..MAX_PAGE_SIZE, page at least 1; a `cursor` (""
        for the newest) makes a keyset page. InvalidInput for a cursor we never gave out.
        `encode`: the page's results are kept (and cached) as what it makes of them."""
        after = None
        if cursor:
            try:
                after = cursors.decode(cursor)
            except ValueError as exc:
                raise InvalidInput({"cursor": [str(exc)]}, message=str(exc)) from None
        return cls(account_id, None if cursor is not None else max(1, page),
                   max(1, min(page_size, MAX_PAGE_SIZE)), status or None, provider_id or None,
                   delivery or None, after, encode)  # fmt: skip

    @property
    def page_key(self) -> str:
        """Where the page is cached: by its filters, size and number; on a keyset page "c" and
        its position instead of the number ("c" alone from the newest); an encoded page apart
        from the rows, by its encoding's name."""
        where = self.page if self.page is not None else "c" + (self.after.key if self.after else "")
        form = (self.encode.name,) if self.encode else ()
        return listcache.page_key(self.account_id, self.status or "", self.provider_id or "",
                                  where, self.page_size, self.delivery or "", *form)  # fmt: skip

    @property
    def count_key(self) -> str:
        return (f"emails:count:{self.account_id}:{self.status or ''}:{self.provider_id or ''}:"
                f"{self.delivery or ''}")  # fmt: skip

    def lookup(self) -> listcache.Lookup:
        """What reading this page needs from the cache (mailer.listcache)."""
        return listcache.Lookup(self.account_id, self.page_key, self.count_key)

    @property
    def shape(self) -> tuple[bool, bool, bool]:
        """Which of emails()' filters are in its SQL (mailer.selectors.statements)."""
        return (bool(self.status), bool(self.delivery), bool(self.provider_id))

    @property
    def params(self) -> list[Any]:
        """emails()' parameters, in its SQL's order."""
        return [self.account_id, *(v for v in (self.status, self.delivery, self.provider_id) if v)]

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
    """Summary columns only, the kind and name of the providers a row names (joined: one query
    for the page), and `text_head`: the start of the text body, cut in SQL to one character
    more than the preview, so a long body is neither fetched nor cached. As dicts: building ten
    model instances cost three times the query itself (bench item 2)."""
    preview = Substr("text", 1, settings.LIST_TEXT_PREVIEW_CHARS + 1)
    return emails.values(*SUMMARY_FIELDS, *PROVIDER_COLUMNS, text_head=preview)


# The providers a list row names, as it shows them: (id column, kind, name) of each.
PROVIDER_REFS = [
    (f"{fk}_id", f"{fk}__kind", f"{fk}__name") for fk in ("requested_provider", "sent_via")
]
PROVIDER_COLUMNS = [column for ref in PROVIDER_REFS for column in ref[1:]]


def _preview_params() -> list[int]:
    """_with_preview's own parameters (first in its SQL: they are in the SELECT)."""
    return [1, settings.LIST_TEXT_PREVIEW_CHARS + 1]


def _as_rows(found) -> list[SimpleNamespace]:
    """values() dicts read as email_summary reads an Email (`pk` and the fields by name)."""
    return [SimpleNamespace(pk=row["id"], **row) for row in found]


def _walk(
    query: ListQuery, order: tuple[str, ...], *, ids_only: bool = False, after: bool = False
) -> tuple[tuple, Any, list]:
    """The query's emails in `order` (after its position if `after`), with their preview or
    only their ids: (shape, build, params) for mailer.selectors.statements."""
    shape = ("email-walk", ids_only, after, order, *query.shape)

    def build():
        emails = query.emails()
        walk = (query.after.after(emails) if after else emails).order_by(*order)
        return walk.values("id") if ids_only else _with_preview(walk)

    params = [*([] if ids_only else _preview_params()), *query.params]
    return shape, build, params + (query.after.params() if after else [])


def _numbered_rows(
    query: ListQuery, offset: int, size: int, count: int, exact: bool
) -> list[SimpleNamespace]:
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
    deferred = skip >= DEFERRED_JOIN_OFFSET  # a long skip: ids from the index first
    found = statements.rows(*_walk(query, order, ids_only=deferred), limit=take, offset=skip)
    rows = _rows_by_id([row["id"] for row in found]) if deferred else _as_rows(found)
    return rows[::-1] if oldest_first else rows


def _rows_by_id(ids: list[int]) -> list[SimpleNamespace]:
    """The summaries of these emails, in the order of `ids` (one gone meanwhile is left out)."""
    if not ids:
        return []
    build = lambda: _with_preview(Email.objects.filter(pk__in=ids))  # noqa: E731
    found = statements.rows(("email-rows", len(ids)), build, [*_preview_params(), *ids])
    by_id = {row.pk: row for row in _as_rows(found)}
    return [by_id[i] for i in ids if i in by_id]


def _providers_named(rows: list[SimpleNamespace]) -> dict[int, SimpleNamespace]:
    """The providers the rows name (read with them), by id, as email_summary reads them."""
    return {
        getattr(row, column): SimpleNamespace(pk=getattr(row, column), kind=getattr(row, kind),
                                              name=getattr(row, name))
        for row in rows
        for column, kind, name in PROVIDER_REFS
        if getattr(row, column)
    }  # fmt: skip


def _list_from_db(query: ListQuery, cached_count: Any = _UNREAD) -> dict[str, Any]:
    """The page from the database; `cached_count` as _count takes it."""
    count, exact = _count(query, cached_count)
    size = query.page_size
    if query.page is None:  # keyset: an index seek, one more row to know if there is more
        walk = _walk(query, ("-created_at", "-id"), after=query.after is not None)
        rows = _as_rows(statements.rows(*walk, limit=size + 1))
        rows, more = rows[:size], len(rows) > size
    else:
        offset = (query.page - 1) * size
        rows = _numbered_rows(query, offset, size, count, exact)
        more = offset + len(rows) < count
    providers = _providers_named(rows)
    results = [_list_item(e, providers) for e in rows]
    return {
        "count": count,
        "count_exact": exact,
        "page": query.page,
        "page_size": size,
        "results": query.encode.rows(results) if query.encode else results,
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
    encode: Encode | None = None,
    defer: Callable[[Callable[[], object]], None] | None = None,
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
    `encode`: `results` is what it makes of the rows (e.g. the API's JSON), cached as such.
    `defer`: a page read from the database is cached by the callable it is handed (e.g. run
    once the answer is sent: mailer.api.emails), instead of before returning.
    """
    wanted = ListQuery.of(account_id=account_id, page=page, page_size=page_size, status=status,
                          provider_id=provider_id, delivery=delivery, cursor=cursor,
                          encode=encode)  # fmt: skip
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
    fill = functools.partial(listcache.store_page, lookup.page_key, lookup.version, result)
    if defer is None:
        fill()
    else:
        defer(fill)
    return result


def email_page(
    *, account_id: int, page: int = 1, page_size: int = 10, clamp: bool = False, **filters: Any
) -> Page:
    """email_list's page (`filters`: its status, provider_id, delivery, cursor, prefetched and
    defer) as a Page. With `clamp`, a numbered page past the end (emails went away, or a
    hand-made URL) is the last page instead."""
    data = email_list(account_id=account_id, page=page, page_size=page_size, **filters)
    found = Page(data["count"], data["page"], data["page_size"], data["results"],
                 data["count_exact"], data["next_cursor"])  # fmt: skip
    if clamp and found.number is not None and found.number > found.last:
        return email_page(account_id=account_id, page=found.last, page_size=page_size, **filters)
    return found
