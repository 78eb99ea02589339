"""Item 2's authenticated floor: the least a cached page of a token-authenticated, rate-limited
django-ninja API can do here. GET /bench/api/page?page=1: the API's own bearer-token check (the
process's memory of tokens, mailer.services.tokens), then one Redis round trip (mailer.roundtrip)
that counts the request against the account's rate limit (mailer.ratelimit.check_rate) and
reads the cached page=1 answer's bytes (bench/listing.py stores them), answered as they are.
No revocation stamp, list version, count, query beyond the page number, links or metrics: what
the list adds to this is ours.

GET /bench/api/page-from-db?page=1, item 2's floor for a page not in the cache: the same
operation, token check and rate limit (one round trip), then the page's ten rows read by one SQL
statement through the DB-API cursor (the list's columns and index, newest first, written out by
hand: no ORM) and rendered with json.dumps. No count, provider names, conversion of the
database's values, cache or links."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection
from django.http import HttpResponse
from ninja import NinjaAPI, Query, Schema
from ninja.security import HttpBearer

from mailer.ratelimit import RateLimited, check_rate
from mailer.selectors.email_lists import SUMMARY_FIELDS
from mailer.services.tokens import token_authenticate

PAGE_KEY = "bench:one-redis-trip-page"  # bench/urls.py's page floor reads the same bytes

api = NinjaAPI(urls_namespace="bench-floor-api", docs_url=None, openapi_url=None)


class _Token(HttpBearer):
    def authenticate(self, request, token: str):
        return token_authenticate(raw=token.strip())


class _Page:
    """A rider: GET the stored page."""

    body: Any = None

    def queue(self, pipe, codec) -> None:
        pipe.get(codec.make_key(PAGE_KEY))

    def take(self, replies: list, codec) -> None:
        self.body = None if replies[0] is None else codec.decode(replies[0])

    def failed(self) -> None:
        self.body = None


class PageQuery(Schema):
    page: int = 1


@api.get("/page", auth=_Token())
def page(request, query: Query[PageQuery]):
    stored = _Page()
    try:
        check_rate(request, request.auth, along=[stored])  # the API's rate limit, one trip
    except RateLimited:
        return HttpResponse(status=429)
    if stored.body is None:
        return HttpResponse(status=404)
    return HttpResponse(stored.body, content_type="application/json")


# The list's page-1 query without the ORM: its summary columns and preview, by its index.
PAGE_SQL = (
    "SELECT " + ", ".join(f'"{name}"' for name in SUMMARY_FIELDS) + ', SUBSTR("text", 1, 501) '
    'FROM "mailer_email" WHERE "account_id" = %s ORDER BY "created_at" DESC, "id" DESC '
    "LIMIT %s OFFSET %s"
)
COLUMNS = [*SUMMARY_FIELDS, "text_head"]


@api.get("/page-from-db", auth=_Token())
def page_from_db(request, query: Query[PageQuery]):
    try:
        check_rate(request, request.auth)
    except RateLimited:
        return HttpResponse(status=429)
    with connection.cursor() as cursor:
        cursor.execute(PAGE_SQL, [request.auth.account_id, 10, (query.page - 1) * 10])
        rows = [dict(zip(COLUMNS, row, strict=True)) for row in cursor.fetchall()]
    body = json.dumps({"count": None, "page": query.page, "results": rows}, default=str)
    return HttpResponse(body, content_type="application/json")
