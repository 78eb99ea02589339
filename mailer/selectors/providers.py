"""Reads of provider configs: lookup for a send request, and the representation with circuit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mailer.delivery.breaker import CircuitState
from mailer.models import ProviderConfig


def provider_resolve(*, account, ref: int | str) -> ProviderConfig | None:
    """The enabled provider a request names: by id, else by name, else the first of a kind."""
    enabled = ProviderConfig.objects.filter(account=account, enabled=True)
    text = str(ref).strip()
    if text.isdigit():
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


def circuit_dict(state: CircuitState) -> dict[str, Any]:
    def when(ts: float | None) -> datetime | None:
        return datetime.fromtimestamp(ts, UTC) if ts else None

    return {
        "state": state.state,
        "consecutive_failures": state.failures,
        "last_error": state.last_error,
        "last_error_at": when(state.last_error_at),
        "open_until": when(state.open_until),
    }
