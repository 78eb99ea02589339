"""The API's renderer (mailer.api.rendering): orjson, writing every value as django-ninja's own
renderer (the stdlib's json with NinjaJSONEncoder) writes it; and the list's page cached once
its answer is sent."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from ipaddress import IPv4Address

import pytest
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils.translation import gettext_lazy
from ninja.renderers import JSONRenderer
from pydantic import BaseModel

from harness.factories import make_email, make_token
from mailer.api import api as ninja_api
from mailer.api import rendering
from mailer.models import EmailStatus


class _Model(BaseModel):
    at: datetime
    name: str


def _stock(data) -> bytes:
    """What django-ninja's own renderer makes of `data`."""
    return JSONRenderer().render(None, data, response_status=200).encode()


VALUES = {
    "utc micro": datetime(2026, 12, 2, 12, 59, 24, 123456, tzinfo=UTC),
    "utc whole": datetime(2026, 12, 2, 12, 59, 24, tzinfo=UTC),
    "naive": datetime(2026, 12, 2, 12, 59, 24, 500),
    "date": date(2026, 12, 2),
    "time": time(8, 30, 1, 250000),
    "duration": timedelta(days=1, seconds=5),
    "decimal": Decimal("1.10"),
    "uuid": uuid.UUID(int=7),
    "ip": IPv4Address("192.0.2.1"),
    "lazy": gettext_lazy("Not found."),
    "status": EmailStatus.SENT,
    "model": _Model(at=datetime(2026, 1, 1, tzinfo=UTC), name="x"),
    "nested": [{"at": datetime(2026, 1, 1, 0, 0, 0, 999, tzinfo=UTC), "ok": True}, None, 1.5],
    "text": 'Ünïcode ✓ "quoted" \\ \n\u2028',
    "keys": {1: "one", 2: "two"},
}


@pytest.mark.parametrize("name", list(VALUES))
def test_every_value_is_written_as_django_ninja_writes_it(name):
    data = {"value": VALUES[name]}
    assert json.loads(rendering.dumps(data)) == json.loads(_stock(data))


def test_the_datetimes_keep_the_apis_format():
    ours = rendering.dumps({"at": VALUES["utc micro"], "whole": VALUES["utc whole"]})
    assert ours == b'{"at":"2026-12-02T12:59:24.123Z","whole":"2026-12-02T12:59:24Z"}'


@pytest.mark.parametrize(
    "value",
    [10**30, "half a pair: \ud800"],  # past 64 bits, as a 422 may echo; not UTF-8 encodable
    ids=["huge-int", "lone-surrogate"],
)
def test_what_orjson_refuses_is_rendered_by_the_stdlib(value):
    data = {"value": value, "at": VALUES["utc micro"]}
    assert rendering.dumps(data) == _stock(data)


def test_what_neither_can_write_is_still_an_error():
    with pytest.raises(TypeError):
        rendering.dumps({"x": object()})


def test_the_api_answers_through_it(api, account):
    email = make_email(account, subject="Rendered")
    answer = api.get(f"/api/v1/emails/{email.pk}")
    assert answer.status_code == 200
    assert (
        answer["Content-Type"] == ninja_api.get_content_type() == "application/json; charset=utf-8"
    )
    assert b'"subject":"Rendered"' in answer.content
    problem = api.get("/api/v1/emails/999999999")
    assert problem.status_code == 404 and problem.json()["detail"]


@pytest.fixture
def wsgi_get():
    """GET through Django's WSGI handler, as a server calls it: (status, body, answer), the
    answer not closed yet. As Django's test client does, the request signals do not close the
    test's database connection meanwhile (it is inside the test's transaction)."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)

    def get(path: str, **headers: str) -> tuple[int, bytes, object]:
        environ = RequestFactory().get(path, **headers).environ
        statuses = []
        answer = WSGIHandler()(environ | {"wsgi.input": io.BytesIO()},
                               lambda status, _: statuses.append(status))  # fmt: skip
        return int(statuses[0].split()[0]), b"".join(answer), answer

    yield get
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


def test_a_page_read_from_the_database_is_cached_once_its_answer_is_sent(account, wsgi_get):
    """The uncached list answers first and caches its page when the server closes the answer
    (WSGI), so the client does not wait for that write; the cached page then serves."""
    from mailer.api.emails import ListFilters, _list_query
    from mailer.selectors.email_lists import email_list_lookup

    make_email(account, subject="First")
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {make_token(account)}"}
    key = email_list_lookup(**_list_query(account.pk, ListFilters())).page_key

    status, body, answer = wsgi_get("/api/v1/emails", **bearer)
    assert status == 200 and json.loads(body)["results"][0]["subject"] == "First"
    assert cache.get(key) is None  # answered, not yet cached
    answer.close()
    _, page = cache.get(key)
    assert b'"subject":"First"' in page["results"]
    with CaptureQueriesContext(connection) as queries:
        status, again, answer = wsgi_get("/api/v1/emails", **bearer)  # served from the cache
    answer.close()
    assert status == 200 and again == body and len(queries) == 0
