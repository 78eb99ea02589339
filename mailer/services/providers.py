"""Writes for provider configs, and the per-process pool of built providers and the breaker."""

from __future__ import annotations

import threading
from collections import OrderedDict

from django.conf import settings
from django.core.cache import cache

from mailer import crypto
from mailer.delivery.breaker import CircuitBreaker
from mailer.models import ProviderConfig
from mailer.providers import build_provider
from mailer.providers.base import Provider

# Circuit breaker ------------------------------------------------------------------------------


def breaker() -> CircuitBreaker:
    """The breaker shared by every process through the default cache."""
    return CircuitBreaker(
        cache,
        threshold=settings.BREAKER_THRESHOLD,
        reset_seconds=settings.BREAKER_RESET_SECONDS,
        probe_seconds=settings.PROVIDER_TIMEOUT * 3,
    )


# Providers: one live instance per config per process -----------------------------------------


class _ProviderPool:
    """Built providers keyed by config id, rebuilt when the config changes. Bounded (LRU)."""

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[int, tuple[object, Provider]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, config: ProviderConfig) -> Provider:
        version = (config.updated_at, config.kind, config.secrets_encrypted)
        with self._lock:
            item = self._items.get(config.pk)
            if item is not None and item[0] == version:
                self._items.move_to_end(config.pk)
                return item[1]
        provider = build_provider(
            config.kind,
            settings=config.settings,
            secrets=crypto.decrypt_json(config.secrets_encrypted),
            timeout=settings.PROVIDER_TIMEOUT,
            connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
        )
        with self._lock:
            old = self._items.pop(config.pk, None)
            self._items[config.pk] = (version, provider)
            evicted = self._items.popitem(last=False) if len(self._items) > self._size else None
        for stale in (old, evicted):
            if stale is not None and stale[1] is not provider:
                stale[1].close()
        return provider

    def clear(self) -> None:
        with self._lock:
            items, self._items = list(self._items.values()), OrderedDict()
        for _, provider in items:
            provider.close()


provider_pool = _ProviderPool()


# Provider configs ---------------------------------------------------------------------------


def provider_config_create(
    *,
    account,
    kind: str,
    name: str,
    settings: dict | None = None,
    secrets: dict | None = None,
    priority: int | None = None,
    enabled: bool = True,
) -> ProviderConfig:
    if priority is None:
        last = ProviderConfig.objects.filter(account=account).order_by("-priority").first()
        priority = (last.priority + 10) if last else 10
    clean_secrets = {k: v for k, v in (secrets or {}).items() if v not in (None, "")}
    return ProviderConfig.objects.create(
        account=account,
        kind=kind,
        name=name,
        settings=settings or {},
        priority=priority,
        enabled=enabled,
        secrets_encrypted=crypto.encrypt_json(clean_secrets),
        secret_names=sorted(clean_secrets),
    )


def provider_config_update(
    *,
    config: ProviderConfig,
    name: str | None = None,
    settings: dict | None = None,
    secrets: dict | None = None,
    priority: int | None = None,
    enabled: bool | None = None,
) -> ProviderConfig:
    """Update the fields given. Secrets merge: a key set to "" or None is removed."""
    if name is not None:
        config.name = name
    if settings is not None:
        config.settings = settings
    if priority is not None:
        config.priority = priority
    if enabled is not None:
        config.enabled = enabled
    if secrets is not None:
        merged = crypto.decrypt_json(config.secrets_encrypted)
        for key, value in secrets.items():
            if value in (None, ""):
                merged.pop(key, None)
            else:
                merged[key] = value
        config.secrets_encrypted = crypto.encrypt_json(merged)
        config.secret_names = sorted(merged)
    config.save()
    breaker().reset(config.breaker_key)
    return config


def provider_config_delete(*, config: ProviderConfig) -> None:
    breaker().reset(config.breaker_key)
    config.delete()
