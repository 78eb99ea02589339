"""GET /api/v1/emails by cursor (keyset pages), the numbered pages' deferred join and walk from
the oldest end, count_exact, and the one Redis round trip of a cached list (issue 13)."""

from __future__ import annotations

import base64
import json
import string
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from harness.api import ApiClient
from harness.factories import make_token
from mailer import listcache, selectors
from mailer.models import Email
from mailer.ratelimit import _Window
from mailer.selectors import cursors
from mailer.selectors import email_lists as email_selectors

BASE = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def _store(account, n: int, *, instants: int, subject: str = "old") -> list[int]:
    """n emails of the account over `instants` distinct created_at values (many equal ones, in
    an order unrelated to their ids; some on a whole second), newest first by (created_at, id)."""
    fields = {"from_email": "a@example.com", "to": ["b@example.org"], "status": "sent"}
    emails = Email.objects.bulk_create(
        Email(account=account, subject=f"{subject} {i}", **fields) for i in range(n)
    )
    at = {}
    for i, email in enumerate(emails):
        k = (i * 7919) % instants
        at.setdefault(k, []).append(email.pk)
    for k, ids in at.items():
        moment = BASE + timedelta(seconds=k, microseconds=(k % 3) * 250_001)
        Email.objects.filter(pk__in=ids).update(created_at=moment)
    listcache.bump(account.pk)
    ordered = Email.objects.filter(account=account).order_by("-created_at", "-id")
    return list(ordered.values_list("id", flat=True))


def _walk(api, **query) -> list[dict]:
    """Every page of a cursor walk from the newest, following `next`."""
    pages = [api.get("/api/v1/emails", {"cursor": "", **query}).json()]
    while pages[-1]["next"]:
        parts = urlsplit(pages[-1]["next"])
        pages.append(api.get(f"{parts.path}?{parts.query}").json())
        assert len(pages) < 1000
    return pages


def _key(row: dict) -> tuple[datetime, int]:
    return datetime.fromisoformat(row["created_at"]), row["id"]


def test_a_cursor_walk_sees_every_email_once_newest_first_ties_by_id(api, account):
    expected = _store(account, 57, instants=9)
    pages = _walk(api, page_size=5)
    rows = [row for page in pages for row in page["results"]]
    assert [row["id"] for row in rows] == expected
    assert [_key(r) for r in rows] == sorted((_key(r) for r in rows), reverse=True)
    assert len(pages) == 12 and [len(p["results"]) for p in pages][-1] == 2
    for page in pages:
        assert page["page"] is None and page["previous"] is None
        assert page["count"] == 57 and page["count_exact"] is True
        assert page["page_size"] == 5
    assert pages[-1]["next"] is None and pages[-1]["next_cursor"] is None
    query = parse_qs(urlsplit(pages[0]["next"]).query)
    assert query == {"cursor": [pages[0]["next_cursor"]], "page_size": ["5"]}


def test_numbered_pages_stay_as_they_were_and_give_a_cursor_to_go_on(api, account):
    expected = _store(account, 23, instants=4)
    first = api.get("/api/v1/emails").json()
    assert first["page"] == 1 and "page=2" in first["next"] and first["previous"] is None
    assert [e["id"] for e in first["results"]] == expected[:10]
    onward = api.get("/api/v1/emails", {"cursor": first["next_cursor"]}).json()
    assert [e["id"] for e in onward["results"]] == expected[10:20]
    last = api.get("/api/v1/emails", {"page": 3}).json()
    assert [e["id"] for e in last["results"]] == expected[20:]
    assert last["next"] is None and last["next_cursor"] is None
    assert "page=2" in last["previous"]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def _stray_bits() -> str:
    """Another encoding of a position: the last character's unused bits set."""
    canonical = _b64("1762000000000000.12")
    for other in (canonical[:-1] + c for c in string.ascii_letters + string.digits + "-_"):
        if other != canonical and base64.urlsafe_b64decode(other + "==") == b"1762000000000000.12":
            return other
    raise AssertionError("no other encoding")


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",  # not base64 of a position
        _b64("nope"),
        _b64("1762000000000000.1") + "=",  # padded
        _b64("0001762000000000000.1"),  # leading zeros
        _b64("1762000000000000.0"),  # id 0
        _b64("1762000000000000.-1"),
        _b64("-1.1"),
        _b64("1762000000000000.1.2"),
        _b64("999999999999999999.1"),  # past the year 9999
        _b64(f"1762000000000000.{2**63}"),  # past the largest id
        _stray_bits(),
        "A" * 65,
        "A" * 100_000,
        "abc\x00def",
        "\x00",
        "héllo",
        "ＭＴｃ",  # fullwidth letters
        "MTc2Mj AwMDAw",
        base64.b64encode(b"1762000000000000.1>>?").decode(),  # the standard alphabet
    ],
)
def test_malformed_cursors_are_422_with_a_message(api, account, cursor):
    response = api.get("/api/v1/emails", {"cursor": cursor})
    assert response.status_code == 422, response.content[:300]
    body = response.json()
    assert body["errors"][0]["field"] == "cursor"
    assert "cursor" in body["errors"][0]["message"].lower() or "64" in body["errors"][0]["message"]


