"""The provider contract: a Django email backend that sends one message and raises typed errors."""

from __future__ import annotations

import logging
import threading
from typing import Any, ClassVar

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from mailer.vocabulary import Outcome

from .net import Deadline, sanitize

logger = logging.getLogger("mailer.providers")

DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0


class ProviderError(Exception):
    """Root of every delivery error a provider raises.

    `outcome` is one of the attempt outcomes of DESIGN.md; `code` is short and machine-readable
    (an SMTP reply code, an HTTP status, an AWS error code); the message is for people.
    """

    outcome: ClassVar[Outcome] = Outcome.PROVIDER_ERROR
    opens_circuit: ClassVar[bool] = False

    def __init__(self, message: str, *, code: str = "", response: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = str(code)
        self.response = response


class MessageRejected(ProviderError):
    """The message itself can't be sent anywhere: bad or refused recipients, too large."""

    outcome = Outcome.REJECTED


class ProviderUnavailable(ProviderError):
    """This provider can't send now: quota, throttling, 5xx, network trouble. Try the next one."""

    outcome = Outcome.PROVIDER_ERROR


class ProviderThrottled(ProviderUnavailable):
    """This provider asked us to slow down (HTTP 429, SES Throttling, an SMTP rate-limit reply).
    Not an outage: failover pauses the provider instead of counting towards its circuit.
    `retry_after` is the wait in seconds the provider asked for; None when it named none (or
    named it in a form we can't read), so failover uses its default."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        response: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, response=response)
        self.retry_after = retry_after


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

    outcome = Outcome.AMBIGUOUS


def error_for_http_status(
    status: int, detail: str, *, response: Any = None, retry_after: float | None = None
) -> ProviderError:
    """Map an HTTP error status from a provider's REST API to our error classes; a 429 is a
    throttle carrying `retry_after` (the answer's Retry-After in seconds, None if absent)."""
    message = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    if status == 429:
        return ProviderThrottled(
            message, code=str(status), response=response, retry_after=retry_after
        )
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

    `send()` runs one fixed pipeline for each message, as anymail's base backend does:

    1. `prepare(message)`: build what goes on the wire (MIME, a JSON payload). A message that
       can't be encoded (ValueError, UnicodeError) is `MessageRejected`: no provider could.
    2. `transmit(prepared, deadline) -> provider message id`, with the attempt's deadline.
    3. `map_error(exc)`: what the client library raised, as one of our ProviderError classes
       (None: not understood; failover logs it as a bug and moves on). A failure the deadline
       caused is named as such.

    The client (an HTTP client, an SDK client, an SMTP connection) is built by `build_client()`
    on first use, under one lock, and closed by `close()`. Subclasses connect only through
    mailer.providers.net (checked addresses, deadlines, no redirects) and never touch the
    database or another provider. Instances are long-lived (one per provider config per
    process) and may keep connections open.
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
        fail_silently: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(alias=alias, **kwargs)
        # Django's own backends keep this themselves (BaseEmailBackend's is deprecated).
        self.fail_silently = bool(fail_silently)
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
        self._client: Any = None
        self._lock = threading.Lock()

    def require(self, name: str, value: Any) -> Any:
        """Return value, or raise ConfigurationError naming the missing setting."""
        if value in (None, ""):
            raise ConfigurationError(
                f"{self.kind} provider is missing the setting '{name}'", setting=name
            )
        return value

    # The pipeline ----------------------------------------------------------------------------

    def send(self, message: EmailMessage, *, deadline: Deadline | None = None) -> str:
        """Send one message within `deadline` (default: this provider's attempt deadline);
        return the provider's message id. Raise ProviderError on failure."""
        deadline = deadline or Deadline(self.attempt_deadline)
        try:
            prepared = self.prepare(message)
        except ProviderError:
            raise
        except (ValueError, UnicodeError) as exc:
            raise MessageRejected(
                f"message could not be encoded: {sanitize(str(exc))}", code="encoding"
            ) from exc
        try:
            try:
                return self.transmit(prepared, deadline)
            except ProviderError:
                raise
            except Exception as exc:
                mapped = self.map_error(exc)
                if mapped is None:
                    raise
                raise mapped from exc
        except (ProviderUnavailable, AmbiguousDelivery) as exc:
            if not deadline.expired or isinstance(exc, ProviderAuthError):
                raise
            # The watchdog cut the connection (or the last read timed out at the deadline).
            raise type(exc)(
                f"{exc.message} (cut off at the attempt deadline of {deadline.seconds:.1f} s)",
                code="deadline",
            ) from exc

    def prepare(self, message: EmailMessage) -> Any:
        """What `transmit` sends for this message; by default the message itself."""
        return message

    def transmit(self, prepared: Any, deadline: Deadline) -> str:
        """Send one prepared message, finishing by `deadline`; return its provider message id."""
        raise NotImplementedError

    def map_error(self, exc: Exception) -> ProviderError | None:
        """Our error for what the client library raised, or None if it is not understood."""
        return None

    # The client ------------------------------------------------------------------------------

    def client(self) -> Any:
        """The client, built on first use: a missing key fails the attempt, not the import."""
        with self._lock:
            if self._client is None:
                self._client = self.build_client()
            return self._client

    def build_client(self) -> Any:
        raise NotImplementedError

    def close_client(self, client: Any) -> None:
        close = getattr(client, "close", None)
        if close is not None:
            close()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            self.close_client(client)

    # Django's backend contract ---------------------------------------------------------------

    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        """How many were sent. With fail_silently, as Django's own backends do, no error is
        raised: a message that fails is counted out (and logged) and the rest are tried."""
        sent = 0
        for message in email_messages:
            if not message.recipients():
                continue
            try:
                self.send(message)
            except Exception as exc:
                if not self.fail_silently:
                    raise
                logger.warning(
                    "%s: a message was not sent (fail_silently): %s", self.describe(), exc
                )
                continue
            sent += 1
        return sent

    def describe(self) -> str:
        """A short human name for logs: kind and endpoint, never a secret."""
        return self.kind
