"""Reads of provider configs: lookup for a send request, and the representation with circuit."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from mailer.delivery.breaker import Circuit, CircuitBreaker
from mailer.delivery.pacing import Usage, pacer
from mailer.errors import InvalidInput
from mailer.models import MAX_ID, ProviderConfig
from mailer.providers import specs
from mailer.validation import check_address

logger = logging.getLogger("mailer.selectors")


def provider_resolve(*, account, ref: int | str) -> ProviderConfig | None:
    """The enabled provider a request names: by id, else by name, else the first of a kind."""
    enabled = ProviderConfig.objects.filter(account=account, enabled=True)
    text = str(ref).strip()
    if text.isascii() and text.isdigit():
        found = enabled.filter(pk=int(text)).first()
        if found is not None:
            return found
    return enabled.filter(name=text).first() or enabled.filter(kind=text).first()


def provider_choices(*, account) -> list[str]:
    """What a request may name, for error messages: "id (name, kind)"."""
    return [
        f"{c.pk} ({c.name!r}, {c.kind})"
        for c in ProviderConfig.objects.filter(account=account, enabled=True)
    ]


def circuit_dict(state: Circuit) -> dict[str, Any]:
    def when(ts: float | None) -> datetime | None:
        return datetime.fromtimestamp(ts, UTC) if ts else None

    return {
        "state": state.state,
        "consecutive_failures": state.failures,
        "last_error": state.last_error,
        "last_error_at": when(state.last_error_at),
        "open_until": when(state.open_until),
        "paused_until": when(state.paused_until),
    }


def provider_list(*, account) -> list[ProviderConfig]:
    """The account's providers in failover order: ascending priority, then id."""
    return list(ProviderConfig.objects.filter(account=account).order_by("priority", "id"))


def provider_test_addresses(
    *, account, to: str | None = "", from_email: str | None = ""
) -> tuple[str, str]:
    """A test send's recipient and sender, (to, from_email): the account's address and the
    site's sender (DEFAULT_FROM_EMAIL) unless given. InvalidInput names each that is missing or
    not an address."""
    to = to or account.email
    from_email = from_email or settings.DEFAULT_FROM_EMAIL
    if not to:
        raise InvalidInput(
            {"to": ["This field is required: your account has no email address to default to."]},
            message="Your account has no email address: give `to`, the address to send the test "
            "to.",
        )
    errors = {
        field: [problem]
        for field, value in (("to", to), ("from", from_email))
        if (problem := check_address(value))
    }
    if errors:
        raise InvalidInput(errors)
    return to, from_email


def provider_get(*, account, provider_id: int) -> ProviderConfig:
    """One provider of this account; ProviderConfig.DoesNotExist for any other id."""
    if not 0 < provider_id <= MAX_ID:
        raise ProviderConfig.DoesNotExist
    return ProviderConfig.objects.select_related("account").get(account=account, pk=provider_id)


def _circuit(config: ProviderConfig, breaker: CircuitBreaker) -> dict[str, Any]:
    try:
        return circuit_dict(breaker.state(config.breaker_key))
    except Exception:  # a bug, not an outage (the breaker fails open): show the provider anyway
        logger.exception("circuit state of provider %s unknown", config.pk)
        return {
            "state": "unknown",
            "consecutive_failures": 0,
            "last_error": "",
            "last_error_at": None,
            "open_until": None,
            "paused_until": None,
        }


def webhook_url(token: str, *, base_url: str = "") -> str:
    """A webhook URL: PUBLIC_BASE_URL's when set, else under `base_url` (where the asking
    request came in), else the path alone."""
    base = (settings.PUBLIC_BASE_URL or base_url).rstrip("/")
    return f"{base}/webhooks/in/{token}/"


def provider_webhook_url(config: ProviderConfig, *, base_url: str = "") -> str | None:
    """Where this provider posts its delivery events; None for a kind that posts none (SMTP)."""
    spec = specs().get(config.kind)
    if spec is None or not spec.events:
        return None
    return webhook_url(config.webhook_token, base_url=base_url)


def pacing_usage(configs: list[ProviderConfig]) -> dict[str, Usage]:
    """What each paced provider used of its limits (one cache round trip for them all); a
    provider without limits, or every one when the cache can't answer, is left out."""
    paced = [c.breaker_key for c in configs if c.max_per_second or c.max_per_day]
    return pacer().usage(paced) if paced else {}


def pacing_dict(config: ProviderConfig, usage: dict[str, Usage] | None) -> dict[str, Any]:
    """A provider's limits and, when known, its use of them."""
    if usage is None:
        usage = pacing_usage([config])
    used = usage.get(config.breaker_key)
    return {
        "max_per_second": config.max_per_second,
        "max_per_day": config.max_per_day,
        "counts": "recipients" if _counts_recipients(config.kind) else "messages",
        "usage": {"last_second": used.last_second, "last_day": used.last_day} if used else None,
    }


def _counts_recipients(kind: str) -> bool:
    spec = specs().get(kind)
    return spec is not None and spec.counts_recipients


def provider_detail(
    config: ProviderConfig,
    *,
    breaker: CircuitBreaker,
    base_url: str = "",
    usage: dict[str, Usage] | None = None,
) -> dict[str, Any]:
    """A provider as pages and the API show it: settings, secret names only, circuit state,
    pacing limits and use (pass pacing_usage()'s for many at once), and its webhook URL (under
    `base_url`, the asking request's, unless PUBLIC_BASE_URL is set)."""
    return {
        "id": config.pk,
        "kind": config.kind,
        "name": config.name,
        "priority": config.priority,
        "enabled": config.enabled,
        "settings": config.settings,
        "secrets_set": sorted(config.secret_names),
        "circuit": _circuit(config, breaker),
        "webhook_url": provider_webhook_url(config, base_url=base_url),
        "pacing": pacing_dict(config, usage),
        "created_at": config.created_at,
        "updated_at": config.updated_at,
    }