def test_a_cursor_with_a_page_is_422(api, account):
    cursor = cursors.Position(BASE, 5).cursor()
    response = api.get("/api/v1/emails", {"cursor": cursor, "page": 2})
    assert response.status_code == 422
    assert response.json()["errors"][0] == {
        "field": "cursor",
        "message": "Value error, Give either page or cursor, not both.",
    }


def test_cursors_round_trip_and_reject_what_they_never_give():
    position = cursors.Position(BASE + timedelta(microseconds=7), 2**63 - 1)
    assert cursors.decode(position.cursor()) == position
    zero = cursors.Position(datetime(1970, 1, 1, tzinfo=UTC), 1)
    assert cursors.decode(zero.cursor()) == zero
    with pytest.raises(ValueError, match="Not a cursor this API gave out"):
        cursors.decode(position.cursor()[:12])  # cut before its "."


def test_a_cursor_is_a_position_in_the_callers_own_list(api, account, other_account, client):
    mine = _store(account, 6, instants=6)
    theirs = _store(other_account, 6, instants=6, subject="bob")
    other = ApiClient.django(client, make_token(other_account))
    cursor = other.get("/api/v1/emails", {"page_size": 2}).json()["next_cursor"]
    # Bob's position, in Alice's list: Alice's emails after it, never one of Bob's.
    seen = api.get("/api/v1/emails", {"cursor": cursor, "page_size": 100}).json()
    ids = [row["id"] for row in seen["results"]]
    assert ids and set(ids) <= set(mine) and not set(ids) & set(theirs)
    bob_position = cursors.decode(cursor)
    expected = [
        e.pk
        for e in Email.objects.filter(account=account).order_by("-created_at", "-id")
        if (e.created_at, e.pk) < (bob_position.created_at, bob_position.id)
    ]
    assert ids == expected
    # And a hand-made position far in the future: the whole list, still Alice's alone.
    future = cursors.Position(BASE + timedelta(days=9999), 2**62).cursor()
    assert [r["id"] for r in api.get("/api/v1/emails", {"cursor": future}).json()["results"]] == (
        mine[:10]
    )


def test_count_exact_says_when_the_count_is_the_cached_one(api, account, monkeypatch):
    _store(account, 7, instants=3)
    assert api.get("/api/v1/emails").json()["count_exact"] is True
    monkeypatch.setattr(email_selectors, "EXACT_COUNT_LIMIT", 4)
    listcache.bump(account.pk)
    counted = api.get("/api/v1/emails").json()  # counted now: exact, and cached for later
    assert (counted["count"], counted["count_exact"]) == (7, True)
    _store(account, 2, instants=2, subject="new")  # bumps: the page is read again, not counted
    again = api.get("/api/v1/emails", {"cursor": ""}).json()
    assert (again["count"], again["count_exact"]) == (7, False)
    assert len(again["results"]) == 9


