"""What a try reads of its account (providers, webhook endpoints, suppressions) comes from the
process's memory within a pinned unit of work, and a change is seen by every process at its
next unit of work: the stamp in Redis. Another process is played by forgetting what this one
changed itself (accountcache._local), so only the shared stamp can tell it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from harness.factories import loopback_smtp
from mailer import accountcache
from mailer.models import ProviderConfig
from mailer.services import failover_order, provider_config_update
from mailer.services.providers import provider_move
from mailer.services.suppressions import (
    suppressed_among,
    suppression_add,
    suppression_delete,
    suppressions_import,
)
from mailer.services.webhooks_out import subscribed_endpoints, webhook_endpoint_create

pytestmark = pytest.mark.django_db(transaction=True)  # commits: the stamps are written then


def _smtp(add_provider, name: str, port: int = 2525, **options) -> ProviderConfig:
    return add_provider("smtp", name=name, settings=loopback_smtp(port), trusted=True, **options)


def _names(account) -> list[str]:
    with accountcache.pinned(account.pk):
        return [config.name for config in failover_order(account=account)]


def _elsewhere() -> None:
    """What this process changed itself is forgotten: it now knows only what another would."""
    accountcache._local.clear()


def _queries(work) -> int:
    with CaptureQueriesContext(connection) as queries:
        work()
    return len(queries)


def test_a_pinned_unit_reads_the_account_once_then_from_memory(account, add_provider):
    _smtp(add_provider, "a")
    suppression_add(account=account, address="gone@example.org")
    webhook_endpoint_create(account=account, url="https://hooks.example.com/in")

    def unit():
        with accountcache.pinned(account.pk):
            assert [c.name for c in failover_order(account=account)] == ["a"]
            assert suppressed_among(account, ["Gone@example.org", "ok@example.org"]) == {
                "Gone@example.org"
            }
            assert len(subscribed_endpoints(account.pk)) == 1

    assert _queries(unit) == 3
    assert _queries(unit) == 0
    # Unpinned, every read is the database's, as before.
    assert _queries(lambda: failover_order(account=account)) == 1


@pytest.mark.parametrize("where", ["here", "elsewhere"])
def test_a_provider_change_is_seen_by_the_next_unit(account, add_provider, where):
    first, second = _smtp(add_provider, "a", priority=10), _smtp(add_provider, "b", priority=20)
    assert _names(account) == ["a", "b"]
    provider_config_update(config=first, enabled=False)
    if where == "elsewhere":
        _elsewhere()
    assert _names(account) == ["b"]
    provider_config_update(config=first, enabled=True)
    provider_move(config=second, direction="first")  # a bulk update: no signal
    if where == "elsewhere":
        _elsewhere()
    assert _names(account) == ["b", "a"]
    ProviderConfig.objects.get(pk=second.pk).delete()
    if where == "elsewhere":
        _elsewhere()
    assert _names(account) == ["a"]


def test_a_suppression_change_is_seen_by_the_next_unit(account):
    def check(address: str) -> bool:
        with accountcache.pinned(account.pk):
            return bool(suppressed_among(account, [address]))

    assert not check("x@example.org")  # remembered as absent
    suppression_add(account=account, address="x@example.org")  # as a bounce adds it
    _elsewhere()
    assert check("x@example.org")
    suppression_delete(account=account, address="x@example.org")
    _elsewhere()
    assert not check("x@example.org")
    suppressions_import(account=account, text="address\nx@example.org\n")  # bulk: no signal
    _elsewhere()
    assert check("x@example.org")


def test_an_endpoint_change_is_seen_by_the_next_unit(account):
    def count() -> int:
        with accountcache.pinned(account.pk):
            return len(subscribed_endpoints(account.pk))

    assert count() == 0
    webhook_endpoint_create(account=account, url="https://hooks.example.com/in")
    _elsewhere()
    assert count() == 1


def test_a_suppression_lapses_on_time_without_a_write(account, monkeypatch):
    expires = timezone.now() + timedelta(hours=1)
    suppression_add(account=account, address="soft@example.org", expires_at=expires)
    with accountcache.pinned(account.pk):
        assert suppressed_among(account, ["soft@example.org"])
    later = expires + timedelta(seconds=1)
    monkeypatch.setattr(accountcache.timezone, "now", lambda: later)
    with accountcache.pinned(account.pk):
        assert _queries(lambda: suppressed_among(account, ["soft@example.org"])) == 0
        assert not suppressed_among(account, ["soft@example.org"])


def test_a_lost_stamp_is_stale_at_most_the_bound(account, add_provider, monkeypatch):
    """Redis answers, but the change's stamp never reached it (written while Redis was away):
    an entry is still read again after ACCOUNT_CACHE_SECONDS."""
    config = _smtp(add_provider, "a")
    clock = [1000.0]
    monkeypatch.setattr(accountcache.time, "monotonic", lambda: clock[0])
    assert _names(account) == ["a"]
    ProviderConfig.objects.filter(pk=config.pk).update(enabled=False)  # no signal, no stamp
    clock[0] += accountcache.ACCOUNT_CACHE_SECONDS - 0.01
    assert _names(account) == ["a"]  # within the documented bound
    clock[0] += 0.01
    assert _names(account) == []


def test_without_redis_every_read_is_the_databases(account, add_provider, closed_port):
    _smtp(add_provider, "a")
    unreachable = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    with override_settings(CACHES=unreachable):
        for _ in range(2):
            assert _queries(lambda: _names(account)) == 1


@override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})
def test_the_local_memory_cache_keeps_nothing(account, add_provider):
    """Other processes can't see a stamp in one process's memory: nothing is kept."""
    _smtp(add_provider, "a")
    for _ in range(2):
        assert _queries(lambda: _names(account)) == 1


def test_memory_is_bounded(account, monkeypatch):
    monkeypatch.setattr(accountcache, "_MAX_ENTRIES", 10)
    with accountcache.pinned(account.pk):
        suppressed_among(account, [f"a{n}@example.org" for n in range(50)])
    assert len(accountcache._suppressions._items) == 10


def test_an_api_send_reads_the_stamps_in_its_rate_limit_round_trip(
    api, account, smtp_sink, round_trips
):
    """No round trip of its own: the stamps ride with the rate limit's count, and the send's
    account reads come from memory from the second send on."""
    from harness.factories import make_smtp_provider

    make_smtp_provider(account, smtp_sink.port)
    body = {"from": "a@example.com", "to": "b@example.org", "subject": "Hi", "text": "Hello."}
    assert api.post("/api/v1/emails", body).status_code == 201
    round_trips.clear()
    with CaptureQueriesContext(connection) as queries:
        assert api.post("/api/v1/emails", body).status_code == 201
    with_stamps = [sent for sent in round_trips if b"account:config:" in _joined(sent)]
    assert len(with_stamps) == 1
    assert b"rl:api:" in _joined(with_stamps[0])  # the rate limit's round trip
    tables = " ".join(q["sql"] for q in queries)
    for table in ("mailer_providerconfig", "mailer_suppression", "mailer_webhookendpoint"):
        assert table not in tables


def _joined(packed) -> bytes:
    return packed if isinstance(packed, bytes) else b"".join(bytes(part) for part in packed)


def test_an_accounts_suppressions_are_still_deleted_in_one_statement(account):
    """No delete receiver on suppressions: Django can delete an account's many entries at once
    (a receiver would make it load and delete them row by row)."""
    suppressions_import(
        account=account, text="address\n" + "".join(f"a{n}@example.org\n" for n in range(300))
    )
    with CaptureQueriesContext(connection) as queries:
        account.delete()
    deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "mailer_suppression"')]
    assert len(deletes) == 1, deletes
