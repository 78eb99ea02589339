"""Writes for webhook endpoints: create (its signing secret shown once), change, enable and
disable, rotate the secret, delete, send a message again; and where an endpoint URL may point."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from mailer import crypto
from mailer.errors import Conflict, InvalidInput
from mailer.models import WebhookEndpoint, WebhookMessage
from mailer.provider_settings import host_problem
from mailer.validation import control_character
from mailer.vocabulary import WebhookEventType, WebhookStatus

from .outbox import messages_enqueue

SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks marker, not a secret)
MAX_URL_CHARS = 2000
MAX_WEBHOOK_ENDPOINTS_PER_ACCOUNT = 10


class WebhookSettingsError(InvalidInput):
    """An endpoint can't be saved; `errors` names each bad field (url, event_types)."""


class WebhookLimitReached(Conflict):
    """The account has as many endpoints as it may have."""


class WebhookEndpointDisabled(Conflict):
    """A message can't be sent again while its endpoint is disabled."""


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes one: whsec_ + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def clean_url(value: Any) -> str:
    """The endpoint URL to store, or ValueError saying what is wrong with it: https (http only
    where private hosts are allowed, i.e. tests and local runs), no credentials, and a host the
    private-address rule allows (checked again at every connect)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a URL, like https://example.com/webhooks.")
    url = value.strip()
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"must be at most {MAX_URL_CHARS} characters.")
    if (problem := control_character(url)) or any(c.isspace() for c in url):
        raise ValueError(f"can't contain {problem or 'spaces'}.")
    parts = urlsplit(url)
    allowed = ("https", "http") if settings.ALLOW_PRIVATE_PROVIDER_HOSTS else ("https",)
    if parts.scheme.lower() not in allowed:
        raise ValueError("must be an https:// URL.")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "can't carry credentials (user:password@); authenticate with the signature."
        )
    if not parts.hostname:
        raise ValueError("has no host.")
    try:
        parts.port  # noqa: B018 (urlsplit checks the port only when asked)
    except ValueError:
        raise ValueError("has an invalid port.") from None
    if parts.fragment:
        raise ValueError("can't have a #fragment: it is never sent.")
    if problem := host_problem(parts.hostname):
        raise ValueError(problem)
    return url


def clean_event_types(value: Any) -> list[str]:
    """The event types to store (empty: every type), in their documented order; ValueError
    naming any unknown."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of event types.")
    unknown = [v for v in dict.fromkeys(value) if v not in WebhookEventType.values]
    if unknown:
        raise ValueError(
            f"unknown event type(s): {', '.join(unknown)}; "
            f"known: {', '.join(WebhookEventType.values)}."
        )
    return [v for v in WebhookEventType.values if v in value]


def _cleaned(**fields: Any) -> dict[str, Any]:
    """The given fields cleaned, or WebhookSettingsError naming every bad one."""
    cleaners = {"url": clean_url, "event_types": clean_event_types}
    clean, errors = {}, {}
    for name, value in fields.items():
        try:
            clean[name] = cleaners[name](value)
        except ValueError as exc:
            errors[name] = [str(exc)]
    if errors:
        raise WebhookSettingsError(errors)
    return clean


def webhook_endpoint_create(
    *, account, url: str, event_types: Iterable[str] = ()
) -> tuple[WebhookEndpoint, str]:
    """Add an endpoint; return it with its signing secret, which is shown this once.

    WebhookSettingsError names each bad field; WebhookLimitReached past
    MAX_WEBHOOK_ENDPOINTS_PER_ACCOUNT (the account's row is locked meanwhile, so two at once
    can't both take the last place)."""
    clean = _cleaned(url=url, event_types=list(event_types))
    secret = new_secret()
    with transaction.atomic():
        users = get_user_model().objects.select_for_update().filter(pk=account.pk)
        list(users.values_list("pk", flat=True))  # take the lock
        if WebhookEndpoint.objects.filter(account=account).count() >= (
            MAX_WEBHOOK_ENDPOINTS_PER_ACCOUNT
        ):
            raise WebhookLimitReached(
                f"This account already has {MAX_WEBHOOK_ENDPOINTS_PER_ACCOUNT} webhook "
                "endpoints, the most it may have; delete one it no longer uses first."
            )
        endpoint = WebhookEndpoint.objects.create(
            account=account,
            secret_encrypted=crypto.encrypt_json({"secret": secret}),
            **clean,
        )
    return endpoint, secret


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: Iterable[str] | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    """Change the fields given (None: unchanged). Disabling pauses its pending messages;
    enabling clears why it was disabled, forgets its failures and makes them due now."""
    given = {"url": url, "event_types": None if event_types is None else list(event_types)}
    for name, value in _cleaned(**{k: v for k, v in given.items() if v is not None}).items():
        setattr(endpoint, name, value)
    with transaction.atomic():
        if enabled is not None and bool(enabled) != endpoint.enabled:
            _set_enabled(endpoint, bool(enabled), reason="Disabled by the account.")
        endpoint.save()
    return endpoint


def _set_enabled(endpoint: WebhookEndpoint, enabled: bool, *, reason: str) -> None:
    pending = WebhookMessage.objects.filter(endpoint=endpoint, status=WebhookStatus.PENDING)
    endpoint.enabled = enabled
    if not enabled:
        endpoint.disabled_reason = reason
        pending.update(next_attempt_at=None, enqueued_at=None)  # paused: no sweep finds them
        return
    endpoint.disabled_reason, endpoint.failing_since = "", None
    paused = list(pending.filter(next_attempt_at=None).values_list("pk", flat=True))
    WebhookMessage.objects.filter(pk__in=paused).update(next_attempt_at=timezone.now())
    messages_enqueue(message_ids=paused)


def webhook_endpoint_rotate(*, endpoint: WebhookEndpoint) -> str:
    """Give the endpoint a new signing secret, shown this once; the old one stops signing now
    (every later try, retries included, is signed with the new one)."""
    secret = new_secret()
    endpoint.secret_encrypted = crypto.encrypt_json({"secret": secret})
    endpoint.save(update_fields=["secret_encrypted", "updated_at"])
    return secret


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove the endpoint and its messages: nothing more is sent to it."""
    endpoint.delete()


def webhook_message_retry(*, message: WebhookMessage) -> WebhookMessage:
    """Send a message again ("send again"): one more try now, with the same webhook-id; a
    failure then goes on with the schedule where it was, or ends it if it was over."""
    if not message.endpoint.enabled:
        raise WebhookEndpointDisabled(
            "This endpoint is disabled; enable it before sending its messages again."
        )
    now = timezone.now()
    fields = {"status": WebhookStatus.PENDING, "next_attempt_at": now, "enqueued_at": None}
    WebhookMessage.objects.filter(pk=message.pk).update(**fields)
    for name, value in fields.items():
        setattr(message, name, value)
    messages_enqueue(message_ids=[message.pk])
    return message