@pytest.mark.parametrize("deferred_from", [0, 1_000])
@pytest.mark.parametrize("exact_limit", [10_000, 3])
def test_every_numbered_page_is_the_offset_page_however_it_is_read(
    account, monkeypatch, deferred_from, exact_limit
):
    """Deferred join or not, from the newest end or (exact count, older half) the oldest: each
    page is the plain OFFSET page."""
    monkeypatch.setattr(email_selectors, "DEFERRED_JOIN_OFFSET", deferred_from)
    monkeypatch.setattr(email_selectors, "EXACT_COUNT_LIMIT", exact_limit)
    expected = _store(account, 47, instants=5)
    for size in (1, 4, 10):
        for number in range(1, 47 // size + 3):
            listcache.bump(account.pk)
            page = selectors.email_list(account_id=account.pk, page=number, page_size=size)
            wanted = expected[(number - 1) * size : number * size]
            assert [r["id"] for r in page["results"]] == wanted, (size, number)


def test_an_older_page_of_an_exact_count_is_walked_from_the_oldest_end(account):
    _store(account, 40, instants=4)
    selectors.email_list(account_id=account.pk, page=4, page_size=10)  # (the shape compiled)
    listcache.bump(account.pk)
    with CaptureQueriesContext(connection) as queries:
        selectors.email_list(account_id=account.pk, page=4, page_size=10)
    walks = [q["sql"] for q in queries if "LIMIT" in q["sql"] and "COUNT" not in q["sql"]]
    assert len(walks) == 1, walks
    order = walks[0].split("ORDER BY")[1]  # (by column or by position)
    assert " ASC" in order and " DESC" not in order, walks[0]
    assert walks[0].endswith("LIMIT 10 OFFSET 0")  # the oldest page: nothing to skip


# One round trip ------------------------------------------------------------------------------


def test_a_cached_list_is_one_redis_round_trip_and_no_sql(api, account, round_trips):
    _store(account, 12, instants=3)
    for query in ({}, {"page": 2}, {"cursor": ""}, {"status": "sent", "page_size": 3}):
        api.get("/api/v1/emails", query)  # the miss stores the page
        api.get("/api/v1/emails", query)  # a hit; and the token is remembered now
        round_trips.clear()
        with CaptureQueriesContext(connection) as queries:
            response = api.get("/api/v1/emails", query)
        assert response.status_code == 200
        assert len(round_trips) == 1, round_trips  # the rate limit, the version and the page
        assert len(queries) == 0, [q["sql"] for q in queries]


def test_other_requests_count_the_rate_limit_in_one_round_trip(api, account, round_trips):
    [email_id] = _store(account, 1, instants=1)
    api.get(f"/api/v1/emails/{email_id}")
    round_trips.clear()
    assert api.get(f"/api/v1/emails/{email_id}").status_code == 200
    assert len(round_trips) == 1
    # The count is an ordinary integer under the django cache API.
    assert cache.get(_Window.current(account.pk).key) == 2


def test_the_round_trip_is_one_script_call_and_survives_redis_forgetting_it(
    api, account, round_trips
):
    """The commands go as one script: by its text the first time, by its SHA after; a Redis
    that lost its scripts (SCRIPT FLUSH, a restart) gets the text again, and the page and the
    rate limit are right throughout."""
    from django_redis import get_redis_connection

    _store(account, 12, instants=3)
    api.get("/api/v1/emails")
    api.get("/api/v1/emails")
    round_trips.clear()
    first = api.get("/api/v1/emails").json()
    assert len(round_trips) == 1 and b"EVALSHA" in b"".join(round_trips[0])
    get_redis_connection("default").script_flush()
    round_trips.clear()
    again = api.get("/api/v1/emails")
    assert again.status_code == 200 and again.json() == first
    # NOSCRIPT, then EVAL
    assert [b"EVALSHA" in b"".join(sent) for sent in round_trips] == [True, False]
    round_trips.clear()
    assert api.get("/api/v1/emails").json() == first
    assert len(round_trips) == 1 and b"EVALSHA" in b"".join(round_trips[0])
    assert cache.get(_Window.current(account.pk).key) == 5


def test_the_rate_limit_without_redis(api, account, settings, client, other_account):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.API_RATE_LIMIT = "3/m"
    _store(account, 3, instants=2)
    assert [api.get("/api/v1/emails").status_code for _ in range(3)] == [200, 200, 200]
    limited = api.get("/api/v1/emails")
    assert limited.status_code == 429 and 1 <= int(limited["Retry-After"]) <= 60
    other = ApiClient.django(client, make_token(other_account))
    assert other.get("/api/v1/emails", {"cursor": ""}).json()["count"] == 0


def _as_ninja_renders(data: dict) -> dict:
    """`data` validated against EmailPage and rendered by django-ninja's own renderer, as a
    validating view would (the API's renderer is held to that one in test_rendering.py)."""
    from ninja.renderers import JSONRenderer

    from mailer.api.schemas import EmailPage

    validated = EmailPage.model_validate(data).model_dump(by_alias=True)
    return json.loads(JSONRenderer().render(None, validated, response_status=200))


def test_the_list_renders_as_the_schema_would_without_validating_again(
    api, account, add_provider, smtp_sink, closed_port
):
    """list_emails skips django-ninja's response validation: its JSON must be what validating
    against EmailPage would give, for every kind of row (sent after a failover, with a
    suppressed recipient, stored by hand), by number and by cursor, and the selectors' extra
    keys (text_preview) left out."""
    from harness.factories import loopback_smtp
    from mailer.services.suppressions import suppression_add

    add_provider("smtp", name="down", settings=loopback_smtp(closed_port), priority=1)
    sink = add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port), priority=2)
    suppression_add(account=account, address="gone@example.org")
    body = {"from": "Shop <shop@example.com>", "to": ["ann@example.org", "gone@example.org"],
            "subject": "Ünïcode ✓", "text": "x" * 600, "html": "<p>x</p>"}  # fmt: skip
    assert api.post("/api/v1/emails", body).status_code == 201
    assert api.post("/api/v1/emails", body | {"provider": sink.pk}).status_code == 201
    _store(account, 3, instants=1)
    for query in ("?page=1", "?page=1", "?page=2&page_size=2", "?cursor=", "?status=sent"):
        answer = api.get("/api/v1/emails" + query)  # (the second ?page=1 from the cache)
        assert answer.status_code == 200
        data = answer.json()
        assert data["results"] and "text_preview" not in data["results"][0], query
        assert data == _as_ninja_renders(data), query
