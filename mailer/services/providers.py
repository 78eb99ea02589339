"""Writes for provider configs, and the per-process pool of built providers and the breaker."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction

from mailer import cacheguard, crypto, listcache
from mailer.delivery.breaker import CircuitBreaker
from mailer.delivery.failover import Attempt, Candidate, deliver
from mailer.models import ProviderConfig
from mailer.provider_settings import (
    ProviderSettingsError,
    clean_name,
    clean_priority,
    clean_provider,
)
from mailer.providers import build_provider
from mailer.providers.base import Provider
from mailer.providers.net import Deadline

logger = logging.getLogger("mailer.services")

# Circuit breaker ------------------------------------------------------------------------------


def breaker() -> CircuitBreaker:
    """The breaker shared by every process through the default cache."""
    return CircuitBreaker(
        cache,
        threshold=settings.BREAKER_THRESHOLD,
        reset_seconds=settings.BREAKER_RESET_SECONDS,
        probe_seconds=settings.PROVIDER_TIMEOUT * 3,
        guard=cacheguard.call,
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
            attempt_deadline=settings.ATTEMPT_DEADLINE_SECONDS,
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
    config = ProviderConfig.objects.create(
        account=account,
        kind=kind,
        name=name,
        settings=settings or {},
        priority=priority,
        enabled=enabled,
        secrets_encrypted=crypto.encrypt_json(clean_secrets),
        secret_names=sorted(clean_secrets),
    )
    _bump_lists(account.pk)
    return config


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
    _bump_lists(config.account_id)
    return config


def provider_config_delete(*, config: ProviderConfig) -> None:
    breaker().reset(config.breaker_key)
    _bump_lists(config.account_id)
    config.delete()


def _bump_lists(account_id: int) -> None:
    # Email lists show provider names (sent_via): a provider change makes cached pages stale.
    # After commit, so a reader can't cache the old rows again under the new version.
    transaction.on_commit(lambda: listcache.bump(account_id))


# Provider configs from users: validated (mailer.provider_settings) --------------------------


def _clean_common(fields: dict, errors: dict[str, list[str]]) -> dict:
    clean = {}
    for name, cleaner in (("name", clean_name), ("priority", clean_priority)):
        if fields.get(name) is None:
            continue
        try:
            clean[name] = cleaner(fields[name])
        except ValueError as exc:
            errors[name] = [str(exc)]
    return clean


def _name_taken(account, name: str | None, errors: dict, *, exclude: int | None = None) -> bool:
    """Add a "name" error if another provider of the account has this name."""
    if name is None or "name" in errors:
        return False
    if not ProviderConfig.objects.filter(account=account, name=name).exclude(pk=exclude).exists():
        return False
    errors["name"] = [f"a provider named {name!r} already exists in this account."]
    return True


def _raise_if(errors: dict[str, list[str]], *, name_taken: bool) -> None:
    if errors:
        raise ProviderSettingsError(errors, status=409 if name_taken and len(errors) == 1 else 422)


def _conflict(name: str) -> ProviderSettingsError:
    # The unique constraint caught what the check before could not: a concurrent request.
    return ProviderSettingsError(
        {"name": [f"a provider named {name!r} already exists in this account."]}, status=409
    )


def provider_config_add(
    *,
    account,
    kind: str,
    name: str,
    settings: dict | None = None,
    secrets: dict | None = None,
    priority: int | None = None,
    enabled: bool = True,
) -> ProviderConfig:
    """Create a provider config from user input; raise ProviderSettingsError naming each bad
    field (status 422, or 409 for a name the account already uses)."""
    errors: dict[str, list[str]] = {}
    common = _clean_common({"name": name, "priority": priority}, errors)
    if "name" not in common and "name" not in errors:
        errors["name"] = ["is required."]
    clean_settings, clean_secrets = {}, {}
    try:
        clean_settings, clean_secrets = clean_provider(kind, settings or {}, secrets or {})
    except ProviderSettingsError as exc:
        errors.update(exc.errors)
    taken = _name_taken(account, common.get("name"), errors)
    _raise_if(errors, name_taken=taken)
    try:
        with transaction.atomic():
            return provider_config_create(
                account=account,
                kind=kind,
                settings=clean_settings,
                secrets=clean_secrets,
                enabled=bool(enabled),
                **common,
            )
    except IntegrityError:
        raise _conflict(common["name"]) from None


def provider_config_change(
    *,
    config: ProviderConfig,
    kind: str | None = None,
    name: str | None = None,
    settings: dict | None = None,
    secrets: dict | None = None,
    priority: int | None = None,
    enabled: bool | None = None,
) -> ProviderConfig:
    """Update from user input: None leaves a field as it is; `settings` replaces all settings;
    `secrets` merge ("" or None removes one). The kind can't change. Resets the circuit."""
    errors: dict[str, list[str]] = {}
    if kind is not None and kind != config.kind:
        errors["kind"] = [
            f"can't change from {config.kind!r}; create a new provider of kind {kind!r} instead."
        ]
    common = _clean_common({"name": name, "priority": priority}, errors)
    clean_settings, clean_secrets = None, None
    try:
        clean_settings, clean_secrets = clean_provider(
            config.kind,
            settings,
            secrets,
            partial=True,
            existing_secret_names=config.secret_names,
        )
    except ProviderSettingsError as exc:
        errors.update(exc.errors)
    taken = _name_taken(config.account_id, common.get("name"), errors, exclude=config.pk)
    _raise_if(errors, name_taken=taken)
    try:
        with transaction.atomic():
            return provider_config_update(
                config=config,
                settings=clean_settings,
                secrets=clean_secrets if secrets is not None else None,
                enabled=enabled,
                **common,
            )
    except IntegrityError:
        raise _conflict(common["name"]) from None


