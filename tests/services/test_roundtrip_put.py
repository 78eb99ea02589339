"""A list page read from the database is stored without waiting for Redis' reply
(mailer.roundtrip.put: CLIENT REPLY SKIP, then the SET), against a real redis-server: the page is
there for the next read, the pooled connection is left with no reply owed, a server that refuses
CLIENT REPLY gets a plain SET, and a hung server costs the store no wait."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.core.cache import cache

from harness.redis import RedisServer
from mailer import cacheguard, listcache, roundtrip, selectors
from mailer.models import Email


@pytest.fixture
def server_cache(settings, tmp_path) -> Iterator:
    """The default cache on a private redis-server started with the options given."""
    started: list[RedisServer] = []

    def start(*options: str) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(started)}", options=options).start()
        started.append(server)
        settings.CACHES = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": server.url,
                "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 2},
                "KEY_PREFIX": "put",
            }
        }
        cacheguard._outages.clear()
        return server

    yield start
    cacheguard._outages.clear()
    for server in started:
        server.stop()


def test_a_stored_page_is_read_back_and_the_connection_owes_no_reply(round_trips):
    client = roundtrip.codec().get_client(write=True)
    for n in range(50):  # one pooled connection: a reply left unread would answer the next GET
        round_trips.clear()
        assert listcache.store_page("emails:list:put-test", n, {"count": n, "results": b"[]"})
        sent = b"".join(round_trips[-1])  # the first also asks whether CLIENT REPLY is taken
        assert b"REPLY" in sent and b"SKIP" in sent and b"emails:list:put-test" in sent
        assert cache.get("emails:list:put-test") == (n, {"count": n, "results": b"[]"})
        assert client.ping() is True
    assert 0 < cache.ttl("emails:list:put-test") <= listcache.page_seconds()


def test_a_server_refusing_client_reply_gets_a_plain_set(server_cache):
    server = server_cache("--rename-command", "CLIENT", "")
    assert roundtrip.put("storing a test value", "plain", b"value", 60)
    assert server.client.get("put:1:plain") == b"value"
    assert roundtrip.codec().get_client(write=True).connection_pool._mailer_skips_replies is False
    for n in range(5):
        assert roundtrip.put("storing a test value", "plain", str(n).encode(), 60)
        assert server.client.get("put:1:plain") == str(n).encode()


def test_a_page_missed_while_redis_hangs_is_served_without_waiting_on_the_store(
    server_cache, account
):
    server = server_cache()
    Email.objects.create(account=account, from_email="a@b.c", to=["d@e.f"], status="sent")
    assert selectors.email_list(account_id=account.pk)["count"] == 1  # pool and probe warmed
    listcache.bump(account.pk)
    version = listcache.version(account.pk)
    with server.hung():
        started = time.monotonic()
        assert listcache.store_page("emails:list:hung", version, {"count": 1})
        assert time.monotonic() - started < 1  # a socket write, not the 2 s read timeout
    assert roundtrip.codec().get_client(write=True).ping() is True
