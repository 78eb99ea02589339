"""Built providers, one live instance per provider config per process, and configs as candidates.

The pool reads only what the config object passed in carries (`pk`, `kind`, `settings`,
`version`, `decrypted_secrets()`, `breaker_key`, `label`): it never queries anything.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any, Protocol

from django.conf import settings
from django.core.mail import EmailMessage

from mailer.providers import build_provider, spec_for
from mailer.providers.base import Provider
from mailer.providers.net import Deadline

from .failover import Candidate
from .pacing import Limits


class PoolableConfig(Protocol):
    """What the pool needs from a provider config (mailer.models.ProviderConfig is one)."""

    pk: Any
    kind: str
    settings: Mapping[str, Any]

    @property
    def version(self) -> Hashable: ...  # changes whenever the config does

    @property
    def breaker_key(self) -> str: ...

    @property
    def label(self) -> str: ...

    def decrypted_secrets(self) -> dict[str, Any]: ...


class ProviderPool:
    """Built providers keyed by config id, rebuilt when the config's version changes. Bounded
    (least recently used first out); a provider that leaves the pool is closed."""

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[Any, tuple[Hashable, Provider]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, config: PoolableConfig) -> Provider:
        version = config.version
        with self._lock:
            item = self._items.get(config.pk)
            if item is not None and item[0] == version:
                self._items.move_to_end(config.pk)
                return item[1]
        provider = build_provider(
            config.kind,
            settings=dict(config.settings),
            secrets=config.decrypted_secrets(),
            timeout=settings.PROVIDER_TIMEOUT,
            connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
            attempt_deadline=settings.ATTEMPT_DEADLINE_SECONDS,
        )
        with self._lock:
            old = self._items.pop(config.pk, None)
            self._items[config.pk] = (version, provider)
            evicted = self._items.popitem(last=False)[1] if len(self._items) > self._size else None
        for stale in (old, evicted):
            if stale is not None and stale[1] is not provider:
                stale[1].close()
        return provider

    def clear(self) -> None:
        with self._lock:
            items, self._items = list(self._items.values()), OrderedDict()
        for _, provider in items:
            provider.close()


provider_pool = ProviderPool()


class _PooledProvider:
    """Fetches the pooled provider only when an attempt starts: a skipped provider costs no
    decryption, and a config that can't even be built (bad endpoint URL) becomes a failed
    attempt, as any other provider failure."""

    def __init__(self, config: PoolableConfig) -> None:
        self.config = config
        self.attempt_deadline = settings.ATTEMPT_DEADLINE_SECONDS
        self.counts_recipients = spec_for(config.kind).counts_recipients

    def send(self, message: EmailMessage, *, deadline: Deadline | None = None) -> str:
        return provider_pool.get(self.config).send(message, deadline=deadline)


def candidate_for(config: PoolableConfig) -> Candidate:
    """A provider config as a failover candidate (its circuit is keyed by the config id);
    `ref` is the config itself."""
    limits = Limits(getattr(config, "max_per_second", None), getattr(config, "max_per_day", None))
    return Candidate(
        key=config.breaker_key,
        label=config.label,
        provider=_PooledProvider(config),
        ref=config,
        limits=limits,
    )
