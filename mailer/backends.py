"""A Django email backend that fails over across providers, for the site's own mail."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.mail import InvalidMailer, mailers
from django.core.mail.backends.base import BaseEmailBackend

from . import metrics
from .delivery.breaker import breaker
from .delivery.failover import Candidate, deliver
from .provider_settings import provider_urls
from .providers import build_provider
from .providers.base import Provider, ProviderError
from .providers.net import Deadline

logger = logging.getLogger("mailer.backends")


def url_circuit_name(alias: str | None, position: int, kind: str) -> str:
    """The name of the circuit of a failover mailer's URL provider: its breaker key is
    "mailer:<name>" (the metrics read the same circuits by this name)."""
    return f"{alias or 'failover'}-{position}-{kind}"


class DeliveryFailed(ProviderError):
    """No configured mailer accepted a message; the message says why."""


class FailoverEmailBackend(BaseEmailBackend):
    """Sends each message through the first of its providers that accepts it, with the
    service's classification and circuit breaker. The providers are either

    - `urls`: provider URLs (mailer.providers.urls), cleaned with the kinds' defaults and
      built on first use with `timeout`,
      `connect_timeout`, `attempt_deadline` and `allow_private_hosts` (settings.py builds
      MAILERS["default"] so from MAIL_PROVIDER_URLS); or
    - `mailers`: other MAILERS aliases, each a provider backend (mailer.providers.*).

    Circuit state is shared with the rest of the service through the cache, under
    "mailer:<name>" (an alias, or "<this alias>-<position>-<kind>" for a URL).
    """

    def __init__(
        self,
        *,
        urls: Sequence[str] | None = None,
        mailers: Sequence[str] | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        attempt_deadline: float | None = None,
        allow_private_hosts: bool | None = None,
        alias: str | None = None,
        fail_silently: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(alias=alias, **kwargs)
        self.fail_silently = bool(fail_silently)
        if bool(urls) == bool(mailers):
            raise InvalidMailer(
                "OPTIONS must give either 'urls' (provider URLs) or 'mailers' (MAILERS "
                "aliases), with at least one entry.",
                alias=alias,
            )
        if alias is not None and alias in (mailers or ()):
            raise InvalidMailer("A failover mailer cannot list itself.", alias=alias)
        self.urls = list(urls or ())
        self.mailer_aliases = list(mailers or ())
        self.provider_options = {
            "timeout": settings.PROVIDER_TIMEOUT if timeout is None else timeout,
            "connect_timeout": settings.PROVIDER_CONNECT_TIMEOUT
            if connect_timeout is None
            else connect_timeout,
            "attempt_deadline": attempt_deadline,
            "allow_private_hosts": allow_private_hosts,
        }
        self._candidates: list[Candidate] | None = None

    def _build(self) -> list[Candidate]:
        if self.urls:
            return self._from_urls()
        candidates = []
        for name in self.mailer_aliases:
            backend = mailers[name]
            if not isinstance(backend, Provider):
                raise InvalidMailer(
                    f"MAILERS[{name!r}] is {type(backend).__name__}, not a provider backend "
                    "(mailer.providers.*), so its failures can't be classified.",
                    alias=self.alias,
                )
            candidates.append(
                Candidate(key=f"mailer:{name}", label=f"mailer '{name}'", provider=backend)
            )
        return candidates

    def _from_urls(self) -> list[Candidate]:
        try:
            parsed = provider_urls(self.urls, source="OPTIONS['urls']")
        except ValueError as exc:
            raise InvalidMailer(str(exc), alias=self.alias) from None
        candidates = []
        for index, (kind, clean_settings, secrets) in enumerate(parsed, start=1):
            name = url_circuit_name(self.alias, index, kind)
            provider = build_provider(
                kind, settings=clean_settings, secrets=secrets, **self.provider_options
            )
            candidates.append(
                Candidate(key=f"mailer:{name}", label=f"mailer '{name}'", provider=provider)
            )
        return candidates

    def open(self) -> bool:
        if self._candidates is not None:
            return False
        self._candidates = self._build()
        return True

    def close(self) -> None:
        for candidate in self._candidates or []:
            candidate.provider.close()
        self._candidates = None

    def send_messages(self, email_messages) -> int:
        messages = [m for m in email_messages if m.recipients()]
        if not messages:
            return 0
        opened = self.open()
        sent = 0
        try:
            for message in messages:
                delivery = deliver(
                    message,
                    self._candidates or [],
                    breaker=breaker(),
                    on_attempt=metrics.attempt_finished,
                    budget=Deadline(settings.SEND_BUDGET_SECONDS),
                )
                metrics.delivery_finished(delivery)
                if delivery.accepted is None:
                    if not self.fail_silently:
                        raise DeliveryFailed(delivery.failure_reason, code="all_failed")
                    logger.warning(
                        "site mail not sent (fail_silently): %s", delivery.failure_reason
                    )
                    continue
                sent += 1
        finally:
            if opened:
                self.close()
        return sent
