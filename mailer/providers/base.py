"""The provider contract: a Django email backend that sends one message and raises typed errors."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

logger = logging.getLogger("mailer.providers")

DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0


class ProviderError(Exception):
    """Root of every delivery error a provider raises.

    `outcome` is one of the attempt outcomes of DESIGN.md; `code` is short and machine-readable
    (an SMTP reply code, an HTTP status, an AWS error code); the message is for people.
    """

    outcome: ClassVar[str] = "provider_error"
    opens_circuit: ClassVar[bool] = False

    def __init__(self, message: str, *, code: str = "", response: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = str(code)
        self.response = response


class MessageRejected(ProviderError):
    """The message itself can't be sent anywhere: bad or refused recipients, too large."""

    outcome = "rejected"


class ProviderUnavailable(ProviderError):
    """This provider can't send now: quota, throttling, 5xx, network trouble. Try the next one."""

    outcome = "provider_error"


class ProviderAuthError(ProviderUnavailable):
    """Credentials or account configuration are wrong: retrying soon won't help."""

    opens_circuit = True


class ConfigurationError(ProviderAuthError):
    """A required setting is missing or invalid; the message names it. Never swallowed."""

    def __init__(self, message: str, *, setting: str = "") -> None:
        super().__init__(message, code="configuration")
        self.setting = setting


class AmbiguousDelivery(ProviderError):
    """The request reached the provider and no answer came: it may or may not have been sent."""

    outcome = "ambiguous"


def error_for_http_status(status: int, detail: str, *, response: Any = None) -> ProviderError:
    """Map an HTTP error status from a provider's REST API to our error classes."""
    message = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    if status in (401, 403):
        return ProviderAuthError(message, code=str(status), response=response)
    if status == 413:
        return MessageRejected(message, code=str(status), response=response)
    if status in (400, 422):
        # The provider refused the payload itself (invalid address, bad field): sending the same
        # message elsewhere would be refused too, or worse, succeed after a bug on our side.
        return MessageRejected(message, code=str(status), response=response)
    return ProviderUnavailable(message, code=str(status), response=response)


class Provider(BaseEmailBackend):
    """Base for every provider: a Django email backend built from settings and secrets.

    Subclasses implement `send(message) -> provider message id` and raise ProviderError
    subclasses for every failure. They never touch the database or another provider.
    Instances are long-lived (one per provider config per process) and may keep connections open.
    """

    kind: ClassVar[str] = ""
    required_secrets: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        alias: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(alias=alias, **kwargs)
        self.timeout = float(timeout)
        self.connect_timeout = float(min(connect_timeout, timeout))

    def require(self, name: str, value: Any) -> Any:
        """Return value, or raise ConfigurationError naming the missing setting."""
        if value in (None, ""):
            raise ConfigurationError(
                f"{self.kind} provider is missing the setting '{name}'", setting=name
            )
        return value

    def send(self, message: EmailMessage) -> str:
        """Send one message; return the provider's message id. Raise ProviderError on failure."""
        raise NotImplementedError

    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        sent = 0
        for message in email_messages:
            if not message.recipients():
                continue
            self.send(message)
            sent += 1
        return sent

    def describe(self) -> str:
        """A short human name for logs: kind and endpoint, never a secret."""
        return self.kind
