"""Provider config writes are always validated; the pool builds providers from configs, no DB."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from mailer.delivery.pool import ProviderPool, candidate_for
from mailer.provider_settings import ProviderNameTaken, ProviderSettingsError
from mailer.providers.smtp.transport import SmtpProvider
from mailer.services import provider_config_create, provider_config_update

LOOPBACK = {"host": "127.0.0.1", "port": 2525, "security": "none"}


@pytest.mark.django_db
def test_create_validates_and_fills_defaults(account):
    config = provider_config_create(
        account=account, kind="smtp", name=" relay ", settings={"host": "SMTP.Example.com"}
    )
    assert config.name == "relay"
    assert config.settings == {"host": "smtp.example.com", "port": 587, "security": "starttls"}
    assert config.priority == 10
    with pytest.raises(ProviderSettingsError) as caught:
        provider_config_create(
            account=account, kind="smtp", name="bad", settings={"host": "x", "port": 0}
        )
    assert set(caught.value.errors) == {"settings.port"}


@pytest.mark.django_db
def test_a_taken_name_is_its_own_error_only_when_it_is_the_only_problem(account):
    provider_config_create(account=account, kind="smtp", name="relay", settings=LOOPBACK)
    with pytest.raises(ProviderNameTaken):
        provider_config_create(account=account, kind="smtp", name="relay", settings=LOOPBACK)
    with pytest.raises(ProviderSettingsError) as caught:
        provider_config_create(account=account, kind="smtp", name="relay", settings={})
    assert type(caught.value) is ProviderSettingsError
    assert set(caught.value.errors) == {"name", "settings.host"}


@pytest.mark.django_db
def test_trusted_skips_only_the_private_address_rule(account, settings):
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = False
    with pytest.raises(ProviderSettingsError) as caught:
        provider_config_create(account=account, kind="smtp", name="sink", settings=LOOPBACK)
    assert "loopback" in caught.value.errors["settings.host"][0]
    config = provider_config_create(
        account=account, kind="smtp", name="sink", settings=LOOPBACK, trusted=True
    )
    with pytest.raises(ProviderSettingsError) as caught:
        provider_config_create(
            account=account, kind="smtp", name="other", settings={**LOOPBACK, "port": 0},
            secrets={"username": "u"}, trusted=True,
        )  # fmt: skip
    assert set(caught.value.errors) == {"settings.port", "secrets.password"}
    with pytest.raises(ProviderSettingsError):
        provider_config_update(config=config, settings={"host": "10.0.0.1"})
    updated = provider_config_update(config=config, settings={"host": "10.0.0.1"}, trusted=True)
    assert updated.settings["host"] == "10.0.0.1"


@pytest.mark.django_db
def test_update_validates_and_merges_secrets(account):
    config = provider_config_create(
        account=account, kind="sendgrid", name="sg", secrets={"api_key": "SG.one"}
    )
    with pytest.raises(ProviderSettingsError) as caught:
        provider_config_update(config=config, secrets={"api_key": ""}, priority=-1)
    assert set(caught.value.errors) == {"secrets.api_key", "priority"}
    config = provider_config_update(config=config, secrets={"api_key": "SG.two"}, enabled=False)
    assert config.decrypted_secrets() == {"api_key": "SG.two"} and not config.enabled


# The pool: only what the config object carries ---------------------------------------------


@dataclass
class PlainConfig:
    """Not a model: the pool must not need one."""

    pk: int
    version: Any
    kind: str = "smtp"
    settings: dict = field(default_factory=lambda: dict(LOOPBACK))
    secrets: dict = field(default_factory=dict)
    decrypted: int = 0
    breaker_key: str = "provider:plain"
    label: str = "smtp 'plain'"

    def decrypted_secrets(self) -> dict:
        self.decrypted += 1
        return dict(self.secrets)


def test_the_pool_builds_once_per_version_and_closes_what_it_replaces():
    pool = ProviderPool(size=2)
    config = PlainConfig(pk=1, version=1, secrets={"username": "u", "password": "p"})
    first = pool.get(config)
    assert isinstance(first, SmtpProvider) and (first.port, first.username) == (2525, "u")
    assert pool.get(config) is first and config.decrypted == 1
    closed = []
    first.close = lambda: closed.append(first)
    config.version = 2
    assert pool.get(config) is not first and closed == [first]
    pool.get(PlainConfig(pk=2, version=1))
    pool.get(PlainConfig(pk=3, version=1))  # over the size: the least recently used goes
    assert pool.get(config).port == 2525 and config.decrypted == 3
    pool.clear()


def test_a_candidate_decrypts_nothing_until_its_attempt_starts():
    config = PlainConfig(pk=4, version=1)
    candidate = candidate_for(config)
    assert (candidate.key, candidate.label, candidate.ref) == (
        config.breaker_key,
        config.label,
        config,
    )
    assert config.decrypted == 0