class _PooledProvider:
    """Fetches the pooled provider only when an attempt starts: a skipped provider costs no
    decryption, and a config that can't even be built (bad endpoint URL) becomes a failed
    attempt, as any other provider failure."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.attempt_deadline = settings.ATTEMPT_DEADLINE_SECONDS

    def send(self, message: EmailMessage, *, deadline=None) -> str:
        return provider_pool.get(self.config).send(message, deadline=deadline)


def candidate_for(config: ProviderConfig) -> Candidate:
    """A provider config as a failover candidate (its circuit is keyed by the config id)."""
    return Candidate(
        key=config.breaker_key, label=config.label, provider=_PooledProvider(config), ref=config
    )


def provider_test_send(*, config: ProviderConfig, to: str, from_email: str) -> Attempt:
    """Send a short test message through this provider only (no failover) and return the attempt.

    Same path as real delivery: pooled provider, error classification and the circuit breaker
    (a success closes the circuit, a failure counts). An open circuit does not stop the test:
    with one candidate, deliver() tries anyway. Nothing is stored: it is a connectivity check,
    not an email of the account's history.
    """
    message = EmailMessage(
        subject=f"emailservice test message via {config.label}",
        body=(
            f"This is a test message sent through the provider {config.label} "
            f"(id {config.pk}) to check that it can deliver.\n"
        ),
        from_email=from_email,
        to=[to],
    )
    delivery = deliver(
        message,
        [candidate_for(config)],
        breaker=breaker(),
        budget=Deadline(settings.SEND_BUDGET_SECONDS),
    )
    attempt = delivery.attempts[-1]
    logger.info(
        "test message via provider %s of account %s: %s %s",
        config.pk,
        config.account_id,
        attempt.outcome,
        attempt.code,
    )
    return attempt


# Failover order ------------------------------------------------------------------------------

MOVES = ("up", "down", "first")


def provider_move(*, config: ProviderConfig, direction: str) -> list[ProviderConfig]:
    """Move a provider one place up or down the account's failover order, or to the front
    ("first" makes it the default when it is enabled). Returns the account's new order.

    The account's rows are locked and renumbered 10, 20, 30… in one transaction: equal
    priorities (the API allows them) then still move by exactly one place, and two concurrent
    moves can't interleave into a duplicate order.
    """
    if direction not in MOVES:
        raise ValueError(f"direction must be one of {', '.join(MOVES)}, not {direction!r}")
    with transaction.atomic():
        order = list(
            ProviderConfig.objects.select_for_update()
            .filter(account_id=config.account_id)
            .order_by("priority", "id")
        )
        index = next(i for i, c in enumerate(order) if c.pk == config.pk)
        target = {"up": index - 1, "down": index + 1, "first": 0}[direction]
        target = min(max(target, 0), len(order) - 1)
        order.insert(target, order.pop(index))
        changed = []
        for position, item in enumerate(order, start=1):
            if item.priority != position * 10:
                item.priority = position * 10
                changed.append(item)
        # bulk_update skips auto_now: the providers' settings did not change, so pooled
        # connections (keyed by updated_at) stay valid.
        ProviderConfig.objects.bulk_update(changed, ["priority"])
    return order
