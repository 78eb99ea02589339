"""Shared fixtures: accounts, provider configs, a clean cache, and the provider stand-ins."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from mailer import services
from mailer.validation import OutgoingEmail

pytest_plugins = [
    "tests.fakes.smtp_fixtures",
    "tests.fakes.sendgrid",
    "tests.fakes.ses",
    "tests.browser",
]


@pytest.fixture(autouse=True)
def _clean_cache_and_pool():
    """Circuit state and pooled provider connections must not leak between tests."""
    cache.clear()
    services.provider_pool.clear()
    yield
    services.provider_pool.clear()
    cache.clear()


@pytest.fixture
def account(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw-alice-123")


@pytest.fixture
def other_account(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw-bob-123")


@pytest.fixture
def add_provider(account):
    """add_provider(kind, name=..., settings=..., secrets=..., account=...) -> ProviderConfig"""

    def make(
        kind: str,
        *,
        name: str | None = None,
        settings: dict | None = None,
        secrets: dict | None = None,
        owner=None,
        **extra,
    ):
        owner = owner or account
        count = owner.provider_configs.count()
        return services.provider_config_create(
            account=owner,
            kind=kind,
            name=name or f"{kind}-{count + 1}",
            settings=settings or {},
            secrets=secrets or {},
            **extra,
        )

    return make


def outgoing(**overrides) -> OutgoingEmail:
    """A valid email to send; override any field."""
    fields = {
        "from_email": "Sender <sender@example.com>",
        "to": ["rcpt@example.org"],
        "subject": "Hello",
        "text": "Hello there.",
    }
    fields.update(overrides)
    return OutgoingEmail(**fields)


@pytest.fixture(autouse=True, scope="session")
def _quiet_smtp_server_logs():
    import logging

    logging.getLogger("mail.log").setLevel(logging.WARNING)


class ApiClient:
    """The Django test client with an account's bearer token on every request."""

    def __init__(self, client, account) -> None:
        from mailer.services import token_create

        self.client = client
        self.account = account
        self.token, self.raw_token = token_create(account=account, name="tests")

    def _auth(self, headers: dict | None) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.raw_token}", **(headers or {})}

    def get(self, path: str, data: dict | None = None, headers: dict | None = None):
        return self.client.get(path, data or {}, **self._auth(headers))

    def post(self, path: str, payload=None, headers: dict | None = None):
        import json

        body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload or {})
        return self.client.post(path, body, content_type="application/json", **self._auth(headers))

    def patch(self, path: str, payload, headers: dict | None = None):
        import json

        return self.client.patch(
            path, json.dumps(payload), content_type="application/json", **self._auth(headers)
        )

    def delete(self, path: str, headers: dict | None = None):
        return self.client.delete(path, **self._auth(headers))


@pytest.fixture
def api(client, account, db) -> ApiClient:
    """An API client authenticated as `account`."""
    return ApiClient(client, account)
