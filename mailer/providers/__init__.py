"""The provider kinds: one package each (mailer/providers/<kind>/), and this registry.

A kind's package declares its KindSpec (spec.py: settings, secrets, label, presets, legacy
number, URL scheme) in its __init__, and holds its transport (transport.py: a Provider) and,
where the provider has them, its webhook events. Everything else is derived from the specs
listed here: model choices, API schemas and help, page forms, the original contract's maps,
MAIL_PROVIDER_URLS. Adding a kind is one package and one line below.

Transports are imported on first use, so a kind's SDK loads only when that kind sends.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Provider
    from .spec import KindSpec

# The registry: each kind's package, in the order pages and help list them.
PACKAGES = (
    "mailer.providers.smtp",
    "mailer.providers.ses",
    "mailer.providers.sendgrid",
    "mailer.providers.mailgun",
    "mailer.providers.mandrill",
    "mailer.providers.postmark",
    "mailer.providers.resend",
)


@cache
def specs() -> dict[str, KindSpec]:
    """kind -> spec, in registry order."""
    loaded = [import_module(package).SPEC for package in PACKAGES]
    return {spec.kind: spec for spec in loaded}


def kind_choices() -> list[tuple[str, str]]:
    """(kind, label) for every kind: the model's choices (a callable, so no migration per kind)."""
    return [(spec.kind, spec.label) for spec in specs().values()]


def spec_for(kind: str) -> KindSpec:
    try:
        return specs()[kind]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown provider kind {kind!r}; choose one of {', '.join(specs())}"
        ) from None


def kind_label(kind: str) -> str:
    """The kind's label ("Amazon SES"), or the kind itself for one no longer registered."""
    spec = specs().get(kind)
    return spec.label if spec else kind


def provider_class(kind: str) -> type[Provider]:
    module, name = spec_for(kind).transport.split(":")
    return getattr(import_module(module), name)


def build_provider(
    kind: str,
    *,
    settings: dict[str, Any],
    secrets: dict[str, Any],
    timeout: float,
    connect_timeout: float,
    attempt_deadline: float | None = None,
    allow_private_hosts: bool | None = None,
) -> Provider:
    """Build a provider instance from a config's clean settings and decrypted secrets.
    `allow_private_hosts` None means ALLOW_PRIVATE_PROVIDER_HOSTS."""
    spec = spec_for(kind)
    # Only what the transport takes: a webhook's signing key is not a sending option.
    wanted = {o.name for o in (*spec.settings, *spec.secrets) if o.transport}
    given = {**settings, **secrets}
    options = {k: v for k, v in given.items() if k in wanted and v not in (None, "")}
    return provider_class(kind)(
        timeout=timeout,
        connect_timeout=connect_timeout,
        attempt_deadline=attempt_deadline,
        allow_private_hosts=allow_private_hosts,
        **options,
    )
