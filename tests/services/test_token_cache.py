"""Each process remembers the tokens it authenticated for TOKEN_CACHE_SECONDS: a revoked token
or a deactivated account is refused within that bound, and at once where it was revoked."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from harness.api import ApiClient
from mailer.models import ApiToken
from mailer.services import token_authenticate, token_create, token_revoke
from mailer.services import tokens as tokens_module

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch, settings):
    settings.TOKEN_CACHE_SECONDS = 1.0
    clock = Clock()
    monkeypatch.setattr(tokens_module, "_monotonic", clock)
    return clock


def test_a_remembered_token_costs_no_query(account, clock):
    _, raw = token_create(account=account)
    assert token_authenticate(raw=raw) is not None  # read, remembered, last_used_at written
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert token_authenticate(raw=raw).account_id == account.pk
    assert len(queries) == 0


def test_revoked_elsewhere_is_refused_within_the_bound(account, clock):
    _, raw = token_create(account=account)
    assert token_authenticate(raw=raw) is not None
    # Another process revokes it: this one's memory is not told.
    ApiToken.objects.filter(account=account).update(revoked_at=timezone.now())
    clock.now += 0.99
    assert token_authenticate(raw=raw) is not None  # within the documented bound
    clock.now += 0.01
    assert token_authenticate(raw=raw) is None
    clock.now += 10
    assert token_authenticate(raw=raw) is None


def test_revoked_here_is_refused_at_once(account, clock):
    token, raw = token_create(account=account)
    assert token_authenticate(raw=raw) is not None
    token_revoke(token=token)
    assert token_authenticate(raw=raw) is None


def test_a_deactivated_account_is_refused_within_the_bound(account, clock):
    _, raw = token_create(account=account)
    assert token_authenticate(raw=raw) is not None
    type(account).objects.filter(pk=account.pk).update(is_active=False)
    clock.now += 1.0
    assert token_authenticate(raw=raw) is None


def test_memory_is_bounded_and_keeps_no_unknown_tokens(account, clock, monkeypatch):
    monkeypatch.setattr(tokens_module, "_CACHED_TOKENS", 3)
    for _ in range(20):
        assert token_authenticate(raw="es_" + "x" * 40) is None
    assert len(tokens_module._recent._tokens) == 0
    raws = []
    for index in range(5):
        _, raw = token_create(account=account, name=f"t{index}")
        raws.append(raw)
        token_authenticate(raw=raw)
    assert len(tokens_module._recent._tokens) == 3


def test_a_revocation_stamped_elsewhere_is_seen_by_the_next_request(api, account, clock):
    """Another process revokes through the service: the stamp it leaves in Redis rides in this
    process's next rate-limit round trip, so the remembered token is read again at once."""
    token, raw = token_create(account=account)
    client = ApiClient.django(Client(), raw)
    assert client.get("/api/v1/emails").status_code == 200  # read and remembered
    assert client.get("/api/v1/emails").status_code == 200  # from memory
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    tokens_module._stamp(account.pk)  # what token_revoke does besides, in that other process
    assert client.get("/api/v1/emails").status_code == 401
    assert client.post("/send_email/", {"TOKEN": raw}).status_code == 403  # the original API


def test_a_stamp_does_not_refuse_a_token_that_is_still_good(account, clock):
    _, raw = token_create(account=account)
    other, _ = token_create(account=account, name="other")
    client = ApiClient.django(Client(), raw)
    assert client.get("/api/v1/emails").status_code == 200
    token_revoke(token=other)  # another token of the account
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/emails").status_code == 200  # read again, still good
    assert any("mailer_apitoken" in q["sql"] for q in queries.captured_queries)
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/emails").status_code == 200
    assert not any("mailer_apitoken" in q["sql"] for q in queries.captured_queries)
