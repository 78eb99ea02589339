"""Writes: sending email, API tokens and provider configs. Views, API and tasks call these."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.mail import make_msgid
from django.core.mail.utils import DNS_NAME
from django.db import transaction
from django.utils import timezone

from . import crypto
from .compose import build_message
from .delivery.breaker import CircuitBreaker
from .delivery.failover import Attempt, Candidate, Delivery, deliver
from .models import ApiToken, DeliveryAttempt, Email, EmailStatus, ProviderConfig
from .providers import build_provider
from .providers.base import Provider
from .validation import OutgoingEmail, validate

logger = logging.getLogger("mailer.services")

TOKEN_PREFIX = "es_"  # noqa: S105 (a marker that makes leaked tokens easy to scan for)


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


# API tokens ---------------------------------------------------------------------------------


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(*, account, name: str = "default") -> tuple[ApiToken, str]:
    """Create a token; return it with the raw value, which is never stored and shown once."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        account=account, name=name, prefix=raw[:10], digest=_digest(raw)
    )
    return token, raw


def token_revoke(*, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


def token_authenticate(*, raw: str) -> ApiToken | None:
    """The active token matching raw, with its account; records when it was last used."""
    if not raw or len(raw) > 200:
        return None
    token = (
        ApiToken.objects.select_related("account")
        .filter(digest=_digest(raw), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.account.is_active:
        return None
    now = timezone.now()
    # Write at most once a minute per token: authentication is on every request's hot path.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


# Sending ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    email: Email
    delivery: Delivery


def failover_order(*, account, requested: ProviderConfig | None = None) -> list[ProviderConfig]:
    """The account's enabled providers: the requested one first, then by priority."""
    configs = list(ProviderConfig.objects.filter(account=account, enabled=True))
    if requested is not None:
        configs = [requested] + [c for c in configs if c.pk != requested.pk]
    return configs


def email_create(
    *,
    account,
    outgoing: OutgoingEmail,
    requested_provider: ProviderConfig | None = None,
    idempotency_key: str = "",
    status: str = EmailStatus.SENDING,
) -> Email:
    """Validate and store an email; nothing is stored when validation fails."""
    validate(outgoing)
    return Email.objects.create(
        account=account,
        from_email=outgoing.from_email,
        to=list(outgoing.to),
        cc=list(outgoing.cc),
        bcc=list(outgoing.bcc),
        reply_to=list(outgoing.reply_to),
        subject=outgoing.subject,
        text=outgoing.text,
        html=outgoing.html,
        headers=dict(outgoing.headers),
        metadata=dict(outgoing.metadata),
        attachments=[
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "content": base64.b64encode(a.content).decode(),
            }
            for a in outgoing.attachments
        ],
        message_id=make_msgid(domain=DNS_NAME.get_fqdn()),
        requested_provider=requested_provider,
        idempotency_key=idempotency_key,
        status=status,
    )


def _record_attempt(email: Email, attempt: Attempt) -> None:
    config: ProviderConfig = attempt.candidate.ref
    DeliveryAttempt.objects.create(
        email=email,
        provider=config,
        provider_kind=config.kind,
        provider_name=config.name,
        outcome=attempt.outcome,
        error_code=attempt.code[:64],
        error_message=attempt.message,
        provider_message_id=attempt.message_id[:255],
        started_at=attempt.started_at,
        duration_ms=round(attempt.duration * 1000),
    )


def email_deliver(*, email: Email) -> Delivery:
    """Run failover for a stored email, recording each attempt as it ends, then the outcome.

    No transaction is held while providers are called: a slow provider must not lock the table.
    """
    configs = failover_order(
        account=email.account,
        requested=email.requested_provider
        if email.requested_provider and email.requested_provider.enabled
        else None,
    )
    candidates = []
    for config in configs:
        candidates.append(
            Candidate(
                key=config.breaker_key,
                label=config.label,
                provider=_LazyProvider(config),
                ref=config,
            )
        )
    delivery = deliver(
        build_message(email),
        candidates,
        breaker=breaker(),
        on_attempt=lambda attempt: _record_attempt(email, attempt),
    )
    accepted = delivery.accepted
    email.possible_duplicate = email.possible_duplicate or delivery.possible_duplicate
    if accepted is not None:
        config = accepted.candidate.ref
        email.status = EmailStatus.SENT
        email.sent_via = config
        email.sent_via_kind = config.kind
        email.provider_message_id = accepted.message_id[:255]
        email.failure_reason = ""
        email.sent_at = timezone.now()
    else:
        email.status = EmailStatus.FAILED
        email.failure_reason = delivery.failure_reason
        logger.warning("email %s failed: %s", email.pk, email.failure_reason)
    email.save(
        update_fields=[
            "status",
            "sent_via",
            "sent_via_kind",
            "provider_message_id",
            "failure_reason",
            "sent_at",
            "possible_duplicate",
            "updated_at",
        ]
    )
    return delivery


def email_send(
    *,
    account,
    outgoing: OutgoingEmail,
    requested_provider: ProviderConfig | None = None,
    idempotency_key: str = "",
) -> SendResult:
    """Validate, store and deliver one email synchronously."""
    with transaction.atomic():
        email = email_create(
            account=account,
            outgoing=outgoing,
            requested_provider=requested_provider,
            idempotency_key=idempotency_key,
        )
    delivery = email_deliver(email=email)
    return SendResult(email=email, delivery=delivery)


class _LazyProvider:
    """Builds (or fetches) the pooled provider only when the breaker lets an attempt through,
    so a skipped provider costs no decryption and a broken config fails as an attempt."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    def send(self, message) -> str:
        return provider_pool.get(self.config).send(message)
