"""Shared fixtures: accounts, provider configs, a clean cache, and the provider stand-ins."""

from __future__ import annotations

import pytest
import redis
from django.core.cache import cache

from harness.api import ApiClient
from harness.factories import make_account, make_provider, make_token, outgoing
from mailer import accountcache
from mailer.delivery.pool import provider_pool
from mailer.services.tokens import token_cache_clear

__all__ = ["outgoing"]  # tests import it from here

pytest_plugins = [
    "tests.fakes.smtp_fixtures",
    "tests.fakes.sendgrid",
    "tests.fakes.ses",
    "tests.fakes.mailgun",
    "tests.fakes.mandrill",
    "tests.fakes.postmark",
    "tests.fakes.resend",
    "tests.browser",
]


@pytest.fixture(autouse=True)
def _clean_cache_and_pool():
    """Circuit state, pooled provider connections, remembered tokens and account reads must
    not leak between tests."""
    cache.clear()
    provider_pool.clear()
    token_cache_clear()
    accountcache.clear()
    yield
    accountcache.clear()
    token_cache_clear()
    provider_pool.clear()
    cache.clear()


@pytest.fixture
def account(db):
    return make_account("alice", password="pw-alice-123", email="")


@pytest.fixture
def other_account(db):
    return make_account("bob", password="pw-bob-123", email="")


@pytest.fixture
def add_provider(account):
    """add_provider(kind, name=..., settings=..., secrets=..., owner=...) -> ProviderConfig"""

    def make(kind: str, *, owner=None, **options):
        return make_provider(owner or account, kind, **options)

    return make


@pytest.fixture(autouse=True, scope="session")
def _quiet_smtp_server_logs():
    import logging

    logging.getLogger("mail.log").setLevel(logging.WARNING)


@pytest.fixture
def api(client, account, db) -> ApiClient:
    """The API in process, authenticated as `account`."""
    return ApiClient.django(client, make_token(account))


@pytest.fixture
def round_trips(monkeypatch):
    """Counts the writes redis-py sends (a command, or a whole pipeline, is one)."""
    sent: list[bytes] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, *args, **kwargs):
        sent.append(command)
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return sent
