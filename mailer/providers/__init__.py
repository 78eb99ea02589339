"""Transport only: one module per provider, each a Django email backend built from a config."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the registry stays light: a provider's module loads when it is used
    from .base import Provider

# kind -> "module.Class"; modules are imported on first use so a missing optional SDK only
# affects the providers that need it.
PROVIDER_CLASSES = {
    "smtp": "mailer.providers.smtp.SmtpProvider",
    "ses": "mailer.providers.ses.SesProvider",
    "sendgrid": "mailer.providers.sendgrid.SendGridProvider",
}


def provider_class(kind: str) -> type[Provider]:
    try:
        path = PROVIDER_CLASSES[kind]
    except KeyError:
        raise ValueError(
            f"unknown provider kind {kind!r}; choose one of {', '.join(PROVIDER_CLASSES)}"
        ) from None
    module, name = path.rsplit(".", 1)
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
    """Build a provider instance from a config's plain settings and decrypted secrets.
    `allow_private_hosts` None means ALLOW_PRIVATE_PROVIDER_HOSTS."""
    options = {k: v for k, v in {**settings, **secrets}.items() if v not in (None, "")}
    return provider_class(kind)(
        timeout=timeout,
        connect_timeout=connect_timeout,
        attempt_deadline=attempt_deadline,
        allow_private_hosts=allow_private_hosts,
        **options,
    )
