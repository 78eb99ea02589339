"""The provider contract: a Django email backend that sends one message and raises typed errors."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from .net import Deadline

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

    `send()` runs one fixed pipeline for each message: it sets the attempt's deadline, calls the
    subclass's `transmit(message, deadline) -> provider message id`, and names a failure that the
    deadline caused as such. Subclasses raise ProviderError subclasses for every failure, connect
    only through mailer.providers.net (checked addresses, deadlines, no redirects) and never
    touch the database or another provider. Instances are long-lived (one per provider config
    per process) and may keep connections open.
    """

    kind: ClassVar[str] = ""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        attempt_deadline: float | None = None,
        allow_private_hosts: bool | None = None,
        alias: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(alias=alias, **kwargs)
        self.timeout = float(timeout)
        self.connect_timeout = float(min(connect_timeout, timeout))
        # A whole attempt: connect, greeting, transfer, answer. Socket timeouts bound one read.
        self.attempt_deadline = float(attempt_deadline or self.timeout + self.connect_timeout)
        # The private-address rule, checked at every connect. Read once, when the provider is
        # built: providers saved while private hosts were allowed stop delivering once not.
        if allow_private_hosts is None:
            from django.conf import settings

            allow_private_hosts = settings.ALLOW_PRIVATE_PROVIDER_HOSTS
        self.allow_private_hosts = bool(allow_private_hosts)

    def require(self, name: str, value: Any) -> Any:
        """Return value, or raise ConfigurationError naming the missing setting."""
        if value in (None, ""):
            raise ConfigurationError(
                f"{self.kind} provider is missing the setting '{name}'", setting=name
            )
        return value

    def send(self, message: EmailMessage, *, deadline: Deadline | None = None) -> str:
        """Send one message within `deadline` (default: this provider's attempt deadline);
        return the provider's message id. Raise ProviderError on failure."""
        deadline = deadline or Deadline(self.attempt_deadline)
        try:
            return self.transmit(message, deadline)
        except (ProviderUnavailable, AmbiguousDelivery) as exc:
            if not deadline.expired or isinstance(exc, ProviderAuthError):
                raise
            # The watchdog cut the connection (or the last read timed out at the deadline).
            raise type(exc)(
                f"{exc.message} (cut off at the attempt deadline of {deadline.seconds:.1f} s)",
                code="deadline",
            ) from exc

    def transmit(self, message: EmailMessage, deadline: Deadline) -> str:
        """Send one message, finishing by `deadline`; return the provider's message id."""
        raise NotImplementedError

    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        """Django's backend contract: how many were sent. With fail_silently a failure is
        counted out instead of raised."""
        sent = 0
        for message in email_messages:
            if not message.recipients():
                continue
            try:
                self.send(message)
            except ProviderError:
                if not self.fail_silently:
                    raise
                logger.warning("%s: a message was not sent (fail_silently)", self.describe())
                continue
            sent += 1
        return sent

    def describe(self) -> str:
        """A short human name for logs: kind and endpoint, never a secret."""
        return self.kind
