"""Writes for provider configs, validated (mailer.provider_settings), a test send, the order."""

from __future__ import annotations

import logging

from django.conf import settings as django_settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction

from mailer import accountcache, crypto, listcache
from mailer.delivery.breaker import breaker
from mailer.delivery.failover import Attempt, deliver
from mailer.delivery.pool import candidate_for
from mailer.models import ProviderConfig
from mailer.provider_settings import (
    LIMIT_MOST,
    ProviderNameTaken,
    ProviderSettingsError,
    clean_limit,
    clean_name,
    clean_priority,
    clean_provider,
)
from mailer.providers.net import Deadline

logger = logging.getLogger("mailer.services")


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
    trusted: bool = False,
    max_per_second: int | None = None,
    max_per_day: int | None = None,
) -> ProviderConfig:
    """Add a provider to the account, after the end of its failover order unless `priority`
    says otherwise, paced to `max_per_second` and `max_per_day` when given. Raises
    ProviderSettingsError naming each bad field (ProviderNameTaken when the only problem is a
    name the account already uses). `trusted` is for an operator seeding
    providers on loopback (setup_demo, tests, the bench): it skips the private-address rule for
    hosts, nothing else."""
    errors: dict[str, list[str]] = {}
    common = _clean_common({"name": name, "priority": priority}, errors)
    common |= _clean_limits({"max_per_second": max_per_second, "max_per_day": max_per_day}, errors)
    if "name" not in common and "name" not in errors:
        errors["name"] = ["is required."]
    clean_settings, clean_secrets = {}, {}
    try:
        clean_settings, clean_secrets = clean_provider(
            kind, settings or {}, secrets or {}, trusted=trusted
        )
    except ProviderSettingsError as exc:
        errors.update(exc.errors)
    _raise_if(errors, account.pk, common.get("name"))
    if common.get("priority") is None:
        last = ProviderConfig.objects.filter(account=account).order_by("-priority").first()
        common["priority"] = (last.priority + 10) if last else 10
    try:
        with transaction.atomic():
            config = ProviderConfig.objects.create(
                account=account,
                kind=kind,
                settings=clean_settings,
                enabled=bool(enabled),
                secrets_encrypted=crypto.encrypt_json(clean_secrets),
                secret_names=sorted(clean_secrets),
                **common,
            )
    except IntegrityError:
        raise _name_taken(common["name"]) from None
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
    trusted: bool = False,
    limits: dict[str, int | None] | None = None,
) -> ProviderConfig:
    """Change the fields given (None leaves one as it is): `settings` replaces all settings of
    the kind (defaults fill the rest); `secrets` merge into the stored ones, and "" or None
    removes one; `limits` sets the pacing limits it names (max_per_second, max_per_day; None
    removes one). The kind can't change. Validated as provider_config_create is. Closes the
    provider's circuit."""
    errors: dict[str, list[str]] = {}
    common = _clean_common({"name": name, "priority": priority}, errors)
    common |= _clean_limits(limits or {}, errors)
    clean_settings, clean_secrets = None, {}
    try:
        clean_settings, clean_secrets = clean_provider(
            config.kind,
            settings,
            secrets,
            partial=True,
            existing_secret_names=config.secret_names,
            trusted=trusted,
        )
    except ProviderSettingsError as exc:
        errors.update(exc.errors)
    _raise_if(errors, config.account_id, common.get("name"), exclude=config.pk)
    for field, value in common.items():
        setattr(config, field, value)
    if clean_settings is not None:
        config.settings = clean_settings
    if enabled is not None:
        config.enabled = bool(enabled)
    if secrets is not None:
        merged = config.decrypted_secrets()
        for key, value in clean_secrets.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        config.secrets_encrypted = crypto.encrypt_json(merged)
        config.secret_names = sorted(merged)
    try:
        with transaction.atomic():
            config.save()
    except IntegrityError:
        raise _name_taken(config.name) from None
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


def _clean_limits(limits: dict, errors: dict[str, list[str]]) -> dict:
    clean = {}
    for name, value in limits.items():
        if name not in LIMIT_MOST:
            raise TypeError(f"no pacing limit {name!r}")
        try:
            clean[name] = clean_limit(name, value)
        except ValueError as exc:
            errors[name] = [str(exc)]
    return clean


def _name_taken(name: str) -> ProviderNameTaken:
    return ProviderNameTaken(
        {"name": [f"a provider named {name!r} already exists in this account."]}
    )


def _raise_if(
    errors: dict[str, list[str]], account_id: int, name: str | None, *, exclude: int | None = None
) -> None:
    """Raise for the errors found, adding a "name" error if another provider of the account
    has this name (ProviderNameTaken when that is the only one)."""
    if name is not None and "name" not in errors:
        others = ProviderConfig.objects.filter(account_id=account_id, name=name)
        if others.exclude(pk=exclude).exists():
            if not errors:
                raise _name_taken(name)
            errors.update(_name_taken(name).errors)
    if errors:
        raise ProviderSettingsError(errors)


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
        budget=Deadline(django_settings.SEND_BUDGET_SECONDS),
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
        accountcache.changed(config.account_id, accountcache.CONFIG)  # bulk: no signals
    return order
