"""The list count: exact for small accounts; for large ones counted once and cached, so an
uncached page of a million-email account does not scan all of its rows (bench item 2)."""

from __future__ import annotations

import logging

from django.db import connection
from django.test.utils import CaptureQueriesContext

from mailer import listcache, selectors
from mailer.models import Email
from mailer.selectors import email_lists as email_selectors


def _store(account, n: int, **fields) -> None:
    Email.objects.bulk_create(
        Email(account=account, from_email="a@example.com", to=["b@example.org"], **fields)
        for _ in range(n)
    )


def test_small_accounts_count_exactly_after_every_write(account):
    _store(account, 3, status="sent")
    assert selectors.email_list(account_id=account.pk)["count"] == 3
    _store(account, 2, status="sent")
    listcache.bump(account.pk)
    assert selectors.email_list(account_id=account.pk)["count"] == 5


def test_large_accounts_reuse_one_full_count_across_writes(account, monkeypatch):
    monkeypatch.setattr(email_selectors, "EXACT_COUNT_LIMIT", 4)
    _store(account, 6, status="sent")
    _store(account, 1, status="failed")
    assert selectors.email_list(account_id=account.pk)["count"] == 7
    assert selectors.email_list(account_id=account.pk, status="failed")["count"] == 1

    _store(account, 2, status="sent")
    listcache.bump(account.pk)  # a write: the page is read again, its count is not
    with CaptureQueriesContext(connection) as queries:
        page = selectors.email_list(account_id=account.pk, page=2, page_size=3)
    assert page["count"] == 7  # lags by at most LARGE_COUNT_SECONDS
    assert not any("COUNT(" in q["sql"] for q in queries)
    assert [e["id"] for e in page["results"]] == list(
        Email.objects.filter(account=account).values_list("id", flat=True)[3:6]
    )
    # Small filters stay exact.
    _store(account, 1, status="failed")
    listcache.bump(account.pk)
    assert selectors.email_list(account_id=account.pk, status="failed")["count"] == 2


def test_large_count_is_exact_when_the_cache_is_down(
    account, monkeypatch, settings, closed_port, caplog
):
    monkeypatch.setattr(email_selectors, "EXACT_COUNT_LIMIT", 2)
    _store(account, 5, status="sent")
    caplog.set_level(logging.WARNING)
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    assert selectors.email_list(account_id=account.pk)["count"] == 5
    assert "cache unreachable" in caplog.text
